"""The lifelong database of experiments (LDE): every trained network of every run, in one SQLite file.

NeuNetS's TAPAS learns from all the networks a user has ever trained; a run's
own ``store.sqlite`` knows only that run. The LDE is the one file shared by
all runs of a user (``lde.path``, default ``~/.cache/nas/lde.sqlite``) that
each `nas-train` run and each `nas-search` trial appends to, and that
`nas-lde import` fills from old run directories.

What it holds: datasets (a content fingerprint, name, shape, classes, sizes),
their DCN (the probe network's accuracy, per probe version), and experiments
(architecture IR as JSON, training settings, per-epoch curves, accuracies,
t_tr, parameters, FLOPs, the run it came from). Never training data, weights
or source code: an experiment is a few kilobytes of JSON and numbers.

Why it survives several writers and a writer killed at any moment (the same
reasoning as `nas.store.sqlite_store`): WAL mode lets readers read while one
process writes; each append is one ``BEGIN IMMEDIATE ... COMMIT`` transaction
(the write lock is taken up front and waited for up to `BUSY_TIMEOUT_S`), and
SQLite's commit is atomic, so a writer killed before COMMIT leaves none of its
batch and one killed after leaves all of it. Rows are ``INSERT OR IGNORE`` on
a unique experiment ``key`` (run directory, run id and trial index for the
search), so appending the same experiment twice, from two processes or from a
repeated `nas-lde import`, adds it once.

Opening never changes a file it will not use: a file that is not SQLite, is
damaged, belongs to another program, or was written by a newer schema raises
`LDEError` (naming the path) before anything is written to it.

Standard library only (and `nas.store.encoding` for canonical JSON): readers
such as `nas-lde stats` start without JAX.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import threading
import time
from typing import Any, Iterator, Sequence

from nas.atomic_io import created_once
from nas.store.encoding import from_json, to_json
from nas.store.errors import NotSerialisableError

FORMAT_NAME = "nas.lde"
SCHEMA_VERSION = 1
# SQLite's `application_id` header field ("NLDE"): `file(1)` and other tools can tell the LDE apart.
APPLICATION_ID = 0x4E4C4445
# Several searches (a joblib multirun) may append at once; a writer waits this long for the write lock.
# An append is a few kilobytes, so the lock is held for milliseconds and a minute is generous.
BUSY_TIMEOUT_S = 60.0

DDL = """
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE datasets (
    fingerprint  TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    input_shape  TEXT NOT NULL,     -- JSON list
    num_classes  INTEGER,           -- NULL for regression
    num_train    INTEGER NOT NULL,
    num_val      INTEGER NOT NULL,
    created      REAL NOT NULL
);

-- The DCN of a dataset, per probe version: a DCN measured by another probe is another number.
CREATE TABLE dcn (
    fingerprint  TEXT NOT NULL,
    probe        TEXT NOT NULL,
    value        REAL NOT NULL,
    seconds      REAL NOT NULL,
    created      REAL NOT NULL,
    PRIMARY KEY (fingerprint, probe)
);

CREATE TABLE experiments (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    dataset     TEXT NOT NULL,      -- datasets.fingerprint (not enforced: a row may arrive first)
    arch        TEXT NOT NULL,      -- Arch.to_json
    arch_hash   TEXT NOT NULL,      -- Arch.structural_hash
    settings    TEXT NOT NULL,      -- JSON object
    history     TEXT NOT NULL,      -- JSON list, one row per epoch
    status      TEXT NOT NULL,
    peak_val    REAL,
    final_val   REAL,
    epochs      INTEGER,
    t_tr        REAL,
    num_params  INTEGER,
    flops       INTEGER,
    source      TEXT NOT NULL,      -- JSON object: kind, run_dir, trial...
    lineage     TEXT,
    prefix      INTEGER,
    created     REAL
);
CREATE INDEX experiments_by_dataset ON experiments (dataset, status);
CREATE INDEX experiments_by_lineage ON experiments (lineage, prefix);
"""


class LDEError(Exception):
    """The LDE file cannot be used (damaged, foreign, newer, unwritable); the message names its path."""


@dataclasses.dataclass(frozen=True)
class DatasetRecord:
    """What the LDE knows of a dataset: never its examples.

    Attributes:
      fingerprint: hex sha256 over the content (x/y of train and val: dtype,
        shape, bytes) and the name (`nas.lde.fingerprint.dataset_record`), or
        ``meta:<sha256>`` when it was derived from a run's stored metadata
        because the data itself was not at hand (`nas.lde.ingest`).
      name, input_shape, num_classes (None for regression), num_train, num_val.
    """

    fingerprint: str
    name: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    num_train: int
    num_val: int


@dataclasses.dataclass(frozen=True)
class ExperimentRecord:
    """One trained network: its IR, how it was trained and what it reached.

    Attributes:
      key: unique per experiment; appending an existing key adds nothing.
      dataset: the `DatasetRecord.fingerprint` it was trained on (its DCN is
        the dataset's, kept once in the ``dcn`` table, not per row).
      arch: ``Arch.to_json()``; arch_hash: ``Arch.structural_hash()``.
      settings: training settings (optimizer, learning rate, batch size,
        epochs, seed...) as JSON.
      history: per-epoch rows (train/val metrics) as the trainer recorded them.
      status: ``done``, ``diverged`` or ``failed``.
      peak_val, final_val: best and last validation accuracy, in [0, 1].
      epochs, t_tr (seconds per training epoch), num_params, flops.
      source: where it came from: ``{"kind": "search"|"train"|"import"|"lde_init",
        "run_dir": ..., "trial": ...}``.
      lineage, prefix: incremental training: the id shared by a network and its
        prefix sub-networks, and how many of the full network's layers this one has.
      created: Unix seconds.
    """

    key: str
    dataset: str
    arch: str
    arch_hash: str
    settings: dict
    history: tuple[dict, ...]
    status: str
    peak_val: float | None
    final_val: float | None
    epochs: int | None
    t_tr: float | None
    num_params: int | None
    flops: int | None
    source: dict
    lineage: str | None = None
    prefix: int | None = None
    created: float | None = None


_EXPERIMENT_COLUMNS = tuple(f.name for f in dataclasses.fields(ExperimentRecord))
_JSON_EXPERIMENT_FIELDS = frozenset({"settings", "history", "source"})
_DATASET_COLUMNS = "fingerprint, name, input_shape, num_classes, num_train, num_val"


def _optional(value: Any, kind: type) -> Any:
    """NumPy / JAX scalars to plain Python (sqlite3 binds only those); None stays None."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return kind(value)


def _dataset(row: Sequence[Any]) -> DatasetRecord:
    fp, name, shape, classes, train, val = row
    return DatasetRecord(fp, name, tuple(from_json(shape)), classes, train, val)


def _experiment(row: Sequence[Any]) -> ExperimentRecord:
    values = {name: (from_json(value) if name in _JSON_EXPERIMENT_FIELDS else value)
              for name, value in zip(_EXPERIMENT_COLUMNS, row)}
    values["history"] = tuple(values["history"] or ())
    return ExperimentRecord(**values)


def _statements(script: str) -> list[str]:
    out, current = [], []
    for line in script.splitlines():
        current.append(line.split("--", 1)[0])
        if sqlite3.complete_statement("\n".join(current)):
            statement = "\n".join(current).strip()
            if statement.strip(";").strip():
                out.append(statement)
            current = []
    return out


def _connect(path: str) -> sqlite3.Connection:
    # Autocommit: the LDE issues BEGIN/COMMIT itself. One connection may be used from the search's
    # worker threads; `LDE._lock` serialises them.
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)


def _configure(conn: sqlite3.Connection, path: str) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise LDEError(f"{path}: SQLite refused WAL journal mode (got {mode!r}); put the LDE on a local "
                       "file system (set lde.path or NAS_LDE_PATH)")
    # NORMAL in WAL mode: a killed process loses nothing committed; power loss may lose the last
    # appends, which `nas-lde import` can redo from the run stores (the runs' own records are FULL).
    conn.execute("PRAGMA synchronous = NORMAL")


def _create(path: str) -> None:
    """Creates an LDE file with its schema, atomically (`nas.atomic_io.created_once`).

    Written to a temporary file beside `path` and hard-linked into place: a
    killed process leaves no LDE or a complete one, never an empty one, and of
    two processes creating it at once one wins and the other opens its file.
    """
    with created_once(path) as temporary:
        conn = _connect(temporary)
        try:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            _configure(conn, temporary)
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(DDL):
                conn.execute(statement)
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                             [("format", FORMAT_NAME), ("schema_version", str(SCHEMA_VERSION)),
                              ("created", repr(time.time()))])
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file

class LDE:
    """The lifelong database of experiments in one SQLite file.

    Args:
      path: the file (created with its schema, and its folder, if absent and
        `create`).
      create: False: a missing file raises `LDEError` instead.

    Raises:
      LDEError: the file is not SQLite or is damaged (``PRAGMA quick_check``),
        is an SQLite file of another program (no ``nas.lde`` meta table), or
        was written by a newer schema. Nothing is written to such a file.

    Use as a context manager, or call `close`.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if os.path.isdir(self.path):
            raise LDEError(f"{self.path} is a directory, not an LDE file; set lde.path (or NAS_LDE_PATH) to a file")
        if not os.path.exists(self.path):
            if not create:
                raise LDEError(f"{self.path}: no LDE there (nothing has been recorded yet)")
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                _create(self.path)
            except (OSError, sqlite3.Error) as exc:
                raise LDEError(f"cannot create the LDE {self.path}: {exc}") from exc
        elif os.path.getsize(self.path) == 0:
            # SQLite would take an empty file for an empty database and write its schema into it;
            # `_create` never leaves one, so it was truncated or made by something else.
            raise LDEError(f"{self.path} is empty (0 bytes): not an LDE (an LDE file is never empty). Nothing was "
                           "changed; move it away, or point lde.path elsewhere")
        conn = _connect(self.path)
        try:
            self._check(conn)
            _configure(conn, self.path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LDEError(f"{self.path} is not a readable LDE: {exc}. Nothing was changed; move it away, or "
                           "point lde.path elsewhere") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _check(self, conn: sqlite3.Connection) -> None:
        """Refuses a foreign, damaged or newer file; reads only (the header is untouched)."""
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is not None
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall()) if has_meta else {}
        if meta.get("format") != FORMAT_NAME:
            found = f"application_id {app:#x}" if app else "no application_id"
            raise LDEError(f"{self.path} is an SQLite file of another kind ({found}, no '{FORMAT_NAME}' meta "
                           "table): not an LDE. Nothing was changed; point lde.path (or NAS_LDE_PATH) elsewhere")
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise LDEError(f"{self.path}: its meta table has schema_version {meta.get('schema_version')!r}, not "
                           "an integer: damaged. Nothing was changed") from None
        if version > SCHEMA_VERSION:
            raise LDEError(f"{self.path} was written by a newer nas: schema {version}, this nas reads "
                           f"<= {SCHEMA_VERSION}; upgrade nas (nothing was changed)")
        status = conn.execute("PRAGMA quick_check").fetchone()[0]
        if status != "ok":
            raise LDEError(f"{self.path} is damaged (SQLite quick_check: {status}). Nothing was changed; "
                           "restore it from a copy or move it away (`nas-lde import` can rebuild it from run dirs)")
        self.schema_version = version

    # ---------------------------------------------------------------- plumbing
    def __repr__(self) -> str:
        return f"LDE({self.path!r})"

    def __enter__(self) -> "LDE":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextlib.contextmanager
    def _named_errors(self, action: str) -> Iterator[sqlite3.Connection]:
        """SQLite's errors name no file; ours do. Yields the connection, holding the thread lock."""
        with self._lock:
            if self._conn is None:
                raise LDEError(f"the LDE {self.path} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise LDEError(f"cannot {action} the LDE {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front (waiting up to BUSY_TIMEOUT_S)."""
        with self._named_errors("write to") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list:
        with self._named_errors("read") as conn:
            return conn.execute(sql, args).fetchall()

    # ---------------------------------------------------------------- datasets
    def add_dataset(self, record: DatasetRecord) -> None:
        """Records a dataset; a fingerprint already there is left as it is."""
        with self._write() as conn:
            self._insert_dataset(conn, record)

    @staticmethod
    def _insert_dataset(conn: sqlite3.Connection, record: DatasetRecord) -> None:
        row = (record.fingerprint, record.name, to_json([int(d) for d in record.input_shape], "input_shape"),
               _optional(record.num_classes, int), int(record.num_train), int(record.num_val), time.time())
        conn.execute(f"INSERT OR IGNORE INTO datasets ({_DATASET_COLUMNS}, created) VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    def dataset(self, fingerprint: str) -> DatasetRecord | None:
        rows = self._read(f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE fingerprint = ?", (fingerprint,))
        return _dataset(rows[0]) if rows else None

    def datasets(self) -> list[DatasetRecord]:
        return [_dataset(r) for r in self._read(f"SELECT {_DATASET_COLUMNS} FROM datasets ORDER BY created, name")]

    def set_dcn(self, fingerprint: str, value: float, *, probe: str, seconds: float) -> None:
        """Records the DCN of a dataset as measured by `probe` (replacing that probe's earlier value)."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO dcn (fingerprint, probe, value, seconds, created) "
                         "VALUES (?, ?, ?, ?, ?)", (fingerprint, probe, float(value), float(seconds), time.time()))

    def dcn(self, fingerprint: str, *, probe: str | None = None) -> float | None:
        """The dataset's DCN by `probe`, or (probe None) the most recently measured one; None if unmeasured."""
        if probe is None:
            rows = self._read("SELECT value FROM dcn WHERE fingerprint = ? ORDER BY created DESC LIMIT 1",
                              (fingerprint,))
        else:
            rows = self._read("SELECT value FROM dcn WHERE fingerprint = ? AND probe = ?", (fingerprint, probe))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------- experiments
    def append(self, experiments: Sequence[ExperimentRecord], *, dataset: DatasetRecord | None = None) -> int:
        """Appends experiments in one transaction; keys already there are skipped.

        Args:
          experiments: the rows.
          dataset: their dataset's record, added in the same transaction when
            a row was added (so an import of rows that are all there already
            leaves no dataset without experiments behind).

        Returns:
          How many rows were added (0 when every key was already there).
        """
        rows = []
        for e in experiments:
            try:
                rows.append((
                    e.key, e.dataset, e.arch, e.arch_hash, to_json(e.settings, f"settings of {e.key}"),
                    to_json(list(e.history), f"history of {e.key}"), e.status,
                    _optional(e.peak_val, float), _optional(e.final_val, float), _optional(e.epochs, int),
                    _optional(e.t_tr, float), _optional(e.num_params, int), _optional(e.flops, int),
                    to_json(e.source, f"source of {e.key}"), e.lineage, _optional(e.prefix, int),
                    time.time() if e.created is None else float(e.created)))
            except NotSerialisableError as exc:
                raise LDEError(f"cannot append to the LDE {self.path}: {exc}") from None
        if not rows:
            return 0
        placeholders = ", ".join("?" * len(_EXPERIMENT_COLUMNS))
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(f"INSERT OR IGNORE INTO experiments ({', '.join(_EXPERIMENT_COLUMNS)}) "
                             f"VALUES ({placeholders})", rows)
            added = conn.total_changes - before
            if dataset is not None and added:
                self._insert_dataset(conn, dataset)
            return added

    def experiments(self, *, datasets: Sequence[str] | None = None) -> list[ExperimentRecord]:
        """Every experiment (of the given dataset fingerprints), in the order they were appended."""
        select = f"SELECT {', '.join(_EXPERIMENT_COLUMNS)} FROM experiments"
        if datasets is None:
            rows = self._read(f"{select} ORDER BY id")
        else:
            wanted = list(dict.fromkeys(datasets))
            if not wanted:
                return []
            rows = self._read(f"{select} WHERE dataset IN ({', '.join('?' * len(wanted))}) ORDER BY id", wanted)
        return [_experiment(r) for r in rows]

    def count(self) -> int:
        return self._read("SELECT COUNT(*) FROM experiments")[0][0]

    def stats(self, *, probe: str | None = None) -> list[dict]:
        """Per dataset (those with a record or an experiment): name, fingerprint (the whole hex;
        print ``[:12]``), dcn (by `probe`, or the latest measured; None if none), experiments, done,
        networks (distinct lineages, or architectures where a row has no lineage)."""
        counts = {fp: (n, done, nets) for fp, n, done, nets in self._read(
            "SELECT dataset, COUNT(*), SUM(status = 'done'), COUNT(DISTINCT COALESCE(lineage, 'arch:' || arch_hash)) "
            "FROM experiments GROUP BY dataset")}
        names = {fp: name for fp, name in self._read("SELECT fingerprint, name FROM datasets ORDER BY created")}
        rows = []
        for fp in list(names) + sorted(set(counts) - set(names)):
            n, done, nets = counts.get(fp, (0, 0, 0))
            rows.append({"name": names.get(fp, "?"), "fingerprint": fp, "dcn": self.dcn(fp, probe=probe),
                         "experiments": n, "done": int(done or 0), "networks": nets})
        return rows


__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "FORMAT_NAME", "LDE", "SCHEMA_VERSION", "DatasetRecord",
           "ExperimentRecord", "LDEError"]
