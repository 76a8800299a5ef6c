"""Fashion-MNIST from disk: a TFDS-prepared copy, else Debian's IDX files.

Nothing is ever downloaded. The IDX directory is, in order of precedence:
``data_dir`` when it holds the four files, ``$NAS_FASHION_MNIST_DIR`` when
set, else ``/usr/share/datasets/fashion-mnist`` from Debian's
``dataset-fashion-mnist`` package.
"""

from __future__ import annotations

import pathlib

from nas.data import tfds_source
from nas.data.errors import DatasetError
from nas.data.idx import read_idx
from nas.data.raw import RawSplits

DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
DIR_ENV_VAR = "NAS_FASHION_MNIST_DIR"
APT_HINT = (
    f"install Debian's package (`sudo apt-get install dataset-fashion-mnist`, which puts the "
    f"files in {DEBIAN_DIR}) or set {DIR_ENV_VAR} to a directory holding them"
)

# Stems of the official files; each may be stored gzipped (`.gz`, as Debian does) or plain.
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# TFDS names tried before the IDX files: the stock builder's, then ours
# (`nas.data.fashion_mnist_builder.LocalFashionMnist`).
TFDS_NAMES = ("fashion_mnist", "local_fashion_mnist")


def idx_paths(directory: pathlib.Path) -> dict[str, pathlib.Path] | None:
    """The four IDX files in ``directory`` by split array name, or None if any is missing."""
    paths = {}
    for key, stem in IDX_STEMS.items():
        candidates = [directory / f"{stem}.gz", directory / stem]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            return None
        paths[key] = found
    return paths


def locate_idx_dir(
    data_dir: str | None, env_dir: str | None, debian_dir: pathlib.Path = DEBIAN_DIR
) -> pathlib.Path:
    """Picks the directory the IDX files are read from.

    Args:
      data_dir: the caller's data dir; used only if it holds the four files.
      env_dir: value of ``$NAS_FASHION_MNIST_DIR`` (None when unset); when set
        it must hold the files, since a user who set it means that copy.
      debian_dir: where Debian's package installs them.

    Returns:
      A directory holding all four IDX files.

    Raises:
      DatasetError: no such directory; the message says how to get one.
    """
    if data_dir and idx_paths(pathlib.Path(data_dir)):
        return pathlib.Path(data_dir)
    files = ", ".join(f"{stem}.gz" for stem in IDX_STEMS.values())
    if env_dir:
        if idx_paths(pathlib.Path(env_dir)):
            return pathlib.Path(env_dir)
        raise DatasetError(
            f"{DIR_ENV_VAR}={env_dir} does not hold the Fashion-MNIST IDX files ({files}); "
            f"point it at the directory that does, or unset it and {APT_HINT}"
        )
    if idx_paths(debian_dir):
        return debian_dir
    searched = f"data_dir {data_dir}, " if data_dir else ""
    raise DatasetError(
        f"Fashion-MNIST not found: no TFDS-prepared copy and no IDX files ({files}) in "
        f"{searched}{debian_dir}. To get them, {APT_HINT}"
    )


def read_idx_dir(directory: pathlib.Path) -> RawSplits:
    """Reads the official 60k train / 10k test splits from an IDX directory.

    Args:
      directory: holds the four IDX files (see ``locate_idx_dir``).

    Returns:
      uint8 images (N, 28, 28, 1) and their labels, in the files' order.
    """
    paths = idx_paths(directory)
    if paths is None:
        raise DatasetError(f"{directory} does not hold the four Fashion-MNIST IDX files")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(
                f"Fashion-MNIST {split} files in {directory} disagree: images {x.shape}, labels {y.shape}"
            )
    return RawSplits(
        x_train=arrays["x_train"][..., None],
        y_train=arrays["y_train"],
        num_classes=len(CLASS_NAMES),
        x_test=arrays["x_test"][..., None],
        y_test=arrays["y_test"],
        source=f"Fashion-MNIST IDX files in {directory}",
    )


def read_fashion_mnist(data_dir: str | None, env_dir: str | None) -> RawSplits:
    """Fashion-MNIST from a TFDS-prepared copy if there is one, else from IDX files.

    Args:
      data_dir: TFDS data dir to look in (None: TFDS's default), or a
        directory holding the IDX files.
      env_dir: value of ``$NAS_FASHION_MNIST_DIR``, or None.

    Returns:
      The official train and test splits.
    """
    for name in TFDS_NAMES:
        if tfds_source.is_prepared(name, data_dir):
            return tfds_source.read_prepared(name, data_dir)
    return read_idx_dir(locate_idx_dir(data_dir, env_dir))
