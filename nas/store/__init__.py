"""Store: the persistent record of runs, trials, artefacts and strategy state.

A restarted engine resumes from it (NeuNetS: "state lives in persistent
storage"). The engine talks to the `TrialStore` interface; `SqliteTrialStore`
keeps it in ``store.sqlite`` in the run directory.

Imports the standard library and `nas` (for its version) only, so readers
and exporters start without JAX; the search converts its records to the
store's (`nas.search.trial_records`).
"""

from nas.store.errors import (
    ArtefactPathError,
    CorruptStoreError,
    ConfigMismatchError,
    InvalidTransitionError,
    NotSerialisableError,
    SchemaVersionError,
    StoreError,
    TrialConflictError,
    UnknownRunError,
    UnknownTrialError,
)
from nas.store.export import read_csv, read_jsonl, to_csv, to_jsonl
from nas.store.interface import TrialStore
from nas.store.lock import RunLock, RunLockedError
from nas.store.records import (
    DIVERGED,
    DONE,
    FAILED,
    FINAL_STATUSES,
    GAVE_UP,
    QUEUED,
    RUNNING,
    STATUSES,
    Artefact,
    PlannedTrial,
    Run,
    StatusCounts,
    StrategyState,
    Trial,
    TrialOutcome,
)
from nas.store.schema import SCHEMA_VERSION
from nas.store.sqlite_store import STORE_FILENAME, SqliteTrialStore

__all__ = [
    "DIVERGED", "DONE", "FAILED", "FINAL_STATUSES", "GAVE_UP", "ArtefactPathError", "CorruptStoreError",
    "RunLock", "RunLockedError", "QUEUED", "RUNNING", "SCHEMA_VERSION", "STATUSES",
    "STORE_FILENAME", "Artefact", "ConfigMismatchError", "InvalidTransitionError", "NotSerialisableError",
    "PlannedTrial", "Run", "SchemaVersionError", "SqliteTrialStore", "StatusCounts", "StoreError",
    "StrategyState", "Trial", "TrialConflictError", "TrialOutcome", "TrialStore", "UnknownRunError",
    "UnknownTrialError", "read_csv",
    "read_jsonl", "to_csv", "to_jsonl",
]


_MOVED = {"candidate_from_trial", "outcome_from_result", "plan_from_candidate"}


def __getattr__(name: str):
    if name in _MOVED:
        raise ImportError(f"nas.store.{name} moved to nas.search.trial_records.{name} "
                          "(the store no longer imports the search)")
    raise AttributeError(f"module 'nas.store' has no attribute {name!r}")
