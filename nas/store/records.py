"""What the store holds, as frozen records: runs, planned trials, outcomes, trial rows.

A trial's lifecycle is ``queued -> running -> done | diverged | failed``; an
interrupted ``running`` trial goes back to ``queued`` (its attempt count
keeps the history). The three final statuses are terminal.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from nas.status import DIVERGED, DONE, FAILED, FINAL_STATUSES, GAVE_UP, QUEUED, RUNNING, STATUSES  # noqa: F401


@dataclasses.dataclass(frozen=True)
class Run:
    """One search run.

    Attributes:
      id: the run's id in its store.
      created: Unix seconds.
      fingerprint: SHA-256 of (config, dataset_meta, strategy, seed); see
        `nas.store.fingerprint`.
      config, dataset_meta: as given to `open_run`, after a JSON round trip.
      strategy: the strategy's name.
      seed: the run's seed.
      code_version: package version and git commit when the run was created.
    """

    id: int
    created: float
    fingerprint: str
    config: Any
    dataset_meta: Any
    strategy: str
    seed: int
    code_version: dict


@dataclasses.dataclass(frozen=True)
class PlannedTrial:
    """A proposal to enqueue: what to train, not yet how it went.

    Attributes:
      index: 0-based trial index, unique within the run.
      arch: the architecture as JSON text (`Arch.to_json`).
      arch_hash: `Arch.structural_hash()`, so equal architectures can be found.
      hyperparameters: JSON-ready training settings (learning rate, choices).
      parent: the index of the trial this one was derived from (a morphism's
        source), or None.
    """

    index: int
    arch: str
    arch_hash: str
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    parent: int | None = None

    def __post_init__(self):
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"trial index must be an int >= 0, got {self.index!r}")
        if self.parent is not None and (not isinstance(self.parent, int) or self.parent == self.index):
            raise ValueError(f"trial {self.index}: parent must be another trial's index or None, got {self.parent!r}")
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError(f"trial {self.index}: arch must be non-empty JSON text, got {type(self.arch).__name__}")


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """How a claimed trial ended.

    Attributes:
      status: ``done``, ``diverged`` or ``failed``.
      best_score: best validation score (higher is better); None when there
        is none (diverged, failed). Must be finite.
      metrics: validation metrics at the best epoch.
      epochs: epochs trained.
      t_tr: seconds per training epoch.
      num_params: trainable parameters.
      history, feedback: per-epoch rows.
      error: what went wrong (a failed trial's exception text).
    """

    status: str
    best_score: float | None = None
    metrics: Mapping[str, Any] | None = None
    epochs: int | None = None
    t_tr: float | None = None
    num_params: int | None = None
    history: tuple | list | None = None
    feedback: tuple | list | None = None
    error: str | None = None

    def __post_init__(self):
        if self.status not in FINAL_STATUSES:
            raise ValueError(f"an outcome's status is one of {list(FINAL_STATUSES)}, got {self.status!r}")
        # NumPy/JAX scalars (float32 scores, int64 counts) are not SQLite values.
        for name, kind in (("best_score", float), ("t_tr", float), ("epochs", int), ("num_params", int)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, kind(value))
        # SQLite stores NaN as NULL and the best trial is chosen with ORDER BY;
        # a non-finite "best" would sort as a value and could win.
        if self.best_score is not None and not math.isfinite(self.best_score):
            raise ValueError(f"best_score must be finite or None, got {self.best_score!r}")

    @classmethod
    def failed(cls, error: str) -> "TrialOutcome":
        """The outcome of a trial whose evaluation raised."""
        return cls(status=FAILED, error=error)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One row of the trials table.

    Attributes:
      run_id, index: the trial's key.
      status: one of `STATUSES`.
      arch, arch_hash, hyperparameters, parent: as planned.
      attempts: times the trial was claimed (an interrupted attempt counts).
      queued_at, started_at, finished_at: Unix seconds; started_at is the
        latest attempt's start; None until it happens.
      best_score, metrics, epochs, t_tr, num_params, history, feedback: the
        outcome, None until the trial finishes.
      error: a failed trial's error, or why an attempt was interrupted.
    """

    run_id: int
    index: int
    status: str
    arch: str
    arch_hash: str
    hyperparameters: Any
    parent: int | None
    attempts: int
    queued_at: float
    started_at: float | None
    finished_at: float | None
    best_score: float | None
    metrics: Any
    epochs: int | None
    t_tr: float | None
    num_params: int | None
    history: Any
    feedback: Any
    error: str | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(Trial))


@dataclasses.dataclass(frozen=True)
class StatusCounts:
    """Trials of a run per status."""

    queued: int = 0
    running: int = 0
    done: int = 0
    diverged: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.running + self.done + self.diverged + self.failed

    @property
    def finished(self) -> int:
        return self.done + self.diverged + self.failed

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Artefact:
    """A file a run produced (best model, Pareto set, checkpoint...).

    Attributes:
      id: the artefact's id in its store.
      run_id: its run.
      trial: the trial it belongs to, or None for run-level artefacts.
      kind: what it is, e.g. ``best``, ``pareto``, ``checkpoint``.
      path: where it is (the store does not own or check the file).
      created: Unix seconds.
    """

    id: int
    run_id: int
    trial: int | None
    kind: str
    path: str
    created: float


@dataclasses.dataclass(frozen=True)
class StrategyState:
    """The latest serialised strategy state of a run.

    Attributes:
      run_id: its run.
      state: the serialised state (the strategy chooses the encoding).
      told: trial indices whose results the state already includes; finished
        trials not in it must be told again on resume.
      updated: Unix seconds.
    """

    run_id: int
    state: bytes
    told: tuple[int, ...]
    updated: float
