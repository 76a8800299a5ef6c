"""The experiment store: schema, trial lifecycle, resume, export, and the crash invariant.

The invariant (NeuNetS: a restarted engine resumes from persistent state):
every planned trial ends with exactly one row in a final status, and a
process killed at any moment neither loses a trial nor counts one twice.
It is checked three ways: killing a worker process before each SQL
statement in turn, SIGKILLing a worker at random moments, and a hypothesis
state machine over random operation sequences with restarts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from nas.store import (
    DIVERGED,
    DONE,
    FAILED,
    GAVE_UP,
    QUEUED,
    RUNNING,
    SCHEMA_VERSION,
    STORE_FILENAME,
    ConfigMismatchError,
    InvalidTransitionError,
    PlannedTrial,
    SchemaVersionError,
    SqliteTrialStore,
    StoreError,
    TrialConflictError,
    TrialOutcome,
    UnknownRunError,
    UnknownTrialError,
    read_csv,
    read_jsonl,
    to_csv,
    to_jsonl,
)

CONFIG = {"budget": {"max_trials": 8, "batch": 2}, "train": {"epochs": 3, "lr": 1e-3}}
DATASET = {"name": "digits", "input_shape": [8, 8, 1], "num_outputs": 10, "n_train": 1200}
CODE = {"nas": "test", "git_commit": None, "git_dirty": None}


def planned(index: int, parent: int | None = None) -> PlannedTrial:
    return PlannedTrial(index, json.dumps({"nodes": index}), f"hash{index % 3}",
                        {"learning_rate": 10.0 ** -(1 + index % 3), "choices": {"widths": [index, 2 * index]}},
                        parent)


def done(score: float) -> TrialOutcome:
    return TrialOutcome(DONE, best_score=score, metrics={"loss": 1.0 - score, "accuracy": score}, epochs=3,
                        t_tr=0.25, num_params=1234, history=[{"epoch": 1, "val_loss": 0.5}],
                        feedback=[{"nonfinite": False}])


@pytest.fixture
def store(tmp_path):
    with SqliteTrialStore.in_run_dir(tmp_path) as s:
        yield s


@pytest.fixture
def run(store):
    return store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE)


def raw(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# ------------------------------------------------------------------ schema
def test_schema_is_created_once_and_reopening_is_idempotent(tmp_path):
    path = tmp_path / STORE_FILENAME
    for _ in range(3):
        with SqliteTrialStore(path) as s:
            assert s.schema_version == SCHEMA_VERSION
    conn = raw(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "runs", "trials", "artefacts", "strategy_state"} <= tables
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    parents = {r[2] for r in conn.execute("PRAGMA foreign_key_list(trials)")}
    assert parents == {"runs", "trials"}


def test_connection_settings(store):
    conn = store._conn  # the pragmas below are per connection, so only the store's own can show them
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / STORE_FILENAME
    SqliteTrialStore(path).close()
    raw(path).execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*reads version"):
        SqliteTrialStore(path)


# ------------------------------------------------------------------ runs
def test_same_config_reopen_continues_the_run(tmp_path):
    with SqliteTrialStore.in_run_dir(tmp_path) as s:
        first = s.open_run(CONFIG, DATASET, "random", 0, code_version=CODE)
        s.enqueue(first, [planned(0), planned(1)])
        s.finish(first, s.claim_next(first).index, done(0.5))
    with SqliteTrialStore.in_run_dir(tmp_path) as s:
        # Key order and tuple-vs-list do not change the fingerprint.
        again = s.open_run({"train": {"lr": 1e-3, "epochs": 3}, "budget": {"batch": 2, "max_trials": 8}},
                           dict(DATASET, input_shape=(8, 8, 1)), "random", 0, code_version={"nas": "newer"})
        assert again == first  # including the code version recorded at creation
        assert [t.status for t in s.trials(again)] == [DONE, QUEUED]
        assert len(s.runs()) == 1


def test_a_different_config_is_refused_with_what_differs(store, run):
    changed = {"budget": {"max_trials": 20, "batch": 2}, "train": {"epochs": 3, "lr": 1e-3}}
    with pytest.raises(ConfigMismatchError) as info:
        store.open_run(changed, DATASET, "random", 0, code_version=CODE)
    message = str(info.value)
    assert STORE_FILENAME in message and f"run {run.id}" in message
    assert "config.budget.max_trials: 8 -> 20" in message
    # Issue 12 #11: it used to advise resume=False, which nas-search refuses; it names what works.
    assert "hydra.run.dir=" in message and "resume=False" not in message
    with pytest.raises(ConfigMismatchError, match="seed: 0 -> 1"):
        store.open_run(CONFIG, DATASET, "random", 1, code_version=CODE)
    assert store.runs() == (run,)  # a refused open writes nothing


def test_resume_false_starts_another_run(store, run):
    other = store.open_run({"x": 1}, DATASET, "random", 0, resume=False, code_version=CODE)
    assert other.id != run.id
    assert store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE) == run
    assert store.open_run({"x": 1}, DATASET, "random", 0, code_version=CODE) == other
    fresh = store.open_run(CONFIG, DATASET, "random", 0, resume=False, code_version=CODE)
    assert fresh.id not in (run.id, other.id)
    assert store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE) == fresh  # the latest wins


def test_default_code_version_names_the_package(store):
    run = store.open_run(CONFIG, DATASET, "random", 0)
    assert run.code_version["nas"] == __import__("nas").__version__
    assert set(run.code_version) == {"nas", "git_commit", "git_dirty"}


def test_unknown_run(store):
    with pytest.raises(UnknownRunError, match="no run 42 in .*store.sqlite"):
        store.claim_next(42)
    with pytest.raises(UnknownRunError):
        store.enqueue(42, [planned(0)])


# ------------------------------------------------------------------ lifecycle
def test_full_lifecycle(tmp_path):
    ticks = iter(range(100, 200))
    store = SqliteTrialStore.in_run_dir(tmp_path, clock=lambda: float(next(ticks)))
    run = store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE)
    assert store.enqueue(run, [planned(0), planned(1, parent=0), planned(2, parent=0)]) == (0, 1, 2)
    claimed = store.claim_next(run)
    assert (claimed.index, claimed.status, claimed.attempts) == (0, RUNNING, 1)
    assert claimed.queued_at < claimed.started_at and claimed.finished_at is None
    finished = store.finish(run, 0, done(0.9), attempt=1)
    assert finished.status == DONE and finished.best_score == 0.9 and finished.finished_at > finished.started_at
    assert finished.metrics == {"loss": pytest.approx(0.1), "accuracy": 0.9}
    assert (finished.epochs, finished.t_tr, finished.num_params) == (3, 0.25, 1234)
    assert finished.history == [{"epoch": 1, "val_loss": 0.5}] and finished.feedback == [{"nonfinite": False}]
    store.finish(run, store.claim_next(run).index, TrialOutcome(DIVERGED, metrics={"loss": float("nan")}))
    store.finish(run, store.claim_next(run).index, TrialOutcome.failed("XlaRuntimeError: out of memory"))
    assert store.claim_next(run) is None
    by_index = {t.index: t for t in store.trials(run)}
    assert [by_index[i].status for i in range(3)] == [DONE, DIVERGED, FAILED]
    assert by_index[1].parent == 0 and by_index[1].hyperparameters["choices"] == {"widths": [1, 2]}
    assert by_index[2].error == "XlaRuntimeError: out of memory"
    assert all(t.final and t.attempts == 1 for t in by_index.values())
    assert store.trial(run, 0) == finished
    store.close()


@pytest.mark.parametrize("setup, index, error, match", [
    ("none", 7, UnknownTrialError, "cannot finish trial 7 of run 1: no such trial"),
    ("queued", 0, InvalidTransitionError, r"trial 0 of run 1 \(status 'queued'\): only a running trial"),
    ("done", 0, InvalidTransitionError, r"trial 0 of run 1 \(status 'done'\): it has already finished"),
])
def test_invalid_finish_names_run_trial_and_status(store, run, setup, index, error, match):
    if setup != "none":
        store.enqueue(run, [planned(0)])
    if setup == "done":
        store.finish(run, store.claim_next(run).index, done(0.5))
    before = store.trials(run)
    with pytest.raises(error, match=match) as info:
        store.finish(run, index, done(0.7))
    assert isinstance(info.value, StoreError)
    assert store.trials(run) == before  # a refused transition writes nothing


def test_finish_from_a_stale_attempt_is_refused(store, run):
    store.enqueue(run, [planned(0)])
    store.claim_next(run)
    store.requeue_interrupted(run)
    again = store.claim_next(run)
    assert again.attempts == 2
    with pytest.raises(InvalidTransitionError, match="attempt 1 is stale.*now in attempt 2"):
        store.finish(run, 0, done(0.5), attempt=1)
    assert store.finish(run, 0, done(0.5), attempt=2).status == DONE


def test_outcome_validation():
    with pytest.raises(ValueError, match="status is one of"):
        TrialOutcome(RUNNING)
    with pytest.raises(ValueError, match="finite"):
        TrialOutcome(DONE, best_score=float("-inf"))
    with pytest.raises(ValueError, match="trial index"):
        PlannedTrial(-1, "{}", "h")


def test_enqueue_is_idempotent_by_index(store, run):
    assert store.enqueue(run, [planned(i) for i in range(3)]) == (0, 1, 2)
    store.finish(run, store.claim_next(run).index, done(0.5))
    before = store.trials(run)
    assert store.enqueue(run, [planned(i) for i in range(3)]) == ()
    assert store.trials(run) == before  # a finished trial is not reset by enqueueing it again
    assert store.enqueue(run, [planned(2), planned(3), planned(3)]) == (3,)
    assert store.counts(run).total == 4


def test_enqueue_refuses_a_different_trial_under_an_existing_index(store, run):
    store.enqueue(run, [planned(0)])
    changed = dataclasses.replace(planned(0), hyperparameters={"learning_rate": 0.5})
    with pytest.raises(TrialConflictError, match="trial 0 of run 1 .* different hyperparameters"):
        store.enqueue(run, [planned(1), changed])
    assert [t.index for t in store.trials(run)] == [0]  # the batch is all or nothing


def test_enqueue_checks_parents(store, run):
    assert store.enqueue(run, [planned(1, parent=0), planned(0)]) == (1, 0)  # child first is fine
    with pytest.raises(UnknownTrialError, match="cannot derive trial 3 from trial 9 of run 1"):
        store.enqueue(run, [planned(3, parent=9)])
    assert store.counts(run).total == 2


def test_claim_order_is_lowest_index_first(store, run):
    store.enqueue(run, [planned(i) for i in (5, 2, 9, 0)])
    assert [store.claim_next(run).index for _ in range(4)] == [0, 2, 5, 9]
    assert store.claim_next(run) is None
    store.enqueue(run, [planned(1)])
    assert store.claim_next(run).index == 1


def test_requeue_interrupted(store, run):
    store.enqueue(run, [planned(i) for i in range(3)])
    store.claim_next(run), store.claim_next(run)
    store.finish(run, 1, done(0.3))
    requeued = store.requeue_interrupted(run)
    assert [(t.index, t.status, t.attempts) for t in requeued] == [(0, QUEUED, 1)]
    assert requeued[0].error == "attempt 1 was interrupted; requeued"
    assert store.requeue_interrupted(run) == ()
    assert store.claim_next(run).index == 0


def test_requeue_gives_up_after_max_attempts(store, run):
    store.enqueue(run, [planned(0), planned(1)])
    for _ in range(2):  # trial 0 kills its process twice
        assert store.claim_next(run).index == 0
        store.requeue_interrupted(run, max_attempts=2)
    assert store.trial(run, 0).status == FAILED
    assert store.trial(run, 0).error.startswith(GAVE_UP) and "each of its 2 attempts" in store.trial(run, 0).error
    assert store.claim_next(run).index == 1


def test_counts_and_best(store, run):
    store.enqueue(run, [planned(i) for i in range(6)])
    outcomes = [done(0.5), done(0.8), TrialOutcome(DIVERGED), done(0.8), TrialOutcome.failed("boom")]
    for outcome in outcomes:
        store.finish(run, store.claim_next(run).index, outcome)
    assert store.counts(run).as_dict() == {QUEUED: 1, RUNNING: 0, DONE: 3, DIVERGED: 1, FAILED: 1}
    assert store.counts(run).finished == 5
    assert store.best(run).index == 1  # ties go to the lower index
    assert [t.index for t in store.trials(run, status=DONE)] == [0, 1, 3]
    assert [t.index for t in store.trials(run, status=(QUEUED, FAILED))] == [4, 5]
    with pytest.raises(ValueError, match="unknown trial status 'finished'"):
        store.trials(run, status="finished")


def test_best_is_none_without_a_done_trial(store, run):
    assert store.best(run) is None
    store.enqueue(run, [planned(0)])
    store.finish(run, store.claim_next(run).index, TrialOutcome(DIVERGED))
    assert store.best(run) is None


def test_artefacts(store, run):
    store.enqueue(run, [planned(0)])
    best = store.add_artefact(run, "best", "models/trial_0", trial=0)
    pareto = store.add_artefact(run, "pareto", "pareto.json")
    assert (best.trial, best.kind, pareto.trial) == (0, "best", None)
    assert store.artefacts(run) == (best, pareto)
    assert store.artefacts(run, kind="pareto") == (pareto,)
    assert store.artefacts(run, trial=0) == (best,)
    with pytest.raises(UnknownTrialError, match="cannot record a 'checkpoint' artefact of trial 3 of run 1"):
        store.add_artefact(run, "checkpoint", "ckpt", trial=3)


def test_strategy_state_keeps_the_latest(store, run):
    assert store.strategy_state(run) is None
    store.save_strategy_state(run, b"\x00state-1", told=[0])
    saved = store.save_strategy_state(run, b"state-2", told=[2, 0, 1, 1])
    assert store.strategy_state(run) == saved
    assert (saved.state, saved.told) == (b"state-2", (0, 1, 2))
    with pytest.raises(StoreError, match="must be bytes"):
        store.save_strategy_state(run, {"not": "bytes"}, told=[])


def test_a_reader_sees_committed_writes(tmp_path):
    with SqliteTrialStore.in_run_dir(tmp_path) as writer, SqliteTrialStore.in_run_dir(tmp_path) as reader:
        run = writer.open_run(CONFIG, DATASET, "random", 0, code_version=CODE)
        writer.enqueue(run, [planned(0)])
        writer.claim_next(run)
        assert reader.trial(run.id, 0).status == RUNNING


# ------------------------------------------------------------------ export
def _as_text(trials) -> list[str]:
    # Through JSON text, so a NaN metric compares equal to itself.
    return [json.dumps(dataclasses.asdict(t), sort_keys=True) for t in trials]


def _finish_some(store, run):
    store.enqueue(run, [planned(i, parent=0 if i else None) for i in range(5)])
    store.finish(run, store.claim_next(run).index, done(0.75))
    store.finish(run, store.claim_next(run).index, TrialOutcome(DIVERGED, metrics={"loss": float("nan")}, epochs=1))
    store.finish(run, store.claim_next(run).index, TrialOutcome.failed('ValueError: bad "shape", line 1\nline 2'))
    store.claim_next(run)


def test_jsonl_export_round_trip(store, run, tmp_path):
    _finish_some(store, run)
    other = store.open_run({"x": 1}, DATASET, "random", 0, resume=False, code_version=CODE)
    store.enqueue(other, [planned(0)])
    path = tmp_path / "trials.jsonl"
    assert to_jsonl(store, path, run) == 5
    assert _as_text(read_jsonl(path)) == _as_text(store.trials(run))
    assert to_jsonl(store, path) == 6  # every run
    assert _as_text(read_jsonl(path)) == _as_text(store.trials(run) + store.trials(other))


def _flat_keys(value, prefix):
    if isinstance(value, dict):
        return {k for key, item in value.items() for k in _flat_keys(item, f"{prefix}.{key}")}
    if isinstance(value, list):
        return {k for i, item in enumerate(value) for k in _flat_keys(item, f"{prefix}.{i}")}
    return {prefix}


def _is_json_text(cell: str) -> bool:
    try:
        return isinstance(json.loads(cell), (dict, list))
    except ValueError:
        return False


def test_csv_export_is_flat_with_a_column_per_hyperparameter_and_metric(store, run, tmp_path):
    import csv

    _finish_some(store, run)
    path = tmp_path / "trials.csv"
    assert to_csv(store, path, run) == 5
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    trials = store.trials(run)
    expected_hp = set().union(*(_flat_keys(t.hyperparameters, "hp") for t in trials))
    assert {c for c in rows[0] if c.startswith("hp.")} == expected_hp  # hp.choices.widths.0, ...
    assert not any(_is_json_text(cell) for row in rows for cell in row.values())
    for row, trial in zip(rows, trials):
        assert int(row["trial"]) == trial.index and row["status"] == trial.status
        assert float(row["hp.learning_rate"]) == trial.hyperparameters["learning_rate"]
        assert [int(row[f"hp.choices.widths.{i}"]) for i in range(2)] == trial.hyperparameters["choices"]["widths"]
        for metric, value in (trial.metrics or {}).items():
            assert float(row[metric]) == pytest.approx(value, nan_ok=True)
    assert rows[2]["failure"] == trials[2].error  # the error text, newline and quotes kept
    assert rows[3]["val_score"] == rows[3]["loss"] == ""  # running: no outcome yet
    parsed = read_csv(path)
    assert parsed[0]["val_score"] == 0.75 and parsed[0]["num_params"] == 1234 and parsed[1]["parent"] == 0
    assert parsed[0]["arch_hash"] == "hash0" and parsed[3]["val_score"] is None


def test_csv_of_a_real_search_reads_as_numbers_without_pandas(digits, tmp_path):
    """A real (small) search's store: every metric cell is a number, every hyperparameter its own column."""
    import csv

    from nas.search import Budget, Objective, Posed, Problem, SearchSpace, run_search
    from nas.search.random_search import RANDOM
    from nas.train import TrainConfig

    # One architecture, two learning rates: both trials train as one population (one compilation).
    space = Posed(SearchSpace(families=("mlp",), mlp_layers=(1, 1), mlp_width=(16, 16), batchnorm=(False,),
                              dropout=(0.0,)), Problem.of(digits))
    with SqliteTrialStore.in_run_dir(tmp_path) as store:
        search_run = store.open_run({"test": "csv"}, {"name": "digits"}, "random", 0)
        run_search(RANDOM, space, 0, digits, TrainConfig(epochs=1, batch_size=64), Budget(max_trials=2, batch=2), store,
                   search_run, objective=Objective(w_c=0.0, complexity="num_params", c_0=1.0),
                   run_dir=str(tmp_path))
        to_csv(store, tmp_path / "trials.csv", search_run)
        trials = store.trials(search_run)
    with open(tmp_path / "trials.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(trials) == 2 and all(row["status"] == "done" for row in rows)
    for row in rows:
        for column in ("val_score", "objective", "num_params", "t_tr", "epochs", "seconds", "val_accuracy"):
            assert math.isfinite(float(row[column])), column
    expected_hp = set().union(*(_flat_keys(t.hyperparameters, "hp") for t in trials))
    assert {c for c in rows[0] if c.startswith("hp.")} == expected_hp
    assert {"hp.learning_rate", "hp.batch_size"} <= expected_hp
    assert any(c.startswith("hp.choices.") for c in expected_hp)  # the space's choices, one column each
    assert not any(_is_json_text(cell) for row in rows for cell in row.values())


# ------------------------------------------------------------------ adapters
def test_adapters_round_trip_a_candidate_and_a_train_result(store, run):
    np = pytest.importorskip("numpy")
    from nas.search import Candidate, Problem, SearchSpace, sample
    from nas.search.trial_records import candidate_from_trial, outcome_from_result, plan_from_candidate
    from nas.train import TrainConfig, TrainResult

    arch, lr, choices = sample(SearchSpace(), Problem((8, 8, 1), 10), np.random.default_rng(3))
    candidate = Candidate(4, arch, lr, choices, weight_decay=1e-4, batch_size=32, epochs=3)
    store.enqueue(run, [plan_from_candidate(candidate)])
    trial = store.claim_next(run)
    rebuilt = candidate_from_trial(trial)
    assert rebuilt.arch.structural_hash() == arch.structural_hash() == trial.arch_hash
    assert (rebuilt.trial, rebuilt.learning_rate, rebuilt.weight_decay, rebuilt.batch_size, rebuilt.epochs) == (
        4, lr, 1e-4, 32, 3)
    assert rebuilt.choices == json.loads(json.dumps(choices))
    result = TrainResult(status=DONE, epochs=2, best_epoch=2, best_val_score=np.float32(0.75),
                         best_val_metrics={"loss": np.float32(0.5), "accuracy": np.float32(0.75)},
                         history=({"epoch": 1, "val_accuracy": np.float32(0.5)},), feedback=({"nonfinite": False},),
                         t_tr=0.1, num_params=321, variables={"params": {}}, config=TrainConfig())
    finished = store.finish(run, 4, outcome_from_result(result))
    assert finished.best_score == 0.75 and finished.metrics == {"best_epoch": 2, "loss": 0.5, "accuracy": 0.75}
    assert finished.history == [{"epoch": 1, "val_accuracy": 0.5}] and finished.num_params == 321
    scalars = TrialOutcome(DONE, best_score=np.float32(0.5), epochs=np.int64(2), num_params=np.int32(7))
    assert (type(scalars.best_score), type(scalars.epochs), type(scalars.num_params)) == (float, int, int)
    diverged = outcome_from_result(dataclasses.replace(result, status=DIVERGED, best_val_score=float("nan")))
    assert diverged.status == DIVERGED and diverged.best_score is None


# ------------------------------------------------------------------ crash safety with real processes
# The worker programs run in fresh interpreters (they import only nas.store).
_STATEMENT_CRASH_WORKER = textwrap.dedent("""
    import os, sqlite3, sys
    path, crash_at = sys.argv[1], int(sys.argv[2])
    executed = 0
    _connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = _connect(*args, **kwargs)

        def before_statement(sql):
            global executed
            executed += 1
            if executed == crash_at:
                os._exit(9)  # dies before this statement runs, like a kill between two statements

        conn.set_trace_callback(before_statement)
        return conn

    sqlite3.connect = connect
    from nas.store import PlannedTrial, SqliteTrialStore, TrialOutcome
    store = SqliteTrialStore(path)
    run = store.open_run({"k": 1}, {"d": 1}, "random", 0, code_version={"nas": "test"})
    store.requeue_interrupted(run)
    store.enqueue(run, [PlannedTrial(i, "{}", "h") for i in range(3)])
    while (trial := store.claim_next(run)) is not None:
        store.finish(run, trial.index, TrialOutcome("done", best_score=trial.index / 10))
    store.add_artefact(run, "best", "best", trial=2)
    store.save_strategy_state(run, b"s", told=[0, 1, 2])
    print(executed)
""")


def _resume_to_completion(path) -> SqliteTrialStore:
    """What a restarted engine does: open, requeue, enqueue the plan again, drain the queue."""
    store = SqliteTrialStore(path)
    run = store.open_run({"k": 1}, {"d": 1}, "random", 0, code_version={"nas": "test"})
    store.requeue_interrupted(run)
    store.enqueue(run, [PlannedTrial(i, "{}", "h") for i in range(3)])
    while (trial := store.claim_next(run)) is not None:
        store.finish(run, trial.index, TrialOutcome(DONE, best_score=trial.index / 10))
    return store


def test_a_kill_before_any_statement_loses_and_duplicates_nothing(tmp_path):
    """Crash the worker before its k-th SQL statement, for every k, then resume."""
    clean = subprocess.run([sys.executable, "-c", _STATEMENT_CRASH_WORKER, str(tmp_path / "clean.sqlite"), "0"],
                           capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    statements = int(clean.stdout)
    assert statements > 40  # schema, run, enqueue, three claims and finishes, artefact, state
    paths = [tmp_path / f"crash_{k}.sqlite" for k in range(1, statements + 1)]
    for start in range(0, statements, 16):  # 16 workers at a time
        workers = [subprocess.Popen([sys.executable, "-c", _STATEMENT_CRASH_WORKER, str(p), str(k)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                   for k, p in list(enumerate(paths, start=1))[start:start + 16]]
        for w in workers:
            assert w.wait(timeout=60) == 9, w.stderr.read().decode()
            w.stderr.close()
    interrupted = 0
    for k, path in enumerate(paths, start=1):
        with _resume_to_completion(path) as store:
            (run,) = store.runs()
            trials = store.trials(run)
            assert [(t.index, t.status) for t in trials] == [(0, DONE), (1, DONE), (2, DONE)], k
            # One crash interrupts at most one attempt, and only of a claimed trial.
            assert all(1 <= t.attempts <= 2 for t in trials), k
            assert sum(t.attempts for t in trials) <= 4, k
            interrupted += sum(t.attempts == 2 for t in trials)
            assert len(store.artefacts(run)) <= 1, k
        conn = raw(path)
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1, k
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", k
    # Each trial has statements between its claim's COMMIT and its finish's COMMIT;
    # a crash there leaves it running, and the resume must retry it.
    assert interrupted >= 3 * 3


_CLAIM_FINISH_WORKER = textwrap.dedent("""
    import random, sys, time
    from nas.store import SqliteTrialStore, TrialOutcome
    path, run_id, log, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    store = SqliteTrialStore(path)
    with open(log, "a") as f:
        def note(line):
            f.write(line + "\\n")
            f.flush()  # in the kernel before the next statement, so SIGKILL cannot lose it

        note("ready")
        while (trial := store.claim_next(run_id)) is not None:
            note(f"claim {trial.index} {trial.attempts}")
            time.sleep(rng.uniform(0.001, 0.006))  # "training"
            store.finish(run_id, trial.index, TrialOutcome("done", best_score=trial.index / 1000),
                         attempt=trial.attempts)
            note(f"finish {trial.index} {trial.attempts}")
""")


def _lines(log, kind: str) -> list[tuple[int, int]]:
    with open(log) as f:
        return [tuple(map(int, line.split()[1:])) for line in f if line.startswith(kind + " ")]


def _wait_for_ready(log, count: int, worker: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(log) as f:
            if f.read().count("ready") >= count:
                return
        assert worker.poll() is None, worker.stderr.read().decode()
        time.sleep(0.002)
    raise AssertionError("worker did not start within 30 s")


def test_sigkill_at_random_moments_never_loses_or_duplicates_a_trial(tmp_path):
    num_trials, num_kills = 120, 6
    rng = random.Random(20240611)  # the kill times are deterministic; the scheduler is not
    path, log = tmp_path / STORE_FILENAME, tmp_path / "worker.log"
    log.touch()
    with SqliteTrialStore(path) as store:
        run = store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE)
        store.enqueue(run, [planned(i) for i in range(num_trials)])
    claims: set[tuple[int, int]] = set()  # (trial, attempt) of every claim observed
    kills = 0
    for generation in range(num_kills + 1):
        with SqliteTrialStore(path) as store:  # start-up, as the engine does it
            assert store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE) == run
            store.requeue_interrupted(run)
            assert store.counts(run).running == 0
        worker = subprocess.Popen([sys.executable, "-c", _CLAIM_FINISH_WORKER, str(path), str(run.id), str(log),
                                   str(generation)], stderr=subprocess.PIPE)
        _wait_for_ready(log, generation + 1, worker)
        if generation == num_kills:
            assert worker.wait(timeout=60) == 0, worker.stderr.read().decode()
            worker.stderr.close()
            break
        time.sleep(rng.uniform(0.005, 0.04))
        assert worker.poll() is None, "the worker finished every trial before it could be killed"
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
        worker.stderr.close()
        kills += 1
        # A claim committed just before the kill, whose log line was never written,
        # is still visible: that trial is `running`, in its latest attempt.
        with SqliteTrialStore(path) as store:
            claims |= {(t.index, t.attempts) for t in store.trials(run, status=RUNNING)}
    claims |= set(_lines(log, "claim"))
    assert kills >= 5

    conn = raw(path)
    rows = conn.execute("SELECT trial_index, COUNT(*) FROM trials WHERE run_id = ? GROUP BY trial_index",
                        (run.id,)).fetchall()
    assert rows == [(i, 1) for i in range(num_trials)]  # none missing, none twice
    with SqliteTrialStore(path) as store:
        trials = store.trials(run)
        assert all(t.status == DONE and t.attempts >= 1 for t in trials)
        assert sum(t.attempts for t in trials) == len(claims)
        assert sum(t.attempts for t in trials) > num_trials  # some attempts really were interrupted
        assert all(t.best_score == t.index / 1000 for t in trials)
    finishes = _lines(log, "finish")
    assert len({i for i, _ in finishes}) == len(finishes)  # no trial finished twice
    assert all((i, a) in claims for i, a in finishes)


# ------------------------------------------------------------------ random operation sequences
class StoreMachine(RuleBasedStateMachine):
    """Random enqueue/claim/finish/restart sequences against a model of the lifecycle."""

    indices = st.integers(min_value=0, max_value=11)

    def __init__(self):
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="store_machine_")
        self.model: dict[int, tuple[str, int]] = {}  # index -> (status, attempts)
        self.claims = 0
        self.store = None

    @initialize()
    def start(self):
        self.store = SqliteTrialStore.in_run_dir(self.directory)
        self.run = self.store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE)

    def teardown(self):
        if self.store is not None:
            self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _running(self) -> list[int]:
        return sorted(i for i, (s, _) in self.model.items() if s == RUNNING)

    @rule(batch=st.lists(indices, max_size=5))
    def enqueue(self, batch):
        new = self.store.enqueue(self.run, [planned(i) for i in batch])
        expected = tuple(dict.fromkeys(i for i in batch if i not in self.model))
        assert new == expected
        self.model.update({i: (QUEUED, 0) for i in new})

    @rule()
    def claim(self):
        trial = self.store.claim_next(self.run)
        queued = sorted(i for i, (s, _) in self.model.items() if s == QUEUED)
        if not queued:
            assert trial is None
            return
        index = queued[0]
        assert (trial.index, trial.status, trial.attempts) == (index, RUNNING, self.model[index][1] + 1)
        self.model[index] = (RUNNING, trial.attempts)
        self.claims += 1

    @precondition(lambda self: self._running())
    @rule(data=st.data(), status=st.sampled_from([DONE, DIVERGED, FAILED]))
    def finish(self, data, status):
        index = data.draw(st.sampled_from(self._running()))
        outcome = done(index / 10) if status == DONE else TrialOutcome(status, error="x" if status == FAILED else None)
        assert self.store.finish(self.run, index, outcome).status == status
        self.model[index] = (status, self.model[index][1])

    @rule(index=indices)
    def finish_what_is_not_running(self, index):
        if index in self.model and self.model[index][0] == RUNNING:
            return
        expected = InvalidTransitionError if index in self.model else UnknownTrialError
        with pytest.raises(expected, match=f"trial {index} of run {self.run.id}"):
            self.store.finish(self.run, index, done(0.5))

    @rule()
    def restart(self):
        """A process that stops (cleanly or not) and starts again: reopen, same run, requeue."""
        self.store.close()
        self.store = SqliteTrialStore.in_run_dir(self.directory)
        assert self.store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE) == self.run
        requeued = self.store.requeue_interrupted(self.run)
        assert [t.index for t in requeued] == self._running()
        self.model.update({i: (QUEUED, self.model[i][1]) for i in self._running()})

    @invariant()
    def store_matches_model(self):
        if self.store is None:
            return
        trials = self.store.trials(self.run)
        assert {t.index: (t.status, t.attempts) for t in trials} == self.model
        assert len(trials) == len({t.index for t in trials})
        assert sum(t.attempts for t in trials) == self.claims
        counts = self.store.counts(self.run)
        assert counts.total == len(self.model)
        assert counts.running == len(self._running())
        done_indices = [i for i, (s, _) in self.model.items() if s == DONE]
        best = self.store.best(self.run)
        assert (best.index if best else None) == (max(done_indices) if done_indices else None)

    @rule()
    def drain_a_copy(self):
        """From any reachable state, a restart and a drain give each trial exactly one final row."""
        copy = os.path.join(self.directory, "drain.sqlite")
        source, target = raw(os.path.join(self.directory, STORE_FILENAME)), raw(copy)
        source.backup(target)
        source.close(), target.close()
        with SqliteTrialStore(copy) as drain:
            drain.requeue_interrupted(self.run)
            while (trial := drain.claim_next(self.run)) is not None:
                drain.finish(self.run, trial.index, done(0.1))
            trials = drain.trials(self.run)
            assert sorted(t.index for t in trials) == sorted(self.model)
            assert all(t.final for t in trials)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(copy + suffix):
                os.remove(copy + suffix)


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
