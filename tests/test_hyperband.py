"""Hyperband and ASHA over the Hyperband++ space: the paper's schedule, successive halving, promotions."""

import math
import pickle

import numpy as np
import pytest

from nas.search import CONTINUE, FRESH, Budget, Posed, Problem, TrialResult, run_search
from nas.search.hyperband import (ASHA, HYPERBAND, brackets, max_bracket, promotable, rung_epochs, schedule,
                                  top_k)
from nas.search.hyperband_space import ChainConfig, ConvStack, HyperbandSpace, build_chain, sample_config

SPACE = HyperbandSpace(max_epochs=27, min_epochs=1, eta=3, max_configs=20)
IMAGES = Problem((8, 8, 1), 10)


def _f(c) -> float:
    """A synthetic objective of the configuration alone (so rankings are stable across rungs), lower is better."""
    return abs(math.log10(c.learning_rate) + 2.5) + 0.01 * (c.choices["config"] % 7)


def _run(strategy, space, batch=1, seed=0, f=_f):
    state, log = strategy.init(Posed(space, IMAGES), seed), []
    while not strategy.done(state):
        state, cands = strategy.ask(state, batch)
        assert cands, "a synchronous caller always gets proposals until the strategy is done"
        log += cands
        state = strategy.tell(state, [TrialResult(c.trial, "done", 0.0, 0.0, 0.0, 0, c.epochs, f(c)) for c in cands])
    return state, log


# ------------------------------------------------------------------ the schedule
def test_brackets_match_the_hyperband_papers_table_1():
    # Li et al. (2017), Table 1: R = 81, eta = 3; n = ceil((s_max + 1) eta^s / (s + 1)), n_i = floor(n eta^-i).
    table = {s: b.rungs for s, b in ((b.s, b) for b in brackets(81, 1, 3))}
    assert list(table) == [4, 3, 2, 1, 0]
    assert table[4] == ((81, 1), (27, 3), (9, 9), (3, 27), (1, 81))
    assert table[3] == ((34, 3), (11, 9), (3, 27), (1, 81))
    assert table[2] == ((15, 9), (5, 27), (1, 81))
    assert table[1] == ((8, 27), (2, 81))
    assert table[0] == ((5, 81),)


@pytest.mark.parametrize("R, r_min, eta, s_max", [(81, 1, 3, 4), (9, 1, 3, 2), (27, 3, 3, 2), (10, 1, 3, 2),
                                                  (8, 1, 2, 3), (1, 1, 3, 0)])
def test_s_max_is_floor_log_eta_of_r_over_r_min(R, r_min, eta, s_max):
    assert max_bracket(R, r_min, eta) == s_max
    plan = brackets(R, r_min, eta)
    assert plan[0].rungs[-1][1] == R and plan[0].rungs[0][1] >= r_min
    for b in plan:  # every rung trains more epochs than the last, so a promotion has something to add
        assert all(r1 < r2 for (_, r1), (_, r2) in zip(b.rungs, b.rungs[1:]))


# ------------------------------------------------------------------ Hyperband
def test_successive_halving_keeps_exactly_the_top_n_i_over_eta_and_continues_them():
    state, log = _run(HYPERBAND, SPACE, batch=4)
    plan = schedule(SPACE)
    assert [b.rungs for b in plan] == [((27, 1), (9, 3), (3, 9), (1, 27)), ((12, 3), (4, 9), (1, 27)),
                                       ((6, 9), (2, 27)), ((4, 27),)]
    assert len(log) == sum(n for b in plan for n, _ in b.rungs) and [c.trial for c in log] == list(range(len(log)))
    by_trial = {c.trial: c for c in log}
    for b in plan:
        rungs = [[c for c in log if c.choices["bracket"] == b.s and c.choices["rung"] == i]
                 for i in range(len(b.rungs))]
        for i, ((n_i, r_i), trials) in enumerate(zip(b.rungs, rungs)):
            assert len(trials) == n_i and all(c.epochs == r_i for c in trials)
            if i == 0:
                assert all(c.start == FRESH and c.parent is None for c in trials)
                continue
            previous = rungs[i - 1]
            expected = sorted(previous, key=lambda c: (_f(c), c.trial))[:len(previous) // SPACE.eta]
            assert [c.parent for c in trials] == [c.trial for c in expected]
            for c in trials:
                parent = by_trial[c.parent]
                assert c.start == CONTINUE and c.arch == parent.arch
                assert (c.learning_rate, c.weight_decay, c.batch_size) == (
                    parent.learning_rate, parent.weight_decay, parent.batch_size)
                assert c.choices["config"] == parent.choices["config"]
    # every bracket samples new configurations
    firsts = [c.choices["config"] for c in log if c.start == FRESH]
    assert firsts == list(range(len(firsts)))
    assert state.bracket == len(plan)


def test_failed_trials_are_never_promoted():
    space = HyperbandSpace(max_epochs=9, eta=3)
    _, log = _run(HYPERBAND, space, f=lambda c: math.inf if c.choices["config"] % 2 else _f(c))
    assert all(c.choices["config"] % 2 == 0 for c in log if c.start == CONTINUE)


def test_hyperband_is_deterministic_and_independent_of_batching():
    _, one = _run(HYPERBAND, SPACE, batch=1)
    _, again = _run(HYPERBAND, SPACE, batch=1)
    _, batched = _run(HYPERBAND, SPACE, batch=5)
    assert one == again == batched
    _, other = _run(HYPERBAND, SPACE, batch=1, seed=1)
    assert [c.arch for c in other] != [c.arch for c in one]


def test_a_rung_waits_for_its_results():
    state = HYPERBAND.init(Posed(SPACE, IMAGES), 0)
    state, first = HYPERBAND.ask(state, 100)
    assert len(first) == 27  # the rung, not more
    state, none = HYPERBAND.ask(state, 5)
    assert none == [] and not HYPERBAND.done(state)
    state = HYPERBAND.tell(state, [TrialResult(c.trial, "done", 0.0, 0.0, 0.0, 0, 1, _f(c)) for c in first])
    state, promoted = HYPERBAND.ask(state, 100)
    assert len(promoted) == 9 and all(c.start == CONTINUE for c in promoted)


def test_states_pickle_mid_search():
    for strategy in (HYPERBAND, ASHA):
        state = strategy.init(Posed(SPACE, IMAGES), 2)
        state, cands = strategy.ask(state, 6)
        state = strategy.tell(state, [TrialResult(c.trial, "done", 0.0, 0.0, 0.0, 0, 1, _f(c)) for c in cands])
        restored = pickle.loads(pickle.dumps(state))
        assert strategy.ask(restored, 4)[1] == strategy.ask(state, 4)[1]


# ------------------------------------------------------------------ ASHA
def _replay_asha_rule(log, results, eta):
    """Checks each promotion against ASHA's rule, from the log alone: when it was asked, its parent was in
    the top floor(|rung| / eta) of its rung's completed trials and had not been promoted before."""
    completed, promoted = [], set()
    for c in log:
        if c.start == CONTINUE:
            rung = [t for t in completed if t.choices["rung"] == c.choices["rung"] - 1]
            top = sorted(rung, key=lambda t: (results[t.trial], t.trial))[:len(rung) // eta]
            assert c.parent in {t.trial for t in top} and c.parent not in promoted
            promoted.add(c.parent)
        completed.append(c)  # batch=1: told before the next ask
    return promoted


def test_asha_promotes_the_top_one_over_eta_of_each_rung():
    state, log = _run(ASHA, SPACE, batch=1)
    results = {c.trial: _f(c) for c in log}
    promoted = _replay_asha_rule(log, results, SPACE.eta)
    epochs = rung_epochs(SPACE)
    assert epochs == (1, 3, 9, 27)
    assert sum(c.start == FRESH for c in log) == SPACE.max_configs
    for k in range(len(epochs) - 1):
        rung = [c for c in log if c.choices["rung"] == k]
        top = {c.trial for c in sorted(rung, key=lambda c: (results[c.trial], c.trial))[:len(rung) // SPACE.eta]}
        from_rung = {c.trial for c in rung} & promoted
        assert top <= from_rung  # the finished search left none of a rung's top 1/eta behind
        for c in log:
            if c.start == CONTINUE and c.choices["rung"] == k + 1:
                assert c.epochs == epochs[k + 1] and c.arch == next(p for p in log if p.trial == c.parent).arch
    assert promotable(state) is None


def test_asha_promotes_exactly_the_top_when_later_configs_are_worse():
    # objectives that grow with the configuration: no promoted trial ever drops out of its rung's top
    f = lambda c: float(c.choices["config"]) + c.choices["rung"]  # noqa: E731
    state, log = _run(ASHA, SPACE, batch=1, f=f)
    for k in range(3):
        rung = sorted((c for c in log if c.choices["rung"] == k), key=f)
        promoted = sorted(c.parent for c in log if c.start == CONTINUE and c.choices["rung"] == k + 1)
        assert promoted == sorted(c.trial for c in rung[:len(rung) // SPACE.eta])
    assert [len([c for c in log if c.choices["rung"] == k]) for k in range(4)] == [20, 6, 2, 0]


def test_asha_batches_propose_as_many_jobs_as_asked():
    state = ASHA.init(Posed(SPACE, IMAGES), 0)
    state, first = ASHA.ask(state, 6)
    assert len(first) == 6 and all(c.start == FRESH for c in first)
    state = ASHA.tell(state, [TrialResult(c.trial, "done", 0.0, 0.0, 0.0, 0, 1, float(c.trial)) for c in first])
    state, second = ASHA.ask(state, 4)
    assert [c.start for c in second] == [CONTINUE, CONTINUE, FRESH, FRESH]  # 6 // 3 promotions, then new configs
    assert [c.parent for c in second[:2]] == [0, 1]


# ------------------------------------------------------------------ the space
def test_skip_chain_builds_valid_ir_with_projections_and_pools():
    config = ChainConfig(((ConvStack(3, "conv", 16), ConvStack(5, "separable", 32), ConvStack(3, "conv", 32, 0)),
                          (ConvStack(3, "conv", 32), ConvStack(3, "conv", 32, None), ConvStack(3, "conv", 32, 1))),
                         batchnorm=True, dropout=0.25)
    arch = build_chain(config, 10, (8, 8, 1))
    arch.validate((8, 8, 1))
    ops = [n.op for n in arch.nodes]
    assert ops.count("Add") == 2 and ops.count("MaxPool2D") == 2 and ops.count("SeparableConv2D") == 1
    assert arch.node("c1s3_proj").attrs["filters"] == 32  # 1-channel input projected to 32 channels
    assert arch.node("c1s3_add").inputs == ("c1s3_act", "c1s3_proj")
    assert arch.node("c2s3_add").inputs == ("c2s3_act", "c2s1_act")  # same channels: no projection
    assert arch.output_shape((8, 8, 1)) == (10,)
    with pytest.raises(ValueError, match="skip_from"):
        build_chain(ChainConfig(((ConvStack(3, "conv", 8), ConvStack(3, "conv", 8, 1)),)), 10, (8, 8, 1))


def test_sampled_configurations_are_valid_and_reproducible():
    families = set()
    for k in range(40):
        arch, training, choices = sample_config(SPACE, IMAGES, 0, k)
        arch.validate(IMAGES.input_shape)
        families.add(choices["family"])
        assert 3e-4 <= training["learning_rate"] <= 1e-2 and training["batch_size"] in SPACE.batch_size
        assert sample_config(SPACE, IMAGES, 0, k)[0] == arch
    assert families == {"chain", "skip_chain", "mlp"}
    tabular = Problem((20,), 3)
    assert {sample_config(HyperbandSpace(), tabular, 0, k)[2]["family"] for k in range(10)} == {"mlp"}
    assert Posed(SPACE, IMAGES).most_complex().num_params(IMAGES.input_shape) >= max(
        sample_config(SPACE, IMAGES, 0, k)[0].num_params(IMAGES.input_shape) for k in range(40))
    with pytest.raises(ValueError, match="add 'mlp' to search.space.families"):
        Posed(HyperbandSpace(families=("chain",)), tabular)


def test_top_k_ignores_failed_trials():
    from nas.search.hyperband import Record
    records = [Record(0, 0, 0, 0, 1, objective=math.inf), Record(1, 1, 0, 0, 1, objective=0.5),
               Record(2, 2, 0, 0, 1, objective=0.5), Record(3, 3, 0, 0, 1, objective=None)]
    assert [r.trial for r in top_k(records, 3)] == [1, 2]


# ------------------------------------------------------------------ through the engine
def test_a_promotion_continues_its_parents_training_through_the_engine(digits, tmp_path):
    from nas.checkpoint import load_model
    from nas.search.evaluator import config_for
    from nas.store import SqliteTrialStore
    from nas.train import TrainConfig, train

    space = HyperbandSpace(families=("mlp",), mlp_layers=(1, 1), mlp_width=(16, 32), max_epochs=3, eta=3,
                           batch_size=(64,), weight_decay=(0.0,))
    assert [b.rungs for b in schedule(space)] == [((3, 1), (1, 3)), ((2, 3),)]
    histories = {}
    store = SqliteTrialStore.in_run_dir(str(tmp_path))
    run = store.open_run({"test": "hyperband"}, {"name": "digits"}, "hyperband", 0)
    try:
        outcome = run_search(HYPERBAND, Posed(space, Problem.of(digits)), 0, digits,
                             TrainConfig(epochs=1, batch_size=64), Budget(max_trials=4, batch=3), store, run,
                             run_dir=str(tmp_path),
                             on_trial=lambda c, r, ev: histories.setdefault(c.trial, ev.result.history))
    finally:
        store.close()
    assert [r.status for r in outcome.results] == ["done"] * 4
    promoted = outcome.candidate(3)
    fresh = [outcome.result(t) for t in range(3)]
    assert promoted.start == CONTINUE and promoted.epochs == 3
    assert promoted.parent == min(fresh, key=lambda r: (r.objective, r.trial)).trial
    assert [row["epoch"] for row in histories[promoted.parent]] == [1]
    assert [row["epoch"] for row in histories[3]] == [2, 3]  # continued from the parent's checkpoint
    assert outcome.result(3).epochs == 3
    assert set(outcome.checkpoints) == {0, 1, 2, 3}

    # The two added epochs started from the parent's trained weights, not from a fresh initialisation:
    # retraining them by hand from the parent's checkpoint reproduces the trial, and a fresh start differs.
    base = TrainConfig(epochs=1, batch_size=64)
    config = config_for(promoted, base, parent_epochs=1)
    assert config.epochs == 2
    _, parent_variables, meta = load_model(outcome.checkpoints[promoted.parent])
    assert meta["epochs"] == 1
    by_hand = train(promoted.arch, digits, config, variables=parent_variables)
    np.testing.assert_allclose([row["val_loss"] for row in by_hand.history],
                               [row["val_loss"] for row in histories[3]], rtol=1e-5)
    assert by_hand.best_val_score == pytest.approx(outcome.result(3).score, abs=1e-6)
    # an epoch's head start: the continuation's first epoch trains below the parent's (fresh) first epoch
    assert histories[3][0]["train_loss"] < histories[promoted.parent][0]["train_loss"]


# ------------------------------------------------------------------ SIGKILL and resume (subprocesses)
SMALL_HYPERBAND = [
    "search=hyperband", "search.space.families=[mlp]", "search.space.mlp_layers=[1,1]",
    "search.space.mlp_width=[16,32]", "search.space.max_epochs=3", "search.space.batch_size=[64]", "search.batch=1",
    "logger=console", "progress=false", "runtime.compilation_cache=null",
]


@pytest.mark.slow
def test_sigkilled_hyperband_resumes_its_promotions_from_checkpoints(tmp_path):
    """Kills `nas-search search=hyperband` mid-trial (before and during a promotion) and resumes it: the
    promotions replay against the store, continue from their parents' checkpoints, and match a whole run."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from test_resume import REPO, _env, _trials

    def command(run_dir, *extra):
        return [sys.executable, "-m", "nas.cli.search", *SMALL_HYPERBAND, f"hydra.run.dir={run_dir}", *extra]

    def to_end(run_dir, *extra):
        proc = subprocess.run(command(run_dir, *extra), cwd=REPO, env=_env(), capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def kill_while_running(run_dir, trial, extra):
        proc = subprocess.Popen(command(run_dir, *extra), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                if any(r[0] == trial and r[1] == "running" for r in _trials(run_dir)):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return True
                time.sleep(0.01)
            return False
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    whole = to_end(tmp_path / "whole")
    assert whole["trials"] == 6 and whole["counts"]["done"] == 6 and whole["stop_reason"] == "strategy finished"
    run_dir = tmp_path / "killed"
    kills = kill_while_running(run_dir, 1, [])
    kills += kill_while_running(run_dir, 3, ["resume=true"])  # trial 3 continues trial 0, 1 or 2
    assert kills == 2, "the search finished before it could be killed mid-trial"
    resumed = to_end(run_dir, "resume=true")
    a, b = _trials(tmp_path / "whole"), _trials(run_dir)
    assert [r[0] for r in b] == list(range(6)) and all(r[1] == "done" for r in b)
    assert [(r[3], r[4]) for r in b] == [(r[3], r[4]) for r in a]
    assert max(r[2] for r in b) >= 2
    assert json.loads(b[3][4])["start"] == "continue"
    np.testing.assert_allclose([r[5] for r in b], [r[5] for r in a], atol=1e-6)
    assert resumed["best_trial"] == whole["best_trial"]
    assert resumed["test_accuracy"] == pytest.approx(whole["test_accuracy"], abs=1e-6)
    assert os.path.isdir(run_dir / "trials" / "3")


TINY_ASHA = [
    "search=asha", "data=digits", "search.space.families=[mlp]", "search.space.mlp_layers=[1,1]",
    "search.space.mlp_width=[16,32]", "search.space.max_epochs=3", "search.space.max_configs=4", "search.batch=1",
    "runtime.compilation_cache=null",
]


def _kill_resume_module():
    import importlib.util
    import os
    import sys

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                        "kill_resume.py")
    spec = importlib.util.spec_from_file_location("kill_resume", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_kill_resume_verdict_catches_lost_unfinished_and_changed_trials(tmp_path):
    from nas.store import PlannedTrial, SqliteTrialStore, TrialOutcome

    kill_resume = _kill_resume_module()

    def make(name, scores, unfinished=(), hyper=None):
        run_dir = tmp_path / name
        with SqliteTrialStore.in_run_dir(str(run_dir)) as store:
            run = store.open_run({"k": 1}, {"name": "d"}, "asha", 0)
            store.enqueue(run, [PlannedTrial(i, '{"a": 1}', "h", (hyper or {}).get(i, {"lr": 0.1}),
                                             None if i == 0 else 0) for i in range(len(scores))])
            for i, score in enumerate(scores):
                store.claim_next(run)
                if i not in unfinished:
                    store.finish(run, i, TrialOutcome("done", best_score=score, epochs=1))
        return kill_resume.store_view(str(run_dir))

    report = {"best_trial": 1, "test_accuracy": 0.9}
    whole = make("whole", [0.5, 0.8, 0.7])
    assert kill_resume.compare(whole, make("same", [0.5, 0.8, 0.7]), report, report) == []
    lost = kill_resume.compare(whole, make("lost", [0.5, 0.8]), report, report)
    assert any("lost [2]" in p for p in lost)
    running = kill_resume.compare(whole, make("running", [0.5, 0.8, 0.7], unfinished=(2,)), report, report)
    assert any("unfinished: [(2, 'running')]" in p for p in running)
    changed = kill_resume.compare(whole, make("changed", [0.5, 0.8, 0.7], hyper={2: {"lr": 0.2}}), report, report)
    assert any("trial 2: the killed run proposed something else" in p for p in changed)
    rescored = kill_resume.compare(whole, make("rescored", [0.5, 0.6, 0.7]), report, dict(report, best_trial=2))
    assert any("trial 1: val score" in p for p in rescored) and any("best_trial 2 vs 1" in p for p in rescored)


@pytest.mark.slow
def test_kill_resume_experiment_passes_for_asha_on_digits(tmp_path):
    """experiments/kill_resume.py: ASHA SIGKILLed at two seeded moments resumes to the uninterrupted run's
    trials (4 configurations + 1 promotion), scores and best, each trial exactly once."""
    kill_resume = _kill_resume_module()
    summary = kill_resume.main(["--out", str(tmp_path), "--kills", "2", "--seed", "0", "--max-delay", "0.2",
                                "--timeout", "600", *TINY_ASHA])
    assert summary["verdict"] == "PASS", summary["problems"]
    assert summary["trials"] == 5 and summary["kills"] >= 1
    assert summary["reclaimed_trials"], "no kill landed mid-trial"
    assert 0.0 < summary["test_accuracy"] <= 1.0 and summary["num_params"] > 0
