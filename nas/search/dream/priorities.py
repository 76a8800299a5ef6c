"""DREAM's priority table: P(action | condition) as measured accuracy changes (TOSEM'24 s4.4).

For each A-C-G-W condition a table holds, per action, the mean change in
validation accuracy when the action was applied to a model in that
condition and the child retrained, with how many models that mean is over
(`experiments/dream_priorities.py` measures it; `conf/dream/priorities/`
ships one). `rank` orders the actions for a condition, highest first.

A condition the table never saw still gets a ranking: each action's
priority is read at the most specific level that measured it: the exact
A-C-G-W condition, else its C-G-W pattern pooled over families, else the
action pooled over every condition (count-weighted means). `Ranked.level`
records which, so a trial's reason says how its action was chosen.

`random_table(seed)` is the ablation of s5.4 (random priorities): every
(condition, action) gets a priority drawn from a seeded uniform, the same
for the same seed on every machine.

The JSON file::

    {"format": "nas.dream.priorities/1",
     "thresholds": {...},        # the Thresholds its conditions were named with
     "provenance": {...},        # command, seeds, datasets, date, scale
     "conditions": {"OA-SC-DG-NW": {"models": 12,
                                    "actions": {"activation=selu": {"mean": 0.21, "count": 9}, ...}}}}

Loading checks every action and condition name and that the thresholds are
the ones in use: a table measured with other thresholds names its
conditions differently, so it is refused rather than silently misapplied.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zlib
from typing import Any, Iterable, Mapping

import numpy as np

from nas.atomic_io import write_text_atomic
from nas.search.dream.actions import ActionError, get_action
from nas.search.dream.conditions import Condition, Thresholds, format_condition, parse_condition
from nas.search.dream.conf_files import conf_dir

FORMAT = "nas.dream.priorities/1"
SHIPPED = "shipped"
RANDOM = "random"
EXACT, PATTERN, POOLED, UNMEASURED = "condition", "pattern", "pooled", "unmeasured"


class PriorityTableError(ValueError):
    """A priority file that cannot be used: unreadable, malformed, unknown names, other thresholds."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One action under one condition: the mean accuracy change over `count` models."""

    mean: float
    count: int


@dataclasses.dataclass(frozen=True)
class Ranked:
    """An action's place in a ranking: its priority and the level it was read at."""

    action: str
    priority: float
    count: int
    level: str


@dataclasses.dataclass(frozen=True)
class PriorityTable:
    """P(action | condition), with where it came from.

    Attributes:
      cells: condition name (A-C-G-W) -> action name -> `Cell`.
      models: condition name -> models measured in it.
      thresholds: the thresholds the conditions were named with (None: a random table, valid for any).
      provenance: how it was made (JSON-ready).
      random_seed: set for a random table: priorities are drawn, `cells` is empty.
    """

    cells: Mapping[str, Mapping[str, Cell]]
    models: Mapping[str, int]
    thresholds: Thresholds | None
    provenance: Mapping[str, Any]
    random_seed: int | None = None

    def rank(self, condition: Condition | None, actions: Iterable[str]) -> list[Ranked]:
        """`actions` ordered by priority for `condition`, highest first (ties: the given order).

        Actions measured nowhere come last, in the given order, as ``unmeasured``.
        A condition of None (feedback that could not be read) ranks by the
        pooled means.
        """
        actions = list(actions)
        if self.random_seed is not None:
            name = "unknown" if condition is None else condition.name
            ranked = [Ranked(a, _draw(self.random_seed, name, a), 0, RANDOM) for a in actions]
        else:
            ranked = [self._estimate(condition, a) for a in actions]
        order = sorted(range(len(ranked)), key=lambda i: (-_sortable(ranked[i].priority), i))
        return [ranked[i] for i in order]

    def _estimate(self, condition: Condition | None, action: str) -> Ranked:
        levels = [(POOLED, list(self.cells))]
        if condition is not None:
            exact = self.cells.get(condition.name, {}).get(action)
            if exact is not None:
                return Ranked(action, exact.mean, exact.count, EXACT)
            pattern = format_condition(dataclasses.replace(condition, A=None))
            levels.insert(0, (PATTERN, [n for n in self.cells if n.split("-", 1)[1] == pattern]))
        for level, names in levels:
            found = [self.cells[n][action] for n in names if action in self.cells[n]]
            count = sum(c.count for c in found)
            if count:
                return Ranked(action, sum(c.mean * c.count for c in found) / count, count, level)
        return Ranked(action, -math.inf, 0, UNMEASURED)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT,
                "thresholds": None if self.thresholds is None else self.thresholds.to_dict(),
                "provenance": dict(self.provenance),
                "conditions": {name: {"models": int(self.models.get(name, 0)),
                                      "actions": {a: {"mean": c.mean, "count": c.count} for a, c in cells.items()}}
                               for name, cells in sorted(self.cells.items())}}

    def counts(self) -> dict[str, int]:
        """Models measured per condition (what the closing table of the experiment shows)."""
        return {name: int(self.models.get(name, 0)) for name in sorted(self.cells)}


def _sortable(priority: float) -> float:
    return -math.inf if math.isnan(priority) else priority


def _draw(seed: int, condition: str, action: str) -> float:
    """A uniform in [-1, 1) fixed by (seed, condition, action) (crc32: stable across processes, unlike hash)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(condition.encode()), zlib.crc32(action.encode())])
    return float(rng.uniform(-1.0, 1.0))


def random_table(seed: int) -> PriorityTable:
    """Random priorities (the paper's s5.4 ablation), fixed by `seed`."""
    return PriorityTable({}, {}, None, {"random_seed": int(seed)}, random_seed=int(seed))


def from_measurements(rows: Iterable[Mapping[str, Any]], thresholds: Thresholds,
                      provenance: Mapping[str, Any]) -> PriorityTable:
    """A table from measured rows, each ``{"model": id, "condition": name, "action": name, "delta": float}``.

    `delta` is the child's validation accuracy minus its parent's; rows
    with a non-finite delta (a child that diverged counts as accuracy 0 by
    the caller, so these are only bad rows) are refused.
    """
    sums: dict[str, dict[str, list[float]]] = {}
    models: dict[str, set] = {}
    for i, row in enumerate(rows):
        condition = parse_condition(row["condition"]).name
        action = str(row["action"])
        get_action(action)
        delta = float(row["delta"])
        if not math.isfinite(delta):
            raise PriorityTableError(f"measurement {i} ({condition}, {action}): delta {delta} is not finite")
        sums.setdefault(condition, {}).setdefault(action, []).append(delta)
        models.setdefault(condition, set()).add(row["model"])
    cells = {c: {a: Cell(float(np.mean(v)), len(v)) for a, v in sorted(acts.items())} for c, acts in sums.items()}
    return PriorityTable(cells, {c: len(m) for c, m in models.items()}, thresholds, dict(provenance))


def save(table: PriorityTable, path: str) -> None:
    """Writes the table as JSON, atomically (a killed writer leaves the old file)."""
    write_text_atomic(path, json.dumps(table.to_json(), indent=1, sort_keys=False) + "\n")


def shipped_path() -> str:
    return os.path.join(conf_dir(), "dream", "priorities", "shipped.json")


def load(path: str, thresholds: Thresholds | None = None) -> PriorityTable:
    """A priority file, checked.

    Args:
      path: the JSON file.
      thresholds: the thresholds in use; a file measured with others is refused.
    Raises:
      PriorityTableError: naming the file and what is wrong (unreadable, not
        this format, an unknown condition or action name, other thresholds,
        a cell that is not {mean, count}).
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise PriorityTableError(f"{path}: cannot read the priority table ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise PriorityTableError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PriorityTableError(f"{path}: not a DREAM priority table (expected \"format\": \"{FORMAT}\")")
    try:
        measured_with = Thresholds.from_config(doc.get("thresholds"), where=f"{path}: thresholds")
    except ValueError as exc:
        raise PriorityTableError(str(exc)) from None
    if thresholds is not None and measured_with != thresholds:
        differ = {k: (v, getattr(thresholds, k)) for k, v in measured_with.to_dict().items()
                  if getattr(thresholds, k) != v}
        raise PriorityTableError(
            f"{path}: measured with other thresholds than dream.thresholds ({', '.join(f'{k}: file {a}, in use {b}' for k, (a, b) in differ.items())}); "
            "its conditions would be misnamed: regenerate it with experiments/dream_priorities.py or use these thresholds")
    conditions = doc.get("conditions")
    if not isinstance(conditions, dict):
        raise PriorityTableError(f"{path}: 'conditions' must map condition names to their actions")
    cells, models = {}, {}
    for name, node in conditions.items():
        try:
            condition = parse_condition(name)
        except ValueError as exc:
            raise PriorityTableError(f"{path}: unknown condition: {exc}") from None
        if condition.A is None:
            raise PriorityTableError(f"{path}: condition {name!r} has no architecture family (A-C-G-W expected)")
        if not isinstance(node, dict) or not isinstance(node.get("actions"), dict):
            raise PriorityTableError(f"{path}: conditions.{name} must hold 'models' and an 'actions' mapping")
        row = {}
        for action, cell in node["actions"].items():
            try:
                get_action(action)
            except ActionError as exc:
                raise PriorityTableError(f"{path}: conditions.{name}: {exc}") from None
            if not isinstance(cell, dict) or set(cell) != {"mean", "count"} \
                    or not isinstance(cell["count"], int) or cell["count"] < 1 \
                    or not isinstance(cell["mean"], (int, float)) or not math.isfinite(cell["mean"]):
                raise PriorityTableError(f"{path}: conditions.{name}.actions.{action} must be "
                                         f"{{mean: a finite number, count: an integer >= 1}}, got {cell!r}")
            row[action] = Cell(float(cell["mean"]), int(cell["count"]))
        cells[condition.name] = row
        models[condition.name] = int(node.get("models", 0))
    return PriorityTable(cells, models, measured_with, dict(doc.get("provenance") or {}))


def resolve(choice: str, thresholds: Thresholds, random_seed: int = 0) -> PriorityTable:
    """The table ``dream.priorities`` names: ``shipped``, ``random`` (with `random_seed`) or a file path."""
    if not isinstance(choice, str) or not choice:
        raise PriorityTableError(f"dream.priorities must be 'shipped', 'random' or a file path, got {choice!r}")
    if choice == RANDOM:
        return random_table(random_seed)
    path = shipped_path() if choice == SHIPPED else os.path.expanduser(choice)
    if choice != SHIPPED and not os.path.exists(path):
        raise PriorityTableError(f"dream.priorities: {path} does not exist (give 'shipped', 'random' or a "
                                 "priority file experiments/dream_priorities.py wrote)")
    return load(path, thresholds)


__all__ = ["Cell", "PriorityTable", "PriorityTableError", "RANDOM", "Ranked", "SHIPPED", "from_measurements", "load",
           "random_table", "resolve", "save", "shipped_path"]
