"""A dataset's identity in the LDE: a hash of its content, so the same data under any run is one dataset.

Two runs on ``digits`` with the same split seed and `max_train` see the same
arrays and share a fingerprint; a different split, subset, normalisation or
label noise is different data and gets another one. The hash covers the name
and, for x/y of the train and validation splits, the dtype, shape and bytes
(the test split is not what a search trains or selects on). Arrays are hashed
in chunks along their first axis, so a non-contiguous array is never copied
whole; a contiguous one is not copied at all.
"""

from __future__ import annotations

import hashlib
import weakref

import numpy as np

from nas.lde.database import DatasetRecord

# Bump when what is hashed changes: old fingerprints then name other content.
_FINGERPRINT_VERSION = b"nas.lde.dataset.v1"
_CHUNK_BYTES = 1 << 24
# One hash per Dataset object per process (a search hashes its data once, not once per trial).
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _hash_array(h: "hashlib._Hash", label: str, array: np.ndarray) -> None:
    array = np.asarray(array)
    h.update(f"{label}|{array.dtype.str}|{array.shape}|".encode())
    if array.ndim == 0 or array.size == 0:
        h.update(np.ascontiguousarray(array).tobytes())
        return
    row_bytes = max(1, array.nbytes // max(1, len(array)))
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, len(array), step):
        h.update(memoryview(np.ascontiguousarray(array[start:start + step])).cast("B"))


def content_fingerprint(dataset) -> str:
    """Hex sha256 over the name and x/y train/val (dtype, shape, bytes) of a `nas.data.Dataset`."""
    h = hashlib.sha256(_FINGERPRINT_VERSION)
    h.update(f"|name={dataset.name}|".encode())
    for label in ("x_train", "y_train", "x_val", "y_val"):
        _hash_array(h, label, getattr(dataset, label))
    return h.hexdigest()


def dataset_record(dataset) -> DatasetRecord:
    """The LDE's record of a `nas.data.Dataset` (hashed once per object per process)."""
    try:
        cached = _CACHE.get(dataset)
    except TypeError:  # not weak-referenceable: hash every time
        cached = None
    if cached is not None:
        return cached
    record = DatasetRecord(
        fingerprint=content_fingerprint(dataset),
        name=str(dataset.name),
        input_shape=tuple(int(d) for d in dataset.input_shape),
        num_classes=int(dataset.num_classes) if getattr(dataset, "task", "classification") == "classification" else None,
        num_train=int(len(dataset.x_train)),
        num_val=int(len(dataset.x_val)),
    )
    try:
        _CACHE[dataset] = record
    except TypeError:
        pass
    return record


__all__ = ["content_fingerprint", "dataset_record"]
