"""Class-per-subfolder image directories (the Kaggle layout).

Either ``<root>/<class>/<image>`` (no predefined split) or
``<root>/train/<class>/<image>`` with an optional ``<root>/test/<class>/<image>``.
Class indices follow the sorted class-folder names. Every image is brought to
one size and one colour mode:

* size: ``image_size`` when given, else the most common (height, width) among
  the images (ties go to the larger, then the lexicographically larger
  size), so a folder of equal-sized images is never resampled;
* mode: one grey channel if every image is greyscale, else RGB (colour,
  palette and alpha images are converted; alpha is dropped).
"""

from __future__ import annotations

import collections
import pathlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from nas.data.errors import DatasetError
from nas.data.raw import RawSplits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# PIL modes that carry no colour; "LA" drops its alpha when converted to "L".
GREYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def split_dirs(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """The folders holding class subfolders: ``{"train": ..., ["test": ...]}``.

    Args:
      root: the dataset folder.

    Returns:
      ``{"train": root/train, "test": root/test}`` for the split layout
      (``test`` only if present), else ``{"train": root}``.
    """
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory")
    if (root / "train").is_dir():
        return {split: root / split for split in ("train", "test") if (root / split).is_dir()}
    return {"train": root}


def class_names(root: str | pathlib.Path) -> tuple[str, ...]:
    """Class names of an image folder; a class's index is its position here.

    Args:
      root: the dataset folder.

    Returns:
      Sorted names of the class subfolders over all splits.
    """
    names = set()
    for folder in split_dirs(pathlib.Path(root)).values():
        names.update(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DatasetError(f"image folder {root} has no class subfolders (expected <root>/<class>/<image>)")
    return tuple(sorted(names))


def _image_files(folder: pathlib.Path, classes: tuple[str, ...]) -> list[tuple[pathlib.Path, int]]:
    files = []
    for index, name in enumerate(classes):
        class_dir = folder / name
        if class_dir.is_dir():
            files += [
                (p, index)
                for p in sorted(class_dir.iterdir())
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            ]
    return files


def _header(path: pathlib.Path) -> tuple[tuple[int, int], str]:
    """(height, width) and PIL mode, from the header only."""
    try:
        with Image.open(path) as image:
            return (image.height, image.width), image.mode
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f"cannot read image {path}: {e}") from e


def _most_common_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    counts = collections.Counter(sizes)
    return max(counts, key=lambda size: (counts[size], size[0] * size[1], size))


def _load(path: pathlib.Path, size: tuple[int, int], mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if (image.height, image.width) != size:
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except OSError as e:  # a header that reads but pixel data that does not
        raise DatasetError(f"cannot decode image {path}: {e}") from e


def _stack(
    files: list[tuple[pathlib.Path, int]], size: tuple[int, int], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([_load(path, size, mode) for path, _ in files])
    labels = np.asarray([label for _, label in files], dtype=np.int64)
    return (x[..., None] if x.ndim == 3 else x), labels


def read_image_folder(root: str | pathlib.Path, image_size: tuple[int, int] | None = None) -> RawSplits:
    """Reads every image of a class-per-subfolder directory.

    Args:
      root: the dataset folder (layout in the module docstring).
      image_size: (height, width) to resize every image to; None picks the
        most common size.

    Returns:
      uint8 images (N, H, W, 1 or 3) with their class indices; a ``test``
      split only when the folder has ``test/``.

    Raises:
      DatasetError: missing folder, no classes or images, unreadable image.
    """
    root = pathlib.Path(root)
    classes = class_names(root)
    files = {split: _image_files(folder, classes) for split, folder in split_dirs(root).items()}
    if not files["train"]:
        raise DatasetError(
            f"image folder {split_dirs(root)['train']} has no {'/'.join(IMAGE_SUFFIXES)} images "
            f"in its class subfolders {list(classes)}"
        )
    headers = {path: _header(path) for split_files in files.values() for path, _ in split_files}
    size = tuple(image_size) if image_size else _most_common_size([s for s, _ in headers.values()])
    mode = "L" if all(m in GREYSCALE_MODES for _, m in headers.values()) else "RGB"
    x_train, y_train = _stack(files["train"], size, mode)
    x_test = y_test = None
    if files.get("test"):
        x_test, y_test = _stack(files["test"], size, mode)
    return RawSplits(x_train, y_train, len(classes), x_test=x_test, y_test=y_test, source=f"image folder {root}")
