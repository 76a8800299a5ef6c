"""JSON columns: what may be written to them and how, so equal values give equal text.

Keys are sorted and separators fixed, so the text of a config is canonical
and can be hashed (see `nas.store.fingerprint`). Frozen dataclasses (our
configs and specs) are written as their fields; tuples as lists; NumPy
scalars and arrays through `.item()`/`.tolist()` without importing NumPy.
Non-finite floats are written as Python's ``NaN``/``Infinity`` tokens: a
diverged trial's loss is a real observation, and `json.loads` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from nas.store.errors import NotSerialisableError


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    for method in ("item", "tolist"):  # NumPy / JAX scalars and arrays
        if callable(getattr(value, method, None)):
            try:
                return getattr(value, method)()
            except (TypeError, ValueError):
                continue
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def to_json(value: Any, what: str) -> str:
    """Canonical JSON text of `value`.

    Args:
      value: dicts with string keys, lists, tuples, str/int/float/bool/None,
        dataclass instances, NumPy scalars/arrays, nested.
      what: names the value in the error message (e.g. "config of run 3").

    Raises:
      NotSerialisableError: a part of `value` has no JSON form.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain)
    except (TypeError, ValueError) as exc:
        raise NotSerialisableError(f"{what} cannot be stored as JSON: {exc}") from None


def from_json(text: str | None) -> Any:
    """Inverse of `to_json`; SQL NULL (None) stays None."""
    return None if text is None else json.loads(text)
