"""Arrays saved with ``np.savez``: the escape hatch for any data already in NumPy."""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from nas.data.errors import DatasetError
from nas.data.raw import RawSplits

# The split arrays a file may hold; `x`/`y` alone means "one pool, split it for me".
SPLIT_KEYS = ("train", "val", "test")


def _with_channel_axis(x: np.ndarray) -> np.ndarray:
    # (N, H, W) greyscale images and (N,) scalar features both lack the
    # trailing channel/feature axis that per-channel statistics reduce to.
    return x[..., None] if x.ndim in (1, 3) else x


def read_npz(path: str | pathlib.Path) -> RawSplits:
    """Reads ``x_train, y_train [, x_val, y_val] [, x_test, y_test]`` (or ``x, y``).

    Labels must be non-negative integer class indices; ``num_classes`` is
    one more than the largest label in any split.

    Args:
      path: the ``.npz`` file.

    Returns:
      The stored splits, (N, H, W) images given a channel axis.

    Raises:
      DatasetError: missing or unreadable file, missing or unpaired arrays,
        inconsistent shapes, non-integer labels.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"npz file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"cannot read npz file {path}: {e}") from e
    if "x_train" not in arrays and "x" in arrays:
        arrays["x_train"], arrays["y_train"] = arrays.pop("x"), arrays.pop("y", None)
    splits = {}
    for split in SPLIT_KEYS:
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None and y is None and split != "train":
            continue
        if x is None or y is None:
            raise DatasetError(
                f"npz file {path} needs both x_{split} and y_{split} (or x and y); "
                f"it has {sorted(arrays)}"
            )
        splits[split] = (_with_channel_axis(x), _labels(y, f"y_{split}", len(x), path))
    shapes = {split: x.shape[1:] for split, (x, _) in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DatasetError(f"npz file {path} has splits of different per-example shapes: {shapes}")
    num_classes = max(int(y.max(initial=-1)) for _, y in splits.values()) + 1
    return RawSplits(
        *splits["train"], num_classes,
        *splits.get("val", (None, None)), *splits.get("test", (None, None)),
    )


def _labels(y: np.ndarray, key: str, length: int, path: pathlib.Path) -> np.ndarray:
    if y.shape != (length,):
        raise DatasetError(f"npz file {path}: {key} has shape {y.shape}, expected ({length},)")
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or np.any(y < 0):
        raise DatasetError(f"npz file {path}: {key} must hold non-negative integer class indices")
    return y.astype(np.int64)
