"""The lifelong database of experiments (nas.lde): storage, concurrency, bad files, and the runs that fill it."""

import hashlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import nas
from nas.lde import LDE, DatasetRecord, ExperimentRecord, LDEError, content_fingerprint, dataset_record
from nas.lde.ingest import experiments_of_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small and quick: MLPs only, one epoch, no W&B, no compilation cache shared with other tests.
QUICK = ["train.epochs=1", "logger=console", "runtime.compilation_cache=null", "search.space.families=[mlp]",
         "search.space.mlp_width=[16,32]"]

DATASET = DatasetRecord("f" * 64, "toy", (8, 8, 1), 10, 100, 20)


def _experiment(key: str, dataset: str = DATASET.fingerprint, **changes) -> ExperimentRecord:
    values = dict(key=key, dataset=dataset, arch='{"format": "nas.arch"}', arch_hash="h" + key,
                  settings={"learning_rate": 1e-3, "batch_size": 64}, history=({"epoch": 1, "val_accuracy": 0.5},),
                  status="done", peak_val=0.5, final_val=0.5, epochs=1, t_tr=0.01, num_params=10, flops=200,
                  source={"kind": "search"}, created=1.0)
    values.update(changes)
    return ExperimentRecord(**values)


def _sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------- the database
def test_round_trip_of_datasets_dcn_and_experiments(tmp_path):
    path = tmp_path / "sub" / "lde.sqlite"
    other = DatasetRecord("e" * 64, "regress", (5,), None, 30, 7)
    rows = [_experiment("a"), _experiment("b", lineage="L", prefix=2, status="diverged", peak_val=None),
            _experiment("c", dataset=other.fingerprint, history=(), final_val=None, flops=None)]
    with LDE(path) as lde:
        lde.add_dataset(DATASET)
        lde.add_dataset(other)
        assert lde.append(rows) == 3
        lde.set_dcn(DATASET.fingerprint, 0.8, probe="p1", seconds=2.0)
        lde.set_dcn(DATASET.fingerprint, 0.7, probe="p2", seconds=2.0)
    with LDE(path, create=False) as lde:  # a fresh connection reads what was committed
        assert lde.experiments() == rows
        assert lde.experiments(datasets=[other.fingerprint]) == rows[2:]
        assert lde.dataset(DATASET.fingerprint) == DATASET and lde.dataset("nope") is None
        assert sorted(lde.datasets(), key=lambda d: d.name) == [other, DATASET]
        assert lde.dcn(DATASET.fingerprint, probe="p1") == 0.8 and lde.dcn(DATASET.fingerprint, probe="p2") == 0.7
        assert lde.dcn(other.fingerprint) is None
        stats = {s["name"]: s for s in lde.stats(probe="p1")}
        assert stats["toy"] == {"name": "toy", "fingerprint": DATASET.fingerprint, "dcn": 0.8, "experiments": 2,
                                "done": 1, "networks": 2}
        assert stats["regress"]["dcn"] is None and stats["regress"]["experiments"] == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == nas.lde.APPLICATION_ID
    assert dict(conn.execute("SELECT key, value FROM meta"))["format"] == "nas.lde"
    conn.close()


def test_append_is_idempotent_on_the_key(tmp_path):
    with LDE(tmp_path / "lde.sqlite") as lde:
        assert lde.append([_experiment("a"), _experiment("b")]) == 2
        assert lde.append([_experiment("b"), _experiment("c"), _experiment("c")]) == 1
        assert lde.append([_experiment("a", peak_val=0.99)]) == 0  # the first record of a key stays
        assert lde.count() == 3 and lde.experiments()[0].peak_val == 0.5
        assert lde.append([]) == 0


def test_append_adds_the_dataset_only_with_a_new_row(tmp_path):
    with LDE(tmp_path / "lde.sqlite") as lde:
        lde.append([_experiment("a")])
        assert lde.append([_experiment("a")], dataset=DATASET) == 0 and lde.datasets() == []
        assert lde.append([_experiment("b")], dataset=DATASET) == 1 and lde.datasets() == [DATASET]


def test_a_missing_file_is_created_only_when_asked(tmp_path):
    with pytest.raises(LDEError, match=str(tmp_path / "none.sqlite")):
        LDE(tmp_path / "none.sqlite", create=False)
    assert not (tmp_path / "none.sqlite").exists()


# ---------------------------------------------------------------------------- dataset fingerprints
def test_the_fingerprint_follows_the_content_not_the_object(digits):
    import dataclasses

    record = dataset_record(digits)
    assert record == DatasetRecord(record.fingerprint, "digits", (8, 8, 1), 10, len(digits.x_train), len(digits.x_val))
    assert dataset_record(digits) is record  # hashed once per object
    copy = dataclasses.replace(digits, x_train=np.asfortranarray(digits.x_train.copy()))  # same values, other layout
    assert content_fingerprint(copy) == record.fingerprint
    x = digits.x_train.copy()
    x[5, 3, 3, 0] += 1e-3
    assert content_fingerprint(dataclasses.replace(digits, x_train=x)) != record.fingerprint
    y = digits.y_val.copy()
    y[0] = (y[0] + 1) % 10
    assert content_fingerprint(dataclasses.replace(digits, y_val=y)) != record.fingerprint
    assert content_fingerprint(dataclasses.replace(digits, name="digits2")) != record.fingerprint
    # The test split is not part of what a search trains or selects on.
    assert content_fingerprint(dataclasses.replace(digits, x_test=digits.x_test[:3])) == record.fingerprint


# ---------------------------------------------------------------------------- concurrency and kills
WRITER = r"""
import os, random, sys, time
from nas.lde import LDE, ExperimentRecord
path, writer, start, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rng = random.Random(writer)
def record(k):  # the same key always carries the same record, whichever writer appends it
    return ExperimentRecord(key=f"k{k:06d}", dataset="d" * 64, arch="{}", arch_hash=f"h{k % 37}",
                            settings={"k": k}, history=tuple({"epoch": e, "val_accuracy": 0.1} for e in range(3)),
                            status="done", peak_val=0.1, final_val=0.1, epochs=3, t_tr=0.1, num_params=k, flops=k,
                            source={"kind": "test"}, created=1.0)
lde = LDE(path)
while not os.path.exists(go):
    time.sleep(0.005)
keys, added, batches = list(range(start, start + count)), 0, 0
while keys:
    n = rng.randint(1, 17)
    batch, keys = keys[:n], keys[n:]
    added += lde.append([record(k) for k in batch])
    batches += 1
lde.close()
print(added, batches)
"""

KILLED_WRITER = r"""
import sys, time
from nas.lde import LDE, ExperimentRecord
path, batch, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lde = LDE(path)
history = tuple({"epoch": e, "val_accuracy": 0.5, "val_loss": 1.0, "train_loss": 1.0} for e in range(50))
def records(k, n):
    return [ExperimentRecord(key=f"k{k + i}", dataset="d" * 64, arch="{}", arch_hash="h", settings={},
                             history=history, status="done", peak_val=0.5, final_val=0.5, epochs=50, t_tr=0.1,
                             num_params=1, flops=1, source={"kind": "test"}) for i in range(n)]
k = lde.count()
if mode == "hold":  # stops inside an append's transaction, its rows written but not committed
    class Held:
        def __init__(self, conn):
            self.conn = conn
        def __getattr__(self, name):
            return getattr(self.conn, name)
        def executemany(self, *args):
            out = self.conn.executemany(*args)
            print("inside", flush=True)
            time.sleep(600)
            return out
    lde._conn = Held(lde._conn)
    lde.append(records(k, 400 * batch))  # megabytes: SQLite spills uncommitted pages into the WAL
while True:  # appends whole batches until it is killed
    lde.append(records(k, batch))
    k += batch
"""


def _python(code: str, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_four_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    path, go = tmp_path / "lde.sqlite", tmp_path / "go"
    # No LDE yet: the four race to create it too. Each writer appends 200 keys in batches of 1-17; neighbours overlap by 50 keys.
    ranges = [(w * 150, 200) for w in range(4)]
    writers = [_python(WRITER, path, w, start, count, go) for w, (start, count) in enumerate(ranges)]
    time.sleep(0.5)  # let them all open the LDE, then start them together
    go.write_text("")
    outputs = [p.communicate(timeout=120) for p in writers]
    assert all(p.returncode == 0 for p in writers), [err[-2000:] for _, err in outputs]
    added = [int(out.split()[0]) for out, _ in outputs]
    expected = {f"k{k:06d}" for start, count in ranges for k in range(start, start + count)}
    with LDE(path) as lde:
        keys = [e.key for e in lde.experiments()]
        assert len(keys) == len(set(keys)) == len(expected) == 650
        assert set(keys) == expected
        assert sum(added) == 650  # each row was counted as added by exactly one writer
        assert all(e.num_params == int(e.key[1:]) for e in lde.experiments())  # rows are whole, not mixed


def _killed(path, batch: int) -> int:
    """Opens the LDE after a writer was killed: readable, whole batches only, no duplicate; returns the count."""
    with LDE(path) as lde:  # opening runs quick_check: a damaged file would raise here
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        keys = [e.key for e in lde.experiments()]
        assert len(keys) == len(set(keys)) == lde.count()
        assert len(keys) % batch == 0, len(keys)
        return len(keys)


def test_a_writer_killed_mid_append_leaves_whole_batches(tmp_path):
    path, batch = tmp_path / "lde.sqlite", 7
    LDE(path).close()
    counts = []
    for round_ in range(3):  # killed at some moment of its loop of appends
        writer = _python(KILLED_WRITER, path, batch, "loop")
        deadline = time.monotonic() + 60
        with LDE(path) as reader:
            start = reader.count()
            while reader.count() < start + 3 * batch:  # it is inside its loop of appends
                assert writer.poll() is None and time.monotonic() < deadline, writer.stderr.read()[-2000:]
                time.sleep(0.02)
        time.sleep(0.013 * (round_ + 1))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL
        counts.append(_killed(path, batch))
    assert counts[0] > 0 and counts == sorted(counts)
    # Killed for certain inside a transaction, with uncommitted pages in the WAL: none of them count.
    writer = _python(KILLED_WRITER, path, batch, "hold")
    assert writer.stdout.readline().strip() == "inside", writer.stderr.read()[-2000:]
    assert os.path.getsize(f"{path}-wal") > 1_000_000  # the uncommitted rows reached the file
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert _killed(path, batch) == counts[-1]
    with LDE(path) as lde:  # and it still takes writes
        assert lde.append([_experiment("after")]) == 1


# ---------------------------------------------------------------------------- bad files
def _refused(path, *needles):
    before = _sha(path)
    with pytest.raises(LDEError) as info:
        LDE(path)
    message = str(info.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, message
    assert _sha(path) == before  # opening changed nothing
    return message


def test_random_bytes_are_refused_unchanged(tmp_path):
    path = tmp_path / "lde.sqlite"
    path.write_bytes(np.random.default_rng(0).bytes(8192))
    _refused(path, "not a readable LDE")


def test_an_empty_file_is_refused_unchanged(tmp_path):
    path = tmp_path / "lde.sqlite"
    path.write_bytes(b"")
    _refused(path, "empty")


def test_a_damaged_lde_is_refused_unchanged(tmp_path):
    path = tmp_path / "lde.sqlite"
    with LDE(path) as lde:
        lde.append([_experiment(f"k{i}", history=tuple({"epoch": e} for e in range(50))) for i in range(300)])
    size = os.path.getsize(path)
    assert size > 20 * 4096
    with open(path, "r+b") as f:  # scribble over pages in the middle (the header and schema stay)
        f.seek(size // 2)
        f.write(np.random.default_rng(1).bytes(3 * 4096))
    message = _refused(path)
    assert "malformed" in message or "quick_check" in message


def test_a_foreign_sqlite_file_is_refused_unchanged(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE recipes (name TEXT, minutes INTEGER)")
    conn.execute("INSERT INTO recipes VALUES ('soup', 30)")
    conn.commit()
    conn.close()
    _refused(path, "another kind", "not an LDE")


def test_a_trial_store_is_not_an_lde(tmp_path):
    from nas.store import SqliteTrialStore

    SqliteTrialStore(tmp_path / "store.sqlite").close()
    _refused(tmp_path / "store.sqlite", "not an LDE")


def test_a_newer_schema_is_refused_unchanged(tmp_path):
    path = tmp_path / "lde.sqlite"
    with LDE(path) as lde:
        lde.append([_experiment("a")])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    _refused(path, "written by a newer nas: schema 2, this nas reads <= 1; upgrade nas")


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(LDEError, match="is a directory"):
        LDE(tmp_path)


# ---------------------------------------------------------------------------- runs that append
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A two-trial nas-search on digits with the LDE at a fresh path."""
    base = tmp_path_factory.mktemp("lde-search")
    path = str(base / "lde.sqlite")
    previous = os.environ.get("NAS_LDE_PATH")
    os.environ["NAS_LDE_PATH"] = path
    try:
        result = nas.search(data="digits", max_trials=2, run_dir=str(base / "run"), progress=False, overrides=QUICK)
    finally:
        os.environ["NAS_LDE_PATH"] = previous if previous is not None else ""
        if previous is None:
            del os.environ["NAS_LDE_PATH"]
    return path, result


def test_a_search_appends_each_trained_trial(searched, digits):
    from nas.ir import Arch

    path, result = searched
    with LDE(path) as lde:
        rows = lde.experiments()
        assert len(rows) == 2
        fingerprint = dataset_record(digits).fingerprint  # the search loaded digits as the fixture does
        assert {e.dataset for e in rows} == {fingerprint}
        assert lde.dataset(fingerprint).name == "digits"
        by_trial = {e.source["trial"]: e for e in rows}
        for trial in result.trial_rows:
            e = by_trial[trial["trial"]]
            arch = Arch.from_json(e.arch)
            assert e.arch_hash == arch.structural_hash()
            assert e.flops == arch.flops((8, 8, 1)) > 0 and e.num_params == trial["num_params"]
            assert e.status == "done" and e.epochs == 1 and len(e.history) == 1
            assert e.peak_val == pytest.approx(trial["val_score"]) and 0 < e.peak_val <= 1
            assert e.final_val == e.history[-1]["val_accuracy"]
            assert e.settings["batch_size"] == 64 and e.settings["optimizer"]["name"] == "adam"
            assert e.source == {"kind": "search", "run_dir": result.run_dir, "run": 1, "trial": trial["trial"]}
    # Never the training data: a row of digits' inputs is not in the file.
    with open(path, "rb") as f:
        assert digits.x_train[0].tobytes() not in f.read()


def test_importing_a_run_adds_its_trials_once(searched, tmp_path, capsys):
    from nas.cli.lde import main

    path, result = searched
    fresh = str(tmp_path / "fresh.sqlite")
    assert main(["import", result.run_dir, "--lde", fresh]) == 0
    assert "2 added, 0 already there" in capsys.readouterr().out
    assert main(["import", result.run_dir, "--lde", fresh]) == 0
    assert "0 added, 2 already there" in capsys.readouterr().out
    with LDE(fresh) as imported, LDE(path) as live:
        # The same trials, keyed alike, on the same (reloaded) data as the live appends.
        assert [e.key for e in imported.experiments()] == [e.key for e in live.experiments()]
        for a, b in zip(imported.experiments(), live.experiments()):
            assert (a.dataset, a.arch_hash, a.settings, a.history, a.flops) == (b.dataset, b.arch_hash, b.settings,
                                                                                 b.history, b.flops)
            assert a.source["kind"] == "import"
    # Trials appended live are not added again by an import into the live LDE.
    assert main(["import", result.run_dir, "--lde", path]) == 0
    assert "0 added, 2 already there" in capsys.readouterr().out


def test_import_without_the_data_uses_a_metadata_fingerprint(searched):
    _, result = searched
    [(dataset, experiments)] = experiments_of_run(result.run_dir)
    assert dataset.fingerprint.startswith("meta:") and dataset.name == "digits" and dataset.num_classes == 10
    assert len(experiments) == 2 and {e.dataset for e in experiments} == {dataset.fingerprint}
    assert experiments_of_run(result.run_dir)[0][0] == dataset  # stable


def test_import_names_a_directory_without_a_store_and_imports_the_rest(searched, tmp_path, capsys):
    from nas.cli.lde import main

    _, result = searched
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert main(["import", str(empty), result.run_dir, "--lde", str(tmp_path / "l.sqlite")]) == 2
    captured = capsys.readouterr()
    assert f"{empty}: not a nas-search run directory (no store.sqlite in it)" in captured.err
    assert "2 added" in captured.out


def test_stats_prints_a_table_per_dataset(searched):
    path, _ = searched
    env = dict(os.environ, PYTHONPATH=REPO, NAS_LDE_PATH=path)
    proc = subprocess.run([sys.executable, "-m", "nas.cli.lde", "stats"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()[:2]
    assert header.split() == ["dataset", "fingerprint", "dcn", "experiments", "done", "networks"]
    name, fingerprint, dcn, experiments, done, networks = row.split()
    assert (name, dcn, experiments, done) == ("digits", "-", "2", "2")
    assert len(fingerprint) == 12 and networks in ("1", "2")


def test_stats_of_a_bad_lde_is_one_clear_line(tmp_path):
    from nas.cli.lde import main

    bad = tmp_path / "lde.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "nas.cli.lde", "stats", "--lde", str(bad)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith(f"nas-lde: error: {bad}")
    assert main(["stats", "--lde", str(tmp_path / "missing.sqlite")]) == 2
    assert not (tmp_path / "missing.sqlite").exists()


@pytest.mark.slow  # real training or a search; the default set stays inside 20 minutes on 2 cores
def test_disabled_lde_records_nothing_and_an_unwritable_one_warns(tmp_path, monkeypatch, caplog):
    path = tmp_path / "lde.sqlite"
    monkeypatch.setenv("NAS_LDE_PATH", str(path))
    one = QUICK + ["search.space.mlp_width=[16,16]"]
    nas.search(data="digits", max_trials=1, run_dir=str(tmp_path / "off"), progress=False,
               overrides=one + ["lde.enabled=false"])
    assert not path.exists()
    # A directory where the file should be: each trial's append fails, the search does not.
    monkeypatch.setenv("NAS_LDE_PATH", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="nas.lde"):
        result = nas.search(data="digits", max_trials=1, run_dir=str(tmp_path / "dir"), progress=False, overrides=one)
    assert len(result.trial_rows) == 1 and result.trial_rows[0]["status"] == "done"
    warnings = [r.getMessage() for r in caplog.records if r.name == "nas.lde"]
    assert len(warnings) == 1 and str(tmp_path) in warnings[0] and "nas-lde import" in warnings[0]


@pytest.mark.slow  # real training or a search; the default set stays inside 20 minutes on 2 cores
def test_nas_train_appends_its_network(tmp_path, monkeypatch):
    path = tmp_path / "lde.sqlite"
    monkeypatch.setenv("NAS_LDE_PATH", str(path))
    model = nas.train(data="digits", arch="mlp", run_dir=str(tmp_path / "run"), progress=False,
                      overrides=["train.epochs=2", "model.hidden=[16]", "logger=console",
                                 "runtime.compilation_cache=null"])
    with LDE(path) as lde:
        [e] = lde.experiments()
    assert e.key == f"{tmp_path / 'run'}#train" and e.source["kind"] == "train"
    assert e.epochs == 2 and len(e.history) == 2 and e.num_params == model.metrics["num_params"]
    assert e.peak_val == max(r["val_accuracy"] for r in e.history)
    assert e.settings["epochs"] == 2 and e.settings["seed"] == 0
