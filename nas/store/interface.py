"""`TrialStore`: the operations the search engine needs from persistent storage.

The engine talks to this interface only, so a server database can back it
later; `SqliteTrialStore` is the implementation for one run directory.

Contract every implementation keeps: each enqueued trial has exactly one
row; its status only moves ``queued -> running -> done|diverged|failed`` or,
through `requeue_interrupted` or `release`, ``running -> queued``; every operation is one
transaction, so a process killed at any moment leaves each trial in exactly
one of those states and no trial is lost or counted twice.
"""

from __future__ import annotations

import abc
from typing import Any, Iterable, Sequence

from nas.store.records import Artefact, PlannedTrial, Run, StatusCounts, StrategyState, Trial, TrialOutcome


class TrialStore(abc.ABC):
    """Runs, their trials and artefacts, kept where a restarted engine finds them."""

    # ---------------------------------------------------------------- runs
    @abc.abstractmethod
    def open_run(self, config: Any, dataset_meta: Any, strategy: str, seed: int, *,
                 resume: bool = True, code_version: dict | None = None) -> Run:
        """Returns the run with this (config, dataset_meta, strategy, seed), creating it if needed.

        Args:
          config: the run's settings (JSON-ready: dicts, lists, dataclasses).
          dataset_meta: identifies the dataset (name, shapes, split sizes).
          strategy: the search strategy's name.
          seed: the run's seed.
          resume: True: continue the run with the same fingerprint, and refuse
            a store that holds only runs of other configurations. False:
            always start a new run in this store.
          code_version: recorded provenance; default `provenance.code_version()`.

        Raises:
          ConfigMismatchError: `resume` is True and the store holds runs, none
            with this fingerprint; the message lists what differs.
        """

    @abc.abstractmethod
    def run(self, run_id: int) -> Run:
        """The run with this id (UnknownRunError if none)."""

    @abc.abstractmethod
    def runs(self) -> tuple[Run, ...]:
        """Every run, oldest first."""

    # ---------------------------------------------------------------- trial lifecycle
    @abc.abstractmethod
    def enqueue(self, run: Run | int, trials: Iterable[PlannedTrial]) -> tuple[int, ...]:
        """Adds trials as ``queued``; an index already present is left as it is.

        Returns:
          The indices that were new.

        Raises:
          TrialConflictError: an index is present with a different arch hash,
            hyperparameters or parent (nothing of the batch is written).
        """

    @abc.abstractmethod
    def claim_next(self, run: Run | int) -> Trial | None:
        """Atomically marks the lowest-index queued trial ``running``; None if none is queued."""

    @abc.abstractmethod
    def finish(self, run: Run | int, trial: int, outcome: TrialOutcome, *, attempt: int | None = None) -> Trial:
        """Moves a ``running`` trial to the outcome's final status and records it.

        Args:
          attempt: if given, the attempt number `claim_next` returned; a
            finish from an older attempt (the trial was requeued and claimed
            again since) is refused.

        Raises:
          UnknownTrialError: the run has no such trial.
          InvalidTransitionError: the trial is not ``running`` (or not in
            that attempt).
        """

    @abc.abstractmethod
    def requeue_interrupted(self, run: Run | int, *, max_attempts: int | None = None) -> tuple[Trial, ...]:
        """Turns every ``running`` trial back into ``queued``; call at start-up only.

        A trial left ``running`` was being trained by a process that died.
        With `max_attempts`, a trial already claimed that many times is marked
        ``failed`` instead, so a trial that kills its process (out of memory)
        cannot stall the run forever.

        Returns:
          The trials changed, in their new state.
        """

    @abc.abstractmethod
    def release(self, run: Run | int, trial: int, reason: str, *, attempt: int | None = None) -> Trial:
        """Puts a ``running`` trial back to ``queued`` without counting its attempt.

        For interruptions that are not the trial's doing, which the process
        sees and survives: the user's SIGINT/SIGTERM, or a checkpoint that
        could not be written (disk full). A trial that kills its own process
        cannot be released, and `requeue_interrupted` counts it instead.

        Args:
          reason: recorded as the trial's error until it runs again.
          attempt: as in `finish`: a stale attempt is refused.
        """

    # ---------------------------------------------------------------- queries
    @abc.abstractmethod
    def trial(self, run: Run | int, index: int) -> Trial:
        """One trial (UnknownTrialError if none)."""

    @abc.abstractmethod
    def trials(self, run: Run | int, status: str | Sequence[str] | None = None) -> tuple[Trial, ...]:
        """The run's trials in index order, optionally only those with `status` (one or several)."""

    @abc.abstractmethod
    def counts(self, run: Run | int) -> StatusCounts:
        """Trials per status."""

    @abc.abstractmethod
    def best(self, run: Run | int) -> Trial | None:
        """The ``done`` trial with the highest best_score (lowest index on ties); None if none."""

    # ---------------------------------------------------------------- artefacts and strategy state
    @abc.abstractmethod
    def add_artefact(self, run: Run | int, kind: str, path: str, trial: int | None = None) -> Artefact:
        """Records a file the run produced (UnknownTrialError if `trial` is not in the run).

        A store that lives in a run directory keeps `path` relative to it, so a
        moved or copied run finds its own files; a path outside that directory
        is refused (ArtefactPathError).
        """

    @abc.abstractmethod
    def artefacts(self, run: Run | int, kind: str | None = None, trial: int | None = None) -> tuple[Artefact, ...]:
        """The run's artefacts, oldest first, optionally filtered by kind and trial (absolute paths)."""

    @abc.abstractmethod
    def save_strategy_state(self, run: Run | int, state: bytes, told: Iterable[int]) -> StrategyState:
        """Replaces the run's strategy state; `told` lists the trials whose results it includes."""

    @abc.abstractmethod
    def strategy_state(self, run: Run | int) -> StrategyState | None:
        """The latest saved strategy state, or None."""

    def make_room(self) -> None:
        """Gives back what space the store can (its journal) so a write on a full disk may fit; best effort."""

    # ---------------------------------------------------------------- lifetime
    @abc.abstractmethod
    def close(self) -> None:
        """Releases the connection; the store is unusable afterwards."""

    def __enter__(self) -> "TrialStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
