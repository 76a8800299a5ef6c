"""The trials table as JSONL (every field, lossless) or a flat CSV (for spreadsheets and pandas).

JSONL keeps nested values (hyperparameters, metrics, history, feedback) as
JSON and reads back into `Trial` records equal to the stored ones. The CSV
has one scalar per cell and no JSON: the trial's own numbers (``val_score``
is its best validation score, ``failure`` its error text), one column per
metric (``objective``, ``seconds``, ``val_accuracy``...; ``metrics.<key>``
where a metric shares a trial column's name) and one per hyperparameter,
nested keys joined by dots and list items numbered (``hp.learning_rate``,
``hp.optimizer.name``, ``hp.choices.widths.0``). The architecture and the
per-epoch history and feedback are left to the JSONL.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Any, Iterable

from nas.store.interface import TrialStore
from nas.store.records import Run, Trial

# CSV column <- Trial field, in this order, before the metrics and the hyperparameters.
_TRIAL_COLUMNS = (
    ("run_id", "run_id"), ("trial", "index"), ("status", "status"), ("val_score", "best_score"),
    ("epochs", "epochs"), ("t_tr", "t_tr"), ("num_params", "num_params"), ("parent", "parent"),
    ("attempts", "attempts"), ("arch_hash", "arch_hash"), ("queued_at", "queued_at"),
    ("started_at", "started_at"), ("finished_at", "finished_at"), ("failure", "error"),
)
HP_PREFIX = "hp."


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


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}", out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}.{i}", out)
    else:
        out[prefix] = value


def flat_row(trial: Trial) -> dict[str, Any]:
    """A trial as one flat mapping of scalars (the CSV's row, before text)."""
    row = {column: getattr(trial, field) for column, field in _TRIAL_COLUMNS}
    for key, value in (trial.metrics or {}).items():
        column = f"metrics.{key}" if key in row else key
        if isinstance(value, (dict, list, tuple)):
            _flatten(value, column, row)
        else:
            row[column] = value
    hp: dict[str, Any] = {}
    for key, value in (trial.hyperparameters or {}).items():
        _flatten(value, HP_PREFIX + key, hp)
    return row | dict(sorted(hp.items()))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return str(value)


def to_csv(store: TrialStore, path: str | os.PathLike, run: Run | int | None = None) -> int:
    """Writes the trials as a flat CSV (see the module docstring); returns the row count.

    The columns are the union over the trials; a trial without a metric or
    hyperparameter has an empty cell there.
    """
    rows = [flat_row(trial) for trial in _selected(store, run)]
    columns = [c for c, _ in _TRIAL_COLUMNS]
    metric_columns: dict[str, None] = {}
    hp_columns: dict[str, None] = {}
    for row in rows:
        for column in row:
            if column not in columns:
                (hp_columns if column.startswith(HP_PREFIX) else metric_columns)[column] = None
    columns += sorted(metric_columns) + sorted(hp_columns)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
    return len(rows)


# Text columns whose cells may look like numbers (a hash of digits, an error message "42").
_TEXT_COLUMNS = frozenset({"status", "arch_hash", "failure"})


def _parse(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in _TEXT_COLUMNS:
        return text
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a `to_csv` file as dicts: numbers as int/float, True/False as bool, an empty cell as None.

    A hyperparameter's text that reads as a number comes back as one;
    `read_jsonl` is the lossless reader.
    """
    with open(path, encoding="utf-8", newline="") as f:
        return [{column: _parse(column, text) for column, text in row.items()} for row in csv.DictReader(f)]
