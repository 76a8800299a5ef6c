"""``load_dataset``: any source name -> a split, subset, normalised ``Dataset``."""

from __future__ import annotations

import os

import numpy as np

from nas.data.dataset import Dataset
from nas.data.digits import read_digits
from nas.data.errors import DatasetError
from nas.data.fashion_mnist import DIR_ENV_VAR, read_fashion_mnist
from nas.data.image_folder import read_image_folder
from nas.data.normalise import as_float32, channel_stats, standardise
from nas.data.npz import read_npz
from nas.data.raw import RawSplits
from nas.data.splits import stratified_sample
from nas.data.tfds_source import read_prepared
from nas.data.validate import MAX_CLASSES, check_split_classes, validate_raw

KNOWN_SOURCES = ("digits", "fashion_mnist", "tfds:<name>", "image_folder:<path>", "npz:<path>")


def read_source(name: str, *, image_size: tuple[int, int] | None, data_dir: str | None) -> RawSplits:
    """Reads the raw arrays of the source ``name`` names.

    Args:
      name: one of ``KNOWN_SOURCES``.
      image_size: (height, width) for ``image_folder`` sources; None otherwise.
      data_dir: where TFDS / Fashion-MNIST files live (None: their defaults).

    Returns:
      The source's splits before any splitting or normalising.

    Raises:
      DatasetError: unknown name, or whatever the source cannot read.
    """
    kind, _, argument = name.partition(":")
    if image_size is not None and kind != "image_folder":
        raise DatasetError(f"image_size={image_size} only applies to image_folder sources, not {name!r}")
    if name == "digits":
        return read_digits()
    if name == "fashion_mnist":
        return read_fashion_mnist(data_dir, os.environ.get(DIR_ENV_VAR) or None)
    readers = {
        "tfds": lambda: read_prepared(argument, data_dir),
        "image_folder": lambda: read_image_folder(os.path.expanduser(argument), image_size),
        "npz": lambda: read_npz(os.path.expanduser(argument)),
    }
    if kind not in readers or not argument:
        raise DatasetError(f"unknown dataset {name!r}; known sources: {', '.join(KNOWN_SOURCES)}")
    return readers[kind]()


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_train: int | None = None,
    regression: bool = False,
    image_size: tuple[int, int] | None = None,
    data_dir: str | None = None,
    max_classes: int = MAX_CLASSES,
) -> Dataset:
    """Loads a dataset, fixes its splits with ``seed`` and normalises it.

    Splits are stratified by class. A source without a test split gets one of
    ``round(test_fraction * N)`` examples carved from its pool; one without a
    validation split gets ``round(val_fraction * N)`` from what remains (N is
    the pool size, so for Fashion-MNIST val is 9,000 of the official 60,000
    and the official 10,000 test images stay the test set). Inputs become
    float32 (uint8 pixels scaled to [0, 1]) and are standardised per channel
    with the mean/std of the (subset) training split.

    Every source's arrays are validated before anything else happens
    (``nas.data.validate``): numeric, finite, non-empty, consistently shaped
    inputs; integer, non-negative labels of at least two classes. After
    splitting no split may be empty, the training split needs two classes,
    and a class missing from some split is a ``DatasetWarning``.

    Args:
      name: ``digits``, ``fashion_mnist``, ``tfds:<name>``,
        ``image_folder:<path>`` or ``npz:<path>``.
      seed: fixes every random choice (splits, ``max_train`` subset).
      val_fraction: validation share of the pool, in [0, 1).
      test_fraction: test share of the pool, in [0, 1); ignored when the
        source has its own test split.
      max_train: keep a stratified subset of at most this many training
        examples (val and test are unaffected); None keeps all.
      regression: targets become the class index as float32 and the task
        ``regression``; ``num_classes`` keeps the class count.
      image_size: (height, width) to resize ``image_folder`` images to.
      data_dir: TFDS data dir, or a directory holding Fashion-MNIST IDX files.
      max_classes: largest class count accepted; larger labels are taken for
        a corrupt or continuous label array (see ``validate.MAX_CLASSES``).

    Returns:
      The ``Dataset``.

    Raises:
      DatasetError: unknown source, missing files, bad options, bad data
        (the message names the file, the array and the problem).
    """
    _check_options(val_fraction, test_fraction, max_train, image_size, max_classes)
    data_dir = os.path.expanduser(data_dir) if data_dir else None  # configs write ~/tensorflow_datasets
    image_size = tuple(int(d) for d in image_size) if image_size else None
    raw = validate_raw(
        read_source(name, image_size=image_size, data_dir=data_dir),
        f"dataset {name!r}", regression=regression, max_classes=max_classes,
    )
    rng = np.random.default_rng(seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = _split(raw, val_fraction, test_fraction, rng)
    _check_not_empty(name, raw, {"train": y_train, "val": y_val, "test": y_test}, val_fraction, test_fraction)
    if max_train is not None and max_train < len(y_train):
        keep, _ = stratified_sample(y_train, max_train, rng)
        x_train, y_train = x_train[keep], y_train[keep]
    if not regression:  # regression interpolates between targets: a missing value is no gap
        check_split_classes(raw.source or f"dataset {name!r}", {"train": y_train, "val": y_val, "test": y_test},
                            raw.num_classes)
    x_train, x_val, x_test = as_float32(x_train), as_float32(x_val), as_float32(x_test)
    mean, std = channel_stats(x_train)
    target_dtype = np.float32 if regression else np.int32
    return Dataset(
        name=name,
        task="regression" if regression else "classification",
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_classes=raw.num_classes,
        x_train=standardise(x_train, mean, std),
        y_train=y_train.astype(target_dtype),
        x_val=standardise(x_val, mean, std),
        y_val=y_val.astype(target_dtype),
        x_test=standardise(x_test, mean, std),
        y_test=y_test.astype(target_dtype),
        mean=mean,
        std=std,
        seed=seed,
    )


def _split(raw: RawSplits, val_fraction: float, test_fraction: float, rng: np.random.Generator):
    """((x, y) train, val, test): the source's own splits, the rest carved from its pool."""
    x, y = raw.x_train, raw.y_train
    pool = np.arange(len(y))
    if raw.x_test is None:
        test, pool = stratified_sample(y, round(test_fraction * len(y)), rng)
        x_test, y_test = x[test], y[test]
    else:
        x_test, y_test = raw.x_test, raw.y_test
    if raw.x_val is None:
        val, train = stratified_sample(y[pool], round(val_fraction * len(y)), rng)
        x_val, y_val = x[pool[val]], y[pool[val]]
        pool = pool[train]
    else:
        x_val, y_val = raw.x_val, raw.y_val
    return (x[pool], y[pool]), (x_val, y_val), (x_test, y_test)


def _check_not_empty(name: str, raw: RawSplits, labels: dict, val_fraction: float, test_fraction: float) -> None:
    """Every split needs examples: training selects epochs on val, and a run reports test."""
    pool = len(raw.y_train)
    why = {
        "train": f"val_fraction={val_fraction} and test_fraction={test_fraction} take all {pool} examples "
                 "of the pool; lower them",
        "val": f"val_fraction={val_fraction} of the {pool}-example pool rounds to 0; training picks its best "
               "epoch on val, so raise val_fraction",
        "test": f"test_fraction={test_fraction} of the {pool}-example pool rounds to 0, leaving no test score; "
                "raise test_fraction",
    }
    for split, y in labels.items():
        if len(y) == 0:
            raise DatasetError(f"{name!r}: the {split} split is empty: {why[split]}")


def _check_options(val_fraction, test_fraction, max_train, image_size, max_classes) -> None:
    for option, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise DatasetError(f"{option}={value} must be in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training data; "
            "keep it below 1"
        )
    if max_train is not None and (isinstance(max_train, bool) or not isinstance(max_train, (int, np.integer)) or max_train < 1):
        raise DatasetError(f"max_train={max_train!r} must be a positive int or None")
    if image_size is not None and (
        len(image_size) != 2 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in image_size)
    ):
        raise DatasetError(f"image_size={image_size!r} must be (height, width) with positive ints")
    if isinstance(max_classes, bool) or not isinstance(max_classes, (int, np.integer)) or max_classes < 2:
        raise DatasetError(f"max_classes={max_classes!r} must be an int of at least 2")

