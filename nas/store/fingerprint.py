"""A run's identity: the hash of what determines its results, and a readable diff.

Re-running the same command on the same run directory must continue the run;
a changed setting must not be mixed into it. The fingerprint covers the
config, the dataset metadata, the strategy name and the seed. The code
version is recorded but deliberately left out, so a run can be resumed
after a bug fix.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nas.store.encoding import to_json


def identity(config: Any, dataset_meta: Any, strategy: str, seed: int) -> dict[str, Any]:
    """The plain-JSON view of everything the fingerprint covers."""
    return json.loads(to_json(
        {"config": config, "dataset": dataset_meta, "strategy": strategy, "seed": seed},
        "run identity (config, dataset metadata, strategy, seed)"))


def fingerprint(config: Any, dataset_meta: Any, strategy: str, seed: int) -> str:
    """Hex SHA-256 of the canonical JSON of (config, dataset metadata, strategy, seed)."""
    text = to_json(identity(config, dataset_meta, strategy, seed), "run identity")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def differences(old: Any, new: Any, limit: int = 8) -> list[str]:
    """Dotted paths whose values differ, as ``path: old -> new`` (at most `limit`, then a count)."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(old, "", a)
    _flatten(new, "", b)
    _missing = "<absent>"
    lines = [f"{key}: {a.get(key, _missing)!r} -> {b.get(key, _missing)!r}"
             for key in sorted(set(a) | set(b)) if a.get(key, _missing) != b.get(key, _missing)]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines
