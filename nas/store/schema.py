"""The store's SQLite schema, and creating it once per file.

One ``schema_version`` row per applied version; a file written by a newer
schema is refused rather than misread. The DDL runs in one transaction, so
a process killed while creating the schema leaves either none of it or all
of it.
"""

from __future__ import annotations

import sqlite3
import time

from nas.store.errors import SchemaVersionError

SCHEMA_VERSION = 1

DDL = """
CREATE TABLE schema_version (
    version   INTEGER PRIMARY KEY,
    applied   REAL NOT NULL
);

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    created       REAL NOT NULL,
    fingerprint   TEXT NOT NULL,
    config        TEXT NOT NULL,   -- canonical JSON
    dataset_meta  TEXT NOT NULL,   -- canonical JSON
    strategy      TEXT NOT NULL,
    seed          INTEGER NOT NULL,
    code_version  TEXT NOT NULL    -- JSON: package version, git commit, dirty flag
);
CREATE INDEX runs_by_fingerprint ON runs (fingerprint);

CREATE TABLE trials (
    run_id           INTEGER NOT NULL REFERENCES runs (id),
    trial_index      INTEGER NOT NULL CHECK (trial_index >= 0),
    arch             TEXT NOT NULL,   -- Arch.to_json
    arch_hash        TEXT NOT NULL,   -- Arch.structural_hash
    hyperparameters  TEXT NOT NULL,   -- JSON
    parent           INTEGER,         -- trial_index of the source trial in the same run
    status           TEXT NOT NULL
                     CHECK (status IN ('queued', 'running', 'done', 'diverged', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    queued_at        REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    best_score       REAL,
    metrics          TEXT,            -- JSON
    epochs           INTEGER,
    t_tr             REAL,
    num_params       INTEGER,
    history          TEXT,            -- JSON list, one row per epoch
    feedback         TEXT,            -- JSON list, one row per epoch
    error            TEXT,
    PRIMARY KEY (run_id, trial_index),
    -- Deferred so one enqueue batch may list a child before its parent.
    FOREIGN KEY (run_id, parent) REFERENCES trials (run_id, trial_index) DEFERRABLE INITIALLY DEFERRED,
    -- A trial that has run has been claimed at least once.
    CHECK (status = 'queued' OR attempts >= 1)
);
CREATE INDEX trials_by_status ON trials (run_id, status, trial_index);
CREATE INDEX trials_by_arch ON trials (run_id, arch_hash);

CREATE TABLE artefacts (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES runs (id),
    trial_index  INTEGER,             -- NULL: a run-level artefact
    kind         TEXT NOT NULL CHECK (kind <> ''),
    path         TEXT NOT NULL,
    created      REAL NOT NULL,
    FOREIGN KEY (run_id, trial_index) REFERENCES trials (run_id, trial_index)
);
CREATE INDEX artefacts_by_run ON artefacts (run_id, kind);

CREATE TABLE strategy_state (
    run_id   INTEGER PRIMARY KEY REFERENCES runs (id),
    updated  REAL NOT NULL,
    state    BLOB NOT NULL,
    told     TEXT NOT NULL            -- JSON list of trial indices the state includes
);
"""


def has_schema(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    return row is not None


def ensure_schema(conn: sqlite3.Connection, path: str) -> int:
    """Creates the schema if the file has none; checks its version otherwise.

    `conn` must be in autocommit mode (``isolation_level=None``) with no
    transaction open.

    Returns:
      The schema version of the file.

    Raises:
      SchemaVersionError: the file's schema is not `SCHEMA_VERSION`.
    """
    # IMMEDIATE takes the write lock before looking, so two processes opening
    # a fresh file at once cannot both create the schema.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not has_schema(conn):
            # executescript would COMMIT first; run the statements one by one to
            # keep them inside this transaction.
            for statement in _statements(DDL):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, applied) VALUES (?, ?)", (SCHEMA_VERSION, time.time()))
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} has store schema version {version}; this version of nas reads version {SCHEMA_VERSION} "
            "(open it with the nas version that wrote it, or start a new run directory)")
    return version


def _statements(script: str) -> list[str]:
    """Splits DDL into complete statements (none of ours has a ';' inside a string)."""
    out, current = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        current.append(code)
        if sqlite3.complete_statement("\n".join(current)):
            statement = "\n".join(current).strip()
            if statement.strip(";").strip():
                out.append(statement)
            current = []
    return out
