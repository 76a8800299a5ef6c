"""Errors raised by the experiment store; each names the run, trial or file at fault."""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base class of every experiment-store error."""


class SchemaVersionError(StoreError):
    """The store file was written with a schema this version of nas cannot read."""


class UnknownRunError(StoreError, LookupError):
    """A caller named a run id that the store does not hold."""

    def __init__(self, run_id: int, path: str):
        self.run_id = run_id
        super().__init__(f"no run {run_id} in {path}")


class UnknownTrialError(StoreError, LookupError):
    """A caller named a trial index that the run does not hold."""

    def __init__(self, run_id: int, trial: int, action: str):
        self.run_id = run_id
        self.trial = trial
        super().__init__(f"cannot {action} trial {trial} of run {run_id}: no such trial (enqueue it first)")


class InvalidTransitionError(StoreError):
    """An operation asked for a status change the trial's lifecycle does not allow.

    Attributes:
      run_id, trial: the trial at fault.
      status: its status in the store when the operation was refused.
    """

    def __init__(self, run_id: int, trial: int, status: str, action: str, reason: str):
        self.run_id = run_id
        self.trial = trial
        self.status = status
        super().__init__(f"cannot {action} trial {trial} of run {run_id} (status {status!r}): {reason}")


class TrialConflictError(StoreError):
    """A trial index was enqueued again with a different definition.

    Enqueueing is idempotent only for the same trial; a different architecture
    or hyperparameters under an existing index means the strategy did not
    replay its proposals deterministically, and silently keeping either one
    would corrupt the run.
    """

    def __init__(self, run_id: int, trial: int, fields: list[str]):
        self.run_id = run_id
        self.trial = trial
        self.fields = fields
        super().__init__(
            f"trial {trial} of run {run_id} is already enqueued with a different {', '.join(fields)}; "
            "a resumed strategy must propose the same trial under the same index")


class ConfigMismatchError(StoreError):
    """The store already holds a run of a different configuration."""


class NotSerialisableError(StoreError, TypeError):
    """A value meant for a JSON column cannot be written as JSON."""


class CorruptStoreError(StoreError):
    """The store file exists but cannot be read as a store (empty, truncated, garbled).

    It is never replaced or started over: that would lose the run's history.
    """


class ArtefactPathError(StoreError):
    """An artefact path resolves outside the run directory its store lives in."""
