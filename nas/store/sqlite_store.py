"""`SqliteTrialStore`: the experiment store as one SQLite file (``store.sqlite``) in a run directory.

Why it survives a process killed at any moment: every operation is a single
``BEGIN IMMEDIATE ... COMMIT`` transaction, and SQLite's commit is atomic, so
a kill before COMMIT leaves none of the operation and a kill after leaves all
of it. A trial is one row keyed by (run, index) and each operation changes
its status with one conditional UPDATE, so there is never a moment at which
a trial has no row, two rows, or two statuses.

Concurrency: WAL journal mode lets readers (a dashboard, `nas.store.export`)
read while the engine writes, each seeing the last committed state. One
writer process is the intended use; `BEGIN IMMEDIATE` plus a busy timeout
keep several writers correct too, except that `requeue_interrupted` assumes
no other live process is training a ``running`` trial. WAL needs a local
file system (not NFS): its shared-memory index does not work across hosts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

from nas.atomic_io import created_once
from nas.store import records
from nas.store.encoding import from_json, to_json
from nas.store.errors import (
    ArtefactPathError,
    ConfigMismatchError,
    CorruptStoreError,
    InvalidTransitionError,
    NotSerialisableError,
    StoreError,
    TrialConflictError,
    UnknownRunError,
    UnknownTrialError,
)
from nas.store.fingerprint import differences, fingerprint, identity
from nas.store.interface import TrialStore
from nas.store.provenance import code_version as current_code_version
from nas.store.records import Artefact, PlannedTrial, Run, StatusCounts, StrategyState, Trial, TrialOutcome
from nas.store.schema import ensure_schema, has_schema

STORE_FILENAME = "store.sqlite"
_MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING claims a trial and reads it back in one statement

# Trial fields and the columns that hold them, in SELECT order.
_TRIAL_COLUMNS = tuple("trial_index" if name == "index" else name for name in records.TRIAL_FIELDS)
_TRIAL_SELECT = ", ".join(_TRIAL_COLUMNS)
_JSON_TRIAL_FIELDS = frozenset({"hyperparameters", "metrics", "history", "feedback"})
_RUN_SELECT = "id, created, fingerprint, config, dataset_meta, strategy, seed, code_version"
_ARTEFACT_SELECT = "id, run_id, trial_index, kind, path, created"


def _trial(row: Sequence[Any]) -> Trial:
    values = {name: (from_json(value) if name in _JSON_TRIAL_FIELDS else value)
              for name, value in zip(records.TRIAL_FIELDS, row)}
    return Trial(**values)


def _run(row: Sequence[Any]) -> Run:
    run_id, created, fp, config, dataset_meta, strategy, seed, code = row
    return Run(run_id, created, fp, from_json(config), from_json(dataset_meta), strategy, seed, from_json(code))


def _run_id(run: Run | int) -> int:
    if isinstance(run, Run):
        return run.id
    if isinstance(run, int) and not isinstance(run, bool):
        return run
    raise TypeError(f"a run is a Run or its integer id, got {type(run).__name__}")


def _statuses(status: str | Sequence[str] | None) -> tuple[str, ...]:
    if status is None:
        return records.STATUSES
    wanted = (status,) if isinstance(status, str) else tuple(status)
    unknown = [s for s in wanted if s not in records.STATUSES]
    if unknown:
        raise ValueError(f"unknown trial status {unknown[0]!r}; statuses are {list(records.STATUSES)}")
    return wanted


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


def _configure(conn: sqlite3.Connection, path: str) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise StoreError(f"{path}: SQLite refused WAL journal mode (got {mode!r}); "
                         "put the run directory on a local file system")
    # FULL: WAL mode with NORMAL survives a killed process but may lose the
    # last commits on power loss or an OS crash; FULL fsyncs each commit so
    # a trial recorded `done` stays done. A trial trains for seconds to
    # hours and commits about three times, so an fsync (< 1 ms) costs nothing.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")


def _create(path: str, timeout: float) -> None:
    """Creates a store file with its schema, atomically.

    The schema is written to a temporary file beside `path` and hard-linked
    into place: a process killed at any moment leaves either no store or a
    complete one (plus at most a stray temporary file), never an empty one,
    and of two processes creating the same store at once, one wins and the
    other opens the winner's (a link, unlike a rename, never replaces).
    """
    with created_once(path) as temporary:
        conn = _connect(temporary, timeout)
        try:
            _configure(conn, temporary)
            ensure_schema(conn, path)
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file


def _inside(root: str, path: str) -> bool:
    root, path = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([root, path]) == root


class SqliteTrialStore(TrialStore):
    """A `TrialStore` in one SQLite file.

    Args:
      path: the database file (created, with its schema, if absent).
      timeout: seconds to wait for another process's write lock.
      clock: Unix-seconds clock for timestamps (injectable for tests).

    Raises:
      SchemaVersionError: the file was written by another schema version.
      StoreError: the file system cannot hold a WAL-mode database.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0, clock: Callable[[], float] = time.time):
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(f"the store needs SQLite >= 3.35 (UPDATE ... RETURNING); this Python links "
                             f"SQLite {sqlite3.sqlite_version}")
        self.path = os.path.abspath(os.fspath(path))
        # Artefact paths are kept relative to this folder (the run directory), so
        # a moved or copied run finds its own files and never another run's.
        self.root = os.path.dirname(self.path)
        self._clock = clock
        self._timeout = timeout
        if not os.path.exists(self.path):
            _create(self.path, timeout)
        elif os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            # `_create` never leaves an empty file behind, so an empty store was
            # truncated or replaced: opening it would start the search over and
            # silently lose its history.
            raise CorruptStoreError(
                f"{self.path} is empty (0 bytes): a store file is never empty, so it was truncated or "
                "replaced. Nothing was changed; restore it from a copy, or move it away to start a new search")
        # Autocommit mode: the store issues BEGIN/COMMIT itself, so no statement
        # runs in a transaction the sqlite3 module opened implicitly.
        self._conn = _connect(self.path, timeout)
        try:
            with self._named_errors("open"):
                # Looked at before anything is written (WAL mode rewrites the header).
                if not has_schema(self._conn):
                    raise CorruptStoreError(
                        f"{self.path} is an SQLite file without the store's tables: not a nas store (or one "
                        "damaged before its schema was written). Nothing was changed; use another run directory")
                status = self._conn.execute("PRAGMA quick_check").fetchone()[0]
                if status != "ok":
                    raise CorruptStoreError(f"{self.path} is damaged (SQLite quick_check: {status}). Nothing was "
                                            "changed; restore it from a copy, or start a new run directory")
                _configure(self._conn, self.path)
                self.schema_version = ensure_schema(self._conn, self.path)
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def in_run_dir(cls, run_dir: str | os.PathLike, **kwargs) -> "SqliteTrialStore":
        """Opens ``<run_dir>/store.sqlite``, creating the directory if needed."""
        os.makedirs(run_dir, exist_ok=True)
        return cls(os.path.join(run_dir, STORE_FILENAME), **kwargs)

    def __repr__(self) -> str:
        return f"SqliteTrialStore({self.path!r})"

    # ---------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front, so a
        read-then-update inside it cannot race another writer."""
        with self._named_errors("write to"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _named_errors(self, action: str) -> Iterator[None]:
        """SQLite's own errors ("file is not a database", "disk I/O error") name no file; ours do."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            kind = CorruptStoreError if type(exc) is sqlite3.DatabaseError else StoreError
            raise kind(f"cannot {action} the trial store {self.path}: {exc} (nothing was changed; if the file is "
                       "damaged, restore it from a copy or start a new run directory)") from exc

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list:
        with self._named_errors("read"):
            return self._conn.execute(sql, args).fetchall()

    def _read_one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = self._read(sql, args)
        return rows[0] if rows else None

    def _require_run(self, run_id: int) -> None:
        if self._read_one("SELECT 1 FROM runs WHERE id = ?", (run_id,)) is None:
            raise UnknownRunError(run_id, self.path)

    def _require_trial(self, run_id: int, index: int, action: str) -> tuple[str, int]:
        row = self._read_one("SELECT status, attempts FROM trials WHERE run_id = ? AND trial_index = ?",
                                 (run_id, index))
        if row is None:
            self._require_run(run_id)
            raise UnknownTrialError(run_id, index, action)
        return row

    # ---------------------------------------------------------------- runs
    def open_run(self, config: Any, dataset_meta: Any, strategy: str, seed: int, *,
                 resume: bool = True, code_version: dict | None = None) -> Run:
        fp = fingerprint(config, dataset_meta, strategy, seed)
        wanted = identity(config, dataset_meta, strategy, seed)
        code = to_json(current_code_version() if code_version is None else code_version, "code version")
        with self._write() as conn:
            if resume:
                row = conn.execute(f"SELECT {_RUN_SELECT} FROM runs WHERE fingerprint = ? ORDER BY id DESC LIMIT 1",
                                   (fp,)).fetchone()
                if row is not None:
                    return _run(row)
                latest = conn.execute(f"SELECT {_RUN_SELECT} FROM runs ORDER BY id DESC LIMIT 1").fetchone()
                if latest is not None:
                    other = _run(latest)
                    diff = differences(identity(other.config, other.dataset_meta, other.strategy, other.seed), wanted)
                    raise ConfigMismatchError(
                        f"{self.path} already holds run {other.id} (strategy {other.strategy!r}, seed {other.seed}) "
                        "with a different configuration; what differs (stored -> requested):\n  "
                        + "\n  ".join(diff)
                        + "\nStart it in a new run directory (nas-search: hydra.run.dir=NEW_DIR), or put the "
                        "stored settings back to continue this run.")
            row = conn.execute(
                "INSERT INTO runs (created, fingerprint, config, dataset_meta, strategy, seed, code_version) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_RUN_SELECT}",
                (self._clock(), fp, to_json(wanted["config"], "run config"),
                 to_json(wanted["dataset"], "dataset metadata"), strategy, int(seed), code)).fetchall()[0]
        return _run(row)

    def run(self, run_id: int) -> Run:
        row = self._read_one(f"SELECT {_RUN_SELECT} FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise UnknownRunError(run_id, self.path)
        return _run(row)

    def runs(self) -> tuple[Run, ...]:
        return tuple(_run(r) for r in self._read(f"SELECT {_RUN_SELECT} FROM runs ORDER BY id"))

    # ---------------------------------------------------------------- trial lifecycle
    def enqueue(self, run: Run | int, trials: Iterable[PlannedTrial]) -> tuple[int, ...]:
        run_id = _run_id(run)
        planned = list(trials)
        # Serialise before the transaction: a bad value fails before anything is locked.
        encoded = [(p, to_json(p.hyperparameters, f"hyperparameters of trial {p.index}")) for p in planned]
        now = self._clock()
        new: list[int] = []
        with self._write() as conn:
            self._require_run(run_id)
            for p, hyperparameters in encoded:
                existing = conn.execute(
                    "SELECT arch_hash, hyperparameters, parent FROM trials WHERE run_id = ? AND trial_index = ?",
                    (run_id, p.index)).fetchone()
                if existing is not None:
                    differ = [name for name, old, wanted in zip(
                        ("arch_hash", "hyperparameters", "parent"), existing, (p.arch_hash, hyperparameters, p.parent))
                        if old != wanted]
                    if differ:
                        raise TrialConflictError(run_id, p.index, differ)
                    continue
                conn.execute(
                    "INSERT INTO trials (run_id, trial_index, arch, arch_hash, hyperparameters, parent, status, "
                    "queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, p.index, p.arch, p.arch_hash, hyperparameters, p.parent, records.QUEUED, now))
                new.append(p.index)
            # The parent key is deferred (a batch may list a child first); check it
            # here so a missing parent is named instead of failing at COMMIT.
            for p, _ in encoded:
                if p.parent is None:
                    continue
                found = conn.execute("SELECT 1 FROM trials WHERE run_id = ? AND trial_index = ?",
                                     (run_id, p.parent)).fetchone()
                if found is None:
                    raise UnknownTrialError(run_id, p.parent, f"derive trial {p.index} from")
        return tuple(new)

    def claim_next(self, run: Run | int) -> Trial | None:
        run_id = _run_id(run)
        with self._write() as conn:
            self._require_run(run_id)
            rows = conn.execute(
                "UPDATE trials SET status = 'running', attempts = attempts + 1, started_at = ?, finished_at = NULL "
                "WHERE run_id = ? AND trial_index = "
                "(SELECT MIN(trial_index) FROM trials WHERE run_id = ? AND status = 'queued') "
                f"RETURNING {_TRIAL_SELECT}",
                (self._clock(), run_id, run_id)).fetchall()
        return _trial(rows[0]) if rows else None

    def finish(self, run: Run | int, trial: int, outcome: TrialOutcome, *, attempt: int | None = None) -> Trial:
        run_id = _run_id(run)
        if not isinstance(outcome, TrialOutcome):
            raise TypeError(f"finish() takes a TrialOutcome (see nas.search.trial_records.outcome_from_result), "
                            f"got {type(outcome).__name__}")
        what = f"of trial {trial} of run {run_id}"
        values = (
            outcome.status,
            self._clock(),
            outcome.best_score,
            None if outcome.metrics is None else to_json(outcome.metrics, f"metrics {what}"),
            outcome.epochs,
            outcome.t_tr,
            outcome.num_params,
            None if outcome.history is None else to_json(outcome.history, f"history {what}"),
            None if outcome.feedback is None else to_json(outcome.feedback, f"feedback {what}"),
            outcome.error,
        )
        with self._write() as conn:
            status, attempts = self._require_trial(run_id, trial, "finish")
            if status != records.RUNNING:
                reason = ("it has already finished; a trial finishes once" if status in records.FINAL_STATUSES
                          else "only a running trial can finish; claim it first")
                raise InvalidTransitionError(run_id, trial, status, "finish", reason)
            if attempt is not None and attempt != attempts:
                raise InvalidTransitionError(
                    run_id, trial, status, "finish",
                    f"attempt {attempt} is stale; the trial was requeued and is now in attempt {attempts}")
            row = conn.execute(
                "UPDATE trials SET status = ?, finished_at = ?, best_score = ?, metrics = ?, epochs = ?, t_tr = ?, "
                "num_params = ?, history = ?, feedback = ?, error = ? "
                f"WHERE run_id = ? AND trial_index = ? AND status = 'running' RETURNING {_TRIAL_SELECT}",
                (*values, run_id, trial)).fetchall()[0]
        return _trial(row)

    def requeue_interrupted(self, run: Run | int, *, max_attempts: int | None = None) -> tuple[Trial, ...]:
        run_id = _run_id(run)
        if max_attempts is not None and (isinstance(max_attempts, bool) or max_attempts < 1):
            raise ValueError(f"max_attempts must be an int >= 1 or None, got {max_attempts!r}")
        changed = []
        with self._write() as conn:
            self._require_run(run_id)
            if max_attempts is not None:
                changed += conn.execute(
                    "UPDATE trials SET status = 'failed', finished_at = ?, "
                    f"error = '{records.GAVE_UP} its process died in each of its ' || attempts || ' attempts "
                    "(killed, e.g. out of memory); the limit is ' || ? || ' attempts' "
                    "WHERE run_id = ? AND status = 'running' AND attempts >= ? "
                    f"RETURNING {_TRIAL_SELECT}", (self._clock(), max_attempts, run_id, max_attempts)).fetchall()
            changed += conn.execute(
                "UPDATE trials SET status = 'queued', error = 'attempt ' || attempts || ' was interrupted; requeued' "
                f"WHERE run_id = ? AND status = 'running' RETURNING {_TRIAL_SELECT}", (run_id,)).fetchall()
        return tuple(sorted((_trial(r) for r in changed), key=lambda t: t.index))

    def release(self, run: Run | int, trial: int, reason: str, *, attempt: int | None = None) -> Trial:
        run_id = _run_id(run)
        with self._write() as conn:
            status, attempts = self._require_trial(run_id, trial, "release")
            if status != records.RUNNING:
                raise InvalidTransitionError(run_id, trial, status, "release", "only a running trial can be released")
            if attempt is not None and attempt != attempts:
                raise InvalidTransitionError(run_id, trial, status, "release",
                                             f"attempt {attempt} is stale; the trial is in attempt {attempts}")
            row = conn.execute(
                "UPDATE trials SET status = 'queued', attempts = attempts - 1, started_at = NULL, error = ? "
                f"WHERE run_id = ? AND trial_index = ? AND status = 'running' RETURNING {_TRIAL_SELECT}",
                (str(reason), run_id, trial)).fetchall()[0]
        return _trial(row)

    # ---------------------------------------------------------------- queries
    def trial(self, run: Run | int, index: int) -> Trial:
        run_id = _run_id(run)
        row = self._read_one(f"SELECT {_TRIAL_SELECT} FROM trials WHERE run_id = ? AND trial_index = ?",
                                 (run_id, index))
        if row is None:
            self._require_run(run_id)
            raise UnknownTrialError(run_id, index, "read")
        return _trial(row)

    def trials(self, run: Run | int, status: str | Sequence[str] | None = None) -> tuple[Trial, ...]:
        run_id = _run_id(run)
        wanted = _statuses(status)
        self._require_run(run_id)
        marks = ", ".join("?" * len(wanted))
        rows = self._read(
            f"SELECT {_TRIAL_SELECT} FROM trials WHERE run_id = ? AND status IN ({marks}) ORDER BY trial_index",
            (run_id, *wanted))
        return tuple(_trial(r) for r in rows)

    def counts(self, run: Run | int) -> StatusCounts:
        run_id = _run_id(run)
        self._require_run(run_id)
        rows = self._read("SELECT status, COUNT(*) FROM trials WHERE run_id = ? GROUP BY status",
                                  (run_id,))
        return StatusCounts(**dict(rows))

    def best(self, run: Run | int) -> Trial | None:
        run_id = _run_id(run)
        self._require_run(run_id)
        row = self._read_one(
            f"SELECT {_TRIAL_SELECT} FROM trials WHERE run_id = ? AND status = 'done' AND best_score IS NOT NULL "
            "ORDER BY best_score DESC, trial_index ASC LIMIT 1", (run_id,))
        return None if row is None else _trial(row)

    # ---------------------------------------------------------------- artefacts and strategy state
    def add_artefact(self, run: Run | int, kind: str, path: str, trial: int | None = None) -> Artefact:
        run_id = _run_id(run)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"an artefact kind is a non-empty string (best, pareto, checkpoint...), got {kind!r}")
        relative = self._relative(os.fspath(path), kind)
        with self._write() as conn:
            if trial is None:
                self._require_run(run_id)
            else:
                self._require_trial(run_id, trial, f"record a {kind!r} artefact of")
            row = conn.execute(
                f"INSERT INTO artefacts (run_id, trial_index, kind, path, created) VALUES (?, ?, ?, ?, ?) "
                f"RETURNING {_ARTEFACT_SELECT}", (run_id, trial, kind, relative, self._clock())).fetchall()[0]
        return self._artefact(row)

    def artefacts(self, run: Run | int, kind: str | None = None, trial: int | None = None) -> tuple[Artefact, ...]:
        run_id = _run_id(run)
        self._require_run(run_id)
        query, args = f"SELECT {_ARTEFACT_SELECT} FROM artefacts WHERE run_id = ?", [run_id]
        if kind is not None:
            query, args = query + " AND kind = ?", args + [kind]
        if trial is not None:
            query, args = query + " AND trial_index = ?", args + [trial]
        return tuple(self._artefact(r) for r in self._read(query + " ORDER BY id", args))

    def _relative(self, path: str, kind: str) -> str:
        """`path` relative to the run directory; anything resolving outside it is refused."""
        absolute = path if os.path.isabs(path) else os.path.join(self.root, path)
        if not _inside(self.root, absolute):
            raise ArtefactPathError(f"the {kind!r} artefact {path} is outside the run directory {self.root}; "
                                    "a run keeps its files inside its own directory")
        return os.path.relpath(os.path.realpath(absolute), os.path.realpath(self.root))

    def _artefact(self, row: Sequence[Any]) -> Artefact:
        """An artefact row with its path resolved against this store's directory."""
        artefact = Artefact(*row)
        absolute = os.path.normpath(os.path.join(self.root, artefact.path))
        if not _inside(self.root, absolute):
            # Written by an older version (absolute paths) or edited by hand.
            raise ArtefactPathError(
                f"{self.path}: the {artefact.kind!r} artefact of trial {artefact.trial} points at {artefact.path}, "
                f"outside the run directory {self.root}; it is refused rather than read (a run reads only its "
                "own files). Start a new run directory, or re-run the search in its original directory")
        return dataclasses.replace(artefact, path=absolute)

    def save_strategy_state(self, run: Run | int, state: bytes, told: Iterable[int]) -> StrategyState:
        run_id = _run_id(run)
        if not isinstance(state, (bytes, bytearray, memoryview)):
            raise NotSerialisableError(
                f"strategy state of run {run_id} must be bytes (serialise it first, e.g. "
                f"flax.serialization.to_bytes or json.dumps(...).encode()), got {type(state).__name__}")
        told_indices = tuple(sorted({int(i) for i in told}))
        now = self._clock()
        with self._write() as conn:
            self._require_run(run_id)
            conn.execute(
                "INSERT INTO strategy_state (run_id, updated, state, told) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET updated = excluded.updated, state = excluded.state, "
                "told = excluded.told", (run_id, now, bytes(state), to_json(list(told_indices), "told trials")))
        return StrategyState(run_id, bytes(state), told_indices, now)

    def strategy_state(self, run: Run | int) -> StrategyState | None:
        run_id = _run_id(run)
        self._require_run(run_id)
        row = self._read_one("SELECT updated, state, told FROM strategy_state WHERE run_id = ?",
                                 (run_id,))
        if row is None:
            return None
        updated, state, told = row
        return StrategyState(run_id, bytes(state), tuple(from_json(told)), updated)

    def make_room(self) -> None:
        # A TRUNCATE checkpoint moves the WAL's pages into the database and
        # cuts the -wal file to zero bytes: on a full disk, the blocks it held
        # are what the next small write (a release) needs. Never raises.
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        self._conn.close()
