"""Reader for the IDX format (MNIST, Fashion-MNIST), plain or gzipped."""

from __future__ import annotations

import gzip
import math
import pathlib
import zlib

import numpy as np

from nas.data.errors import DatasetError

# IDX type byte -> big-endian element dtype (http://yann.lecun.com/exdb/mnist/).
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
    """Reads one IDX file; a ``.gz`` suffix means gzip-compressed.

    Args:
      path: the file.

    Returns:
      The array in its stored shape, in native byte order (uint8 for images
      and labels).

    Raises:
      DatasetError: the file is missing or is not a well-formed IDX file.
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # missing, cut short, or corrupt gzip stream
        raise DatasetError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    # math.prod is exact; np.prod wraps around on a corrupt header's huge dims.
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(
            f"{path} is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes) but the file has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
