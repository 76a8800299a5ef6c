"""The model zoo: unique mined models in SQLite, and their JSONL export.

A zoo record holds only what search needs and where it came from: the IR
(`Arch` JSON), the mined optimizer, the intent and the provenance
(repository, path, commit, line span). It never holds source text. Records
are keyed by `Arch.structural_hash()` (Manas's de-duplication by identical
abstract NN); the first model stored under a hash keeps its provenance.

Uses the standard library's sqlite3; one table ``models`` plus ``meta``
holding the schema version.

Reading API (stable; ``search=manas`` (`nas.search.manas`) and its matching
and adaptation rely on it):

* `load_seed_zoo()` -> ``list[ZooEntry]``: the seed zoo shipped with nas
  (``nas/mining/data/seed_zoo.jsonl``), unique complete CNNs mined from
  public Keras repositories; `seed_zoo_meta()` gives the funnel and corpus
  it came from.
* `load_zoo(path)` -> ``list[ZooEntry]``: a zoo written by ``nas-mine``,
  SQLite (``--db``) or JSONL (``--jsonl``), chosen by the file's suffix.
* Each `ZooEntry` has ``hash`` (canonical, `Arch.structural_hash`),
  ``arch`` (`nas.ir.Arch`, channels-last, one Input carrying its shape),
  ``optimizer`` (a dict such as ``{"type": "SGD", "learning_rate": 0.01,
  "momentum": 0.9}``, or None when never compiled with one; an argument
  the miner could not compute is ``{"unresolved": "<expression>"}``, and so
  is the whole optimizer when even its type is unknown), ``intent`` (`nas.mining.intent.Intent`:
  height, width, channels, classes, task) and ``provenance``
  (`nas.mining.model.Provenance`: repo, path, commit, first_line, last_line).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import sqlite3
from typing import Any, Iterable

from nas.ir import Arch, IRError
from nas.mining.errors import UnstorableModelError, ZooFormatError
from nas.mining.intent import Intent, model_intent
from nas.mining.model import MinedModel, Provenance

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    hash TEXT PRIMARY KEY,       -- Arch.structural_hash()
    ir TEXT NOT NULL,            -- Arch.to_json()
    optimizer TEXT,              -- JSON object, NULL when the model was never compiled with one
    intent TEXT NOT NULL,        -- JSON: height, width, channels, classes, task
    provenance TEXT NOT NULL,    -- JSON: repo, path, commit, first_line, last_line
    complete INTEGER NOT NULL,
    supported INTEGER NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo.

    Attributes:
      hash: the architecture's canonical hash.
      arch: the IR architecture.
      optimizer: the mined optimizer dict, or None.
      intent: input size, channels, classes and task.
      provenance: where the model was mined.
      complete: Manas's completeness (conv, activation, linear, input shape).
      supported: every layer maps to an IR op.
    """

    hash: str
    arch: Arch
    optimizer: dict[str, Any] | None
    intent: Intent
    provenance: Provenance
    complete: bool
    supported: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "hash": self.hash, "ir": self.arch.to_dict(), "optimizer": self.optimizer,
            "intent": self.intent.to_dict(), "provenance": self.provenance.to_dict(),
            "complete": self.complete, "supported": self.supported,
        }

    @classmethod
    def from_dict(cls, doc: Any) -> "ZooEntry":
        try:
            return cls(
                hash=str(doc["hash"]), arch=Arch.from_dict(doc["ir"]), optimizer=doc.get("optimizer"),
                intent=Intent.from_dict(doc["intent"]), provenance=_provenance(doc["provenance"]),
                complete=bool(doc["complete"]), supported=bool(doc["supported"]))
        except (KeyError, TypeError, AttributeError, IRError) as exc:
            raise ZooFormatError(f"not a zoo record ({type(exc).__name__}: {exc})") from None


def _provenance(doc: dict[str, Any]) -> Provenance:
    return Provenance(**{f.name: doc.get(f.name, f.default) for f in dataclasses.fields(Provenance)})


def zoo_entry(model: MinedModel | ZooEntry) -> ZooEntry:
    """The zoo record of a mined model.

    Raises:
      UnstorableModelError: the model has no IR architecture (see ``model.issues``).
    """
    if isinstance(model, ZooEntry):
        return model
    if model.arch is None:
        where = f"{model.provenance.path}:{model.provenance.first_line}"
        reason = "; ".join(model.issues[:3]) or "no IR architecture"
        raise UnstorableModelError(f"model at {where} has no IR architecture ({reason}); only models with an "
                                   "arch can be stored")
    return ZooEntry(model.arch.structural_hash(), model.arch, model.optimizer, model_intent(model),
                    model.provenance, model.complete, model.supported)


def _connect(path: str | os.PathLike) -> sqlite3.Connection:
    conn = sqlite3.connect(os.fspath(path))
    try:
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ZooFormatError(f"{os.fspath(path)} is not a model zoo: {exc}") from None
    if row is None:
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.commit()
    elif row[0] != str(SCHEMA_VERSION):
        conn.close()
        raise ZooFormatError(f"{os.fspath(path)} has zoo schema version {row[0]}; this version of nas reads "
                             f"{SCHEMA_VERSION}")
    return conn


def write_zoo(path: str | os.PathLike, models: Iterable[MinedModel | ZooEntry]) -> int:
    """Adds models to the zoo at ``path`` (created if missing), skipping hashes already stored.

    Args:
      path: the SQLite file.
      models: mined models (each must have an arch) or zoo entries.
    Returns:
      How many new records were written.
    Raises:
      UnstorableModelError: a model has no arch.
      ZooFormatError: ``path`` is not a zoo of this schema version.
    """
    entries = [zoo_entry(m) for m in models]
    conn = _connect(path)
    try:
        with conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO models (hash, ir, optimizer, intent, provenance, complete, supported) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.hash, e.arch.to_json(indent=None),
                  None if e.optimizer is None else json.dumps(e.optimizer, sort_keys=True),
                  json.dumps(e.intent.to_dict(), sort_keys=True), json.dumps(e.provenance.to_dict(), sort_keys=True),
                  int(e.complete), int(e.supported)) for e in entries])
            return conn.total_changes - before
    finally:
        conn.close()


def read_zoo(path: str | os.PathLike) -> list[ZooEntry]:
    """Every record of the zoo at ``path``, in the order they were stored.

    Raises:
      ZooFormatError: ``path`` is missing, not a zoo, or holds a malformed record.
    """
    if not os.path.exists(path):
        raise ZooFormatError(f"no zoo at {os.fspath(path)}")
    conn = _connect(path)
    try:
        rows = conn.execute("SELECT hash, ir, optimizer, intent, provenance, complete, supported "
                            "FROM models ORDER BY rowid").fetchall()
    finally:
        conn.close()
    entries = []
    for digest, ir, optimizer, intent, provenance, complete, supported in rows:
        try:
            doc = {"hash": digest, "ir": json.loads(ir), "optimizer": None if optimizer is None else
                   json.loads(optimizer), "intent": json.loads(intent), "provenance": json.loads(provenance),
                   "complete": complete, "supported": supported}
        except json.JSONDecodeError as exc:
            raise ZooFormatError(f"record {digest} of {os.fspath(path)} holds malformed JSON: {exc}") from None
        entries.append(ZooEntry.from_dict(doc))
    return entries


def export_jsonl(models: Iterable[MinedModel | ZooEntry] | str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Writes one JSON record per line (the zoo's JSONL form).

    Args:
      models: zoo entries or mined models, or the path of a SQLite zoo to export.
      out_path: the JSONL file to write.
    Returns:
      The number of records written.
    """
    entries = read_zoo(models) if isinstance(models, (str, os.PathLike)) else [zoo_entry(m) for m in models]
    with open(out_path, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry.to_dict(), sort_keys=True) + "\n")
    return len(entries)


def read_jsonl(path: str | os.PathLike) -> list[ZooEntry]:
    """Zoo entries written by `export_jsonl`.

    Raises:
      ZooFormatError: a line is not a zoo record.
    """
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ZooFormatError(f"{os.fspath(path)} line {number}: {exc}") from None
            entries.append(ZooEntry.from_dict(doc))
    return entries


_DATA = pathlib.Path(__file__).parent / "data"
SEED_ZOO = _DATA / "seed_zoo.jsonl"
SEED_ZOO_META = _DATA / "seed_zoo_meta.json"


def load_zoo(path: str | os.PathLike) -> list[ZooEntry]:
    """The records of a zoo file: JSONL when its name ends in ``.jsonl``, SQLite otherwise.

    Raises:
      ZooFormatError: the file is missing or is not a zoo.
    """
    if not os.path.exists(path):
        raise ZooFormatError(f"no zoo at {os.fspath(path)}")
    return read_jsonl(path) if os.fspath(path).endswith(".jsonl") else read_zoo(path)


@functools.lru_cache(maxsize=1)
def _seed_zoo() -> tuple[ZooEntry, ...]:
    return tuple(read_jsonl(SEED_ZOO))


def load_seed_zoo() -> list[ZooEntry]:
    """The seed zoo shipped with nas: unique complete CNNs mined from public Keras repositories.

    Returns:
      A new list of the records (read once per process), in mining order.
    """
    return list(_seed_zoo())


def seed_zoo_meta() -> dict[str, Any]:
    """Where the seed zoo came from: the corpus, its repositories and the funnel counts of the mining run."""
    with open(SEED_ZOO_META, encoding="utf-8") as f:
        return json.load(f)
