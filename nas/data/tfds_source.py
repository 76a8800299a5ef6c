"""Datasets that TFDS has already prepared on disk, read without downloading.

TFDS is imported lazily: only the ``tfds:`` and Fashion-MNIST sources need it.
Reading goes through ``as_data_source`` (random-access ``array_record`` or
``parquet`` files, decoded with NumPy/PIL), which works without TensorFlow;
datasets prepared as ``tfrecord`` (``tfds build``'s default) need TensorFlow.
"""

from __future__ import annotations

import pathlib

import numpy as np

from nas.data.errors import DatasetError
from nas.data.raw import RawSplits


def _builder(name: str, data_dir: str | None):
    """The TFDS builder for ``name``, or None when TFDS knows no such dataset."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        return None


def is_prepared(name: str, data_dir: str | None = None) -> bool:
    """Whether TFDS has ``name`` prepared in ``data_dir`` (or its default dir).

    Never downloads and never prepares anything.

    Args:
      name: TFDS name, optionally with config/version (``mnist/3.0.1``).
      data_dir: TFDS data dir; None means TFDS's default (``$TFDS_DATA_DIR``
        or ``~/tensorflow_datasets``).
    """
    import tensorflow_datasets as tfds

    # Cheap look first: constructing a builder for an absent dataset logs a
    # warning, and most calls (the Fashion-MNIST probe) find nothing.
    root = pathlib.Path(data_dir or tfds.core.constants.DATA_DIR)
    if not (root / name.split("/")[0].split(":")[0]).is_dir():
        return False
    builder = _builder(name, data_dir)
    return builder is not None and builder.is_prepared()


def read_prepared(name: str, data_dir: str | None = None) -> RawSplits:
    """Loads the ``train`` (and ``test``, if any) split of a prepared TFDS dataset.

    Inputs are the ``image`` feature (else the first supervised key) and
    labels the ``label`` feature (else the second supervised key).

    Args:
      name: TFDS name, optionally with config/version.
      data_dir: TFDS data dir; None means TFDS's default.

    Returns:
      The splits as stored; ``x_test`` is None when there is no ``test`` split.

    Raises:
      DatasetError: unknown or unprepared dataset, no train split, no
        image/label features, or tfrecord files without TensorFlow.
    """
    where = data_dir or "TFDS's default data dir"
    builder = _builder(name, data_dir)
    if builder is None:
        raise DatasetError(f"TFDS knows no dataset {name!r} (looked in {where} too)")
    if not builder.is_prepared():
        raise DatasetError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; nas never "
            f"downloads. Prepare it first, e.g. `tfds build {name} --file_format=array_record"
            f"{' --data_dir=' + data_dir if data_dir else ''}`, or pass the data_dir that holds it."
        )
    splits = builder.info.splits
    if "train" not in splits:
        raise DatasetError(f"TFDS dataset {name!r} has no 'train' split (it has {sorted(splits)})")
    image_key, label_key = _input_and_label_keys(builder, name)
    x_train, y_train = _read_split(builder, "train", image_key, label_key, name)
    x_test = y_test = None
    if "test" in splits:
        x_test, y_test = _read_split(builder, "test", image_key, label_key, name)
    label_feature = builder.info.features[label_key]
    num_classes = getattr(label_feature, "num_classes", None)  # None: validation counts the labels
    return RawSplits(
        x_train, y_train, None if num_classes is None else int(num_classes), x_test=x_test, y_test=y_test,
        source=f"TFDS dataset {name!r} in {builder.data_dir}",
    )


def _input_and_label_keys(builder, name: str) -> tuple[str, str]:
    features = builder.info.features
    supervised = builder.info.supervised_keys or (None, None)
    image_key = "image" if "image" in features else supervised[0]
    label_key = "label" if "label" in features else supervised[1]
    if not isinstance(image_key, str) or not isinstance(label_key, str):
        raise DatasetError(
            f"TFDS dataset {name!r} has neither image/label features nor simple "
            f"supervised keys (features: {sorted(features)}); nas reads image classification data"
        )
    return image_key, label_key


def _read_split(builder, split: str, image_key: str, label_key: str, name: str):
    try:
        source = builder.as_data_source(split=split)
    except NotImplementedError:
        return _read_split_with_tensorflow(builder, split, image_key, label_key, name)
    records = source.__getitems__(range(len(source)))
    x = np.stack([np.asarray(r[image_key]) for r in records])
    # Labels as stored: validation rejects fractional or out-of-range ones
    # rather than an int64 cast silently truncating them.
    y = np.asarray([r[label_key] for r in records])
    return x, y


def _read_split_with_tensorflow(builder, split: str, image_key: str, label_key: str, name: str):
    try:
        import tensorflow  # noqa: F401  (only to give a clear error without it)
    except ImportError as e:
        raise DatasetError(
            f"TFDS dataset {name!r} in {builder.data_dir} is stored as "
            f"{builder.info.file_format.value}, which only TensorFlow can read, and TensorFlow "
            f"is not installed. Rebuild it as array_record: "
            f"`tfds build {name} --file_format=array_record`"
        ) from e
    import tensorflow_datasets as tfds

    batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return np.asarray(batch[image_key]), np.asarray(batch[label_key])
