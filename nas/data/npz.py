"""Arrays saved with ``np.savez``: the escape hatch for any data already in NumPy."""

from __future__ import annotations

import pathlib
import warnings
import zipfile

import numpy as np

from nas.data.errors import DatasetError, DatasetWarning
from nas.data.raw import RawSplits

# The split arrays a file may hold; `x`/`y` alone means "one pool, split it for me".
SPLIT_KEYS = ("train", "val", "test")
POOL_KEYS = ("x", "y")
SPLIT_ARRAYS = tuple(f"{kind}_{split}" for split in SPLIT_KEYS for kind in ("x", "y"))
EXPECTED = "x_train and y_train (plus optional x_val/y_val, x_test/y_test), or x and y (one pool nas splits)"


def _with_channel_axis(x: np.ndarray) -> np.ndarray:
    # (N, H, W) greyscale images and (N,) scalar features both lack the
    # trailing channel/feature axis that per-channel statistics reduce to.
    return x[..., None] if x.ndim in (1, 3) else x


def read_npz(path: str | pathlib.Path) -> RawSplits:
    """Reads ``x_train, y_train [, x_val, y_val] [, x_test, y_test]`` (or ``x, y``).

    Labels must be non-negative integer class indices; ``num_classes`` is
    one more than the largest label in any split. The arrays' contents are
    checked by ``nas.data.validate.validate_raw`` (``load_dataset`` calls it).

    Args:
      path: the ``.npz`` file.

    Returns:
      The stored splits, (N, H, W) images given a channel axis.

    Raises:
      DatasetError: missing, unreadable or damaged file, or no usable
        x/y key pair (the message lists the keys expected and found).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"npz file {path} does not exist")
    arrays = _read_arrays(path)
    found = sorted(arrays)
    uses_splits = any(key in arrays for key in SPLIT_ARRAYS)
    uses_pool = any(key in arrays for key in POOL_KEYS)
    if uses_splits and uses_pool:
        raise DatasetError(
            f"npz file {path} holds both split arrays and a pool (x/y): {found}; "
            f"it should hold {EXPECTED}, not both"
        )
    if not uses_splits and not uses_pool:
        raise DatasetError(f"npz file {path} holds none of the expected arrays ({EXPECTED}); it holds {found}")
    keys = {"x_train": "x", "y_train": "y"} if uses_pool else {}
    stored = {field: keys.get(field, field) for field in SPLIT_ARRAYS}
    ignored = sorted(set(arrays) - set(stored.values()))
    if ignored:  # a typo like x_valid would otherwise quietly carve val out of train
        warnings.warn(
            f"npz file {path}: ignoring array(s) {ignored}; nas reads {EXPECTED}", DatasetWarning, stacklevel=2
        )
    splits = {}
    for split in SPLIT_KEYS:
        x_key, y_key = stored[f"x_{split}"], stored[f"y_{split}"]
        if x_key not in arrays and y_key not in arrays and split != "train":
            continue
        missing = [key for key in (x_key, y_key) if key not in arrays]
        if missing:
            raise DatasetError(
                f"npz file {path} has no {' or '.join(missing)}: it should hold {EXPECTED}; it holds {found}"
            )
        splits[split] = (_with_channel_axis(arrays[x_key]), arrays[y_key])
    return RawSplits(
        *splits["train"], None,
        *splits.get("val", (None, None)), *splits.get("test", (None, None)),
        source=f"npz file {path}", keys=keys,
    )


def _read_arrays(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Every array of the file, or a DatasetError naming the file (and array) that will not read."""
    if not zipfile.is_zipfile(path):
        raise DatasetError(
            f"npz file {path} is not a zip archive, as np.savez writes: it is truncated or in another "
            "format (a single .npy array, a pickle...); re-save it with np.savez(path, x_train=..., y_train=...)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001  (see below)
        raise DatasetError(f"cannot read npz file {path}: {type(e).__name__}: {e}") from e
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            # Damaged bytes surface as whichever layer trips first; fuzzing a
            # savez file gave BadZipFile, zlib.error, EOFError, OSError,
            # ValueError, NotImplementedError, RuntimeError and
            # tokenize.TokenError. All mean the same to the user: this
            # array of this file is unreadable. (Object arrays: ValueError,
            # since nas never unpickles.)
            except Exception as e:  # noqa: BLE001
                raise DatasetError(
                    f"npz file {path}: cannot read array {key!r} ({type(e).__name__}: {e}); the file is "
                    "damaged or the array holds Python objects. Re-save it with numeric arrays"
                ) from e
    return arrays
