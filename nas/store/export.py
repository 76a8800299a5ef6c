"""The trials table as JSONL or CSV, and back, for analysis outside the store.

JSONL keeps nested values (metrics, history) as JSON; CSV flattens them to
JSON text in their cells, with an empty cell for None. Both read back into
`Trial` records equal to the stored ones.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Iterable

from nas.store.interface import TrialStore
from nas.store.records import TRIAL_FIELDS, Run, Trial

_INT_FIELDS = frozenset({"run_id", "index", "parent", "attempts", "epochs", "num_params"})
_FLOAT_FIELDS = frozenset({"queued_at", "started_at", "finished_at", "best_score", "t_tr"})
_JSON_FIELDS = frozenset({"hyperparameters", "metrics", "history", "feedback"})


def _selected(store: TrialStore, run: Run | int | None) -> Iterable[Trial]:
    runs = store.runs() if run is None else (run,)
    for r in runs:
        yield from store.trials(r)


def to_jsonl(store: TrialStore, path: str | os.PathLike, run: Run | int | None = None) -> int:
    """Writes one JSON object per trial (every run unless `run` is given); returns the row count."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for trial in _selected(store, run):
            f.write(json.dumps(dataclasses.asdict(trial), sort_keys=True) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> list[Trial]:
    """Trials written by `to_jsonl`."""
    with open(path, encoding="utf-8") as f:
        return [Trial(**json.loads(line)) for line in f if line.strip()]


def _cell(name: str, value) -> str:
    if value is None:
        return ""
    if name in _JSON_FIELDS:
        return json.dumps(value, sort_keys=True)
    return repr(value) if isinstance(value, float) else str(value)


def _parse(name: str, text: str):
    if text == "":
        return None
    if name in _JSON_FIELDS:
        return json.loads(text)
    if name in _INT_FIELDS:
        return int(text)
    if name in _FLOAT_FIELDS:
        return float(text)
    return text


def to_csv(store: TrialStore, path: str | os.PathLike, run: Run | int | None = None) -> int:
    """Writes the trials as CSV, one column per `Trial` field; returns the row count."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TRIAL_FIELDS)
        for trial in _selected(store, run):
            writer.writerow([_cell(name, getattr(trial, name)) for name in TRIAL_FIELDS])
            count += 1
    return count


def read_csv(path: str | os.PathLike) -> list[Trial]:
    """Trials written by `to_csv` (an empty cell reads as None, so an empty error text does too)."""
    with open(path, encoding="utf-8", newline="") as f:
        return [Trial(**{name: _parse(name, row[name]) for name in TRIAL_FIELDS}) for row in csv.DictReader(f)]
