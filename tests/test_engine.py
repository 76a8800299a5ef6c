"""The evaluator, the objective and the store-backed engine (in process)."""

import dataclasses
import math
import os

import jax
import numpy as np
import pytest

from nas.ir import mlp
from nas.morph import widen
from nas.search import (CONTINUE, INHERIT, Budget, Candidate, Objective, Posed, Problem, SearchSpace,
                        evaluate_candidates, pareto_front, run_search)
from nas.search.random_search import RANDOM
from nas.store import SqliteTrialStore
from nas.train import TrainConfig, evaluate, train

BASE = TrainConfig(epochs=2, batch_size=64)
TINY = SearchSpace(families=("mlp",), mlp_layers=(1, 1), mlp_width=(16, 48), batchnorm=(False,), dropout=(0.0,))


# ------------------------------------------------------------------ objective
def test_objective_is_deep_n_cheaps_f():
    f = Objective(w_c=0.5, complexity="num_params", c_0=1000.0)
    assert f(0.1, 9.0, 200) == pytest.approx(math.log(0.1 + 0.5 * 200 / 1000))
    assert Objective()(0.25, 3.0, 10) == pytest.approx(math.log(0.25))
    assert Objective(w_c=1.0, complexity="t_tr", c_0=2.0)(0.2, 1.0, 0) == pytest.approx(math.log(0.7))
    assert f(math.inf, 1.0, 1) == math.inf
    with pytest.raises(ValueError, match="complexity"):
        Objective(complexity="flops")


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    points = [(0.1, 5.0), (0.2, 1.0), (0.15, 5.0), (0.1, 5.0), (0.3, 0.5), (math.inf, 0.1), (0.25, 2.0)]
    assert pareto_front(points) == [0, 1, 4]


# ------------------------------------------------------------------ evaluator
def test_same_architecture_proposals_train_as_one_population(digits):
    arch = mlp([32], 10, input_shape=digits.input_shape)
    cands = [Candidate(i, arch, lr) for i, lr in enumerate((1e-3, 3e-3, 1e-2))]
    # In float64 (float64 inputs under x64) the vmapped and the unbatched program agree to ~1e-12
    # (tests/test_train.py), so the member equals its solo run exactly; in float32, Adam amplifies
    # their different summation orders into validation accuracies up to 2 examples apart.
    with jax.enable_x64(True):
        data = dataclasses.replace(digits, **{k: getattr(digits, k).astype(np.float64)
                                              for k in ("x_train", "x_val", "x_test")})
        evaluations = evaluate_candidates(cands, data, BASE)
        alone = train(arch, data, dataclasses.replace(
            BASE, seed=BASE.seed + 1, optimizer=dataclasses.replace(BASE.optimizer, learning_rate=3e-3)))
    assert len({e.result.t_tr for e in evaluations}) == 1  # one program, its epoch time split three ways
    assert evaluations[1].result.best_val_score == alone.best_val_score
    assert evaluations[1].result.history[-1]["val_loss"] == pytest.approx(alone.history[-1]["val_loss"], rel=1e-9)


def test_a_morph_child_starts_where_its_parent_ended(digits):
    parent_arch = mlp([24], 10, input_shape=digits.input_shape)
    parent = evaluate_candidates([Candidate(0, parent_arch, 3e-3)], digits, BASE)[0].result
    child_arch, child_vars = widen(parent_arch, parent.variables, "dense1", 40, jax.random.key(0))
    before = evaluate(parent_arch, parent.variables, digits.x_val, digits.y_val)
    after = evaluate(child_arch, child_vars, digits.x_val, digits.y_val)
    # The widened child computes the parent's function up to float32 rounding: measured logits
    # differ by <= 4.8e-7 while the smallest top-2 logit margin is 1.4e-2, so a prediction flips
    # only on a near-tie; one example of slack covers another CPU's rounding.
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-5)
    assert abs(after["accuracy"] - before["accuracy"]) <= 1 / len(digits.y_val) + 1e-9
    child = Candidate(1, child_arch, 3e-3, parent=0, start=INHERIT, variables=child_vars, epochs=1)
    result = evaluate_candidates([child], digits, BASE)[0].result
    # one more epoch from the parent's weights: at least as good as the parent, far above a fresh start
    assert result.history[0]["val_accuracy"] >= before["accuracy"] - 0.02


def test_continue_trains_only_the_added_epochs_and_counts_from_the_parent(digits):
    arch = mlp([32], 10, input_shape=digits.input_shape)
    first = evaluate_candidates([Candidate(0, arch, 3e-3, epochs=2)], digits, BASE)[0].result
    more = Candidate(1, arch, 3e-3, epochs=5, parent=0, start=CONTINUE)
    ev = evaluate_candidates([more], digits, BASE, parent_weights=lambda t: (first.variables, first.epochs))[0]
    assert ev.result.epochs == 5 and [row["epoch"] for row in ev.result.history] == [3, 4, 5]
    assert ev.result.history[0]["val_accuracy"] >= first.best_val_score - 0.02
    spent = Candidate(2, arch, 3e-3, epochs=2, parent=0, start=CONTINUE)
    failed = evaluate_candidates([spent], digits, BASE, parent_weights=lambda t: (first.variables, 2))[0]
    assert failed.result is None and "already spent" in failed.error


def test_a_failing_proposal_is_reported_not_raised(digits):
    arch = mlp([8], 10, input_shape=digits.input_shape)
    bad = Candidate(0, arch, 1e-3, batch_size=100_000)  # more than the training split
    good = Candidate(1, arch, 1e-3)
    bad_ev, good_ev = evaluate_candidates([bad, good], digits, BASE)
    assert bad_ev.result is None and "batch_size" in bad_ev.error
    assert good_ev.result.status == "done"


def test_candidate_contract_is_checked():
    arch = mlp([8], 10, input_shape=(4,))
    with pytest.raises(ValueError, match="parent"):
        Candidate(0, arch, start=CONTINUE)
    with pytest.raises(ValueError, match="inherited variables"):
        Candidate(1, arch, parent=0, start=INHERIT)


# ------------------------------------------------------------------ engine
def _search(digits, run_dir, max_trials, batch=2, target=None):
    space = Posed(TINY, Problem.of(digits))
    store = SqliteTrialStore.in_run_dir(run_dir)
    run = store.open_run({"test": 1}, {"name": "digits"}, "random", 3)
    try:
        return run_search(RANDOM, space, 3, digits, BASE, Budget(max_trials=max_trials, batch=batch, target=target),
                          store, run, run_dir=str(run_dir)), store.counts(run)
    finally:
        store.close()


def test_a_search_continued_in_a_second_call_equals_one_uninterrupted_search(digits, tmp_path):
    whole, counts = _search(digits, tmp_path / "whole", 6)
    assert counts.done == 6 and whole.trained == 6
    _search(digits, tmp_path / "split", 3)
    second, counts = _search(digits, tmp_path / "split", 6)
    assert second.trained == 3 and counts.done == 6  # the first 3 replayed from the store, not retrained
    assert [r.objective for r in second.results] == pytest.approx([r.objective for r in whole.results], abs=1e-6)
    assert second.best == whole.best
    again, _ = _search(digits, tmp_path / "split", 6)
    assert again.trained == 0 and again.best == whole.best
    # every Pareto-front trial has a checkpoint, the best among them
    assert set(second.pareto) <= set(second.checkpoints) and second.best in second.pareto


def test_target_stops_the_search(digits, tmp_path):
    outcome, counts = _search(digits, tmp_path, 10, batch=1, target=0.0)
    assert outcome.stop_reason == "target reached" and counts.done == 1


def test_a_changed_search_refuses_to_resume(digits, tmp_path):
    from nas.search import ResumeMismatchError

    _search(digits, tmp_path, 2)
    store = SqliteTrialStore.in_run_dir(tmp_path)
    run = store.open_run({"test": 1}, {"name": "digits"}, "random", 3)
    other = Posed(TINY, Problem.of(digits))
    with pytest.raises(ResumeMismatchError, match="configuration changed"):
        run_search(RANDOM, other, 4, digits, BASE, Budget(max_trials=3), store, run, run_dir=str(tmp_path))
    store.close()


# ------------------------------------------------------------------ interruptions that are not the trial's fault
def _run(digits, run_dir, max_trials, *, batch=1, on_trial=None, max_attempts=3):
    space = Posed(TINY, Problem.of(digits))
    store = SqliteTrialStore.in_run_dir(run_dir)
    run = store.open_run({"test": 1}, {"name": "digits"}, "random", 3)
    try:
        return run_search(RANDOM, space, 3, digits, BASE, Budget(max_trials=max_trials, batch=batch), store, run,
                          run_dir=str(run_dir), on_trial=on_trial, max_attempts=max_attempts), store.trials(run)
    finally:
        store.close()


def test_a_user_interrupt_requeues_the_batch_without_counting_an_attempt(digits, tmp_path):
    """Issue 12 #3: SIGINT/SIGTERM are the user's, not the trial's; resuming loses and repeats nothing."""
    from nas.search.engine import Interrupted

    whole, _ = _run(digits, tmp_path / "whole", 4, batch=2)

    def stop_after_the_first(candidate, result, evaluation):
        if evaluation is not None:
            raise Interrupted("SIGTERM")

    for _ in range(4):  # more interrupts than max_attempts: none of them counts
        with pytest.raises(Interrupted):
            _run(digits, tmp_path / "split", 4, batch=2, on_trial=stop_after_the_first, max_attempts=2)
    _, trials = _run(digits, tmp_path / "split", 4, batch=2, on_trial=None, max_attempts=2)
    assert [t.status for t in trials] == ["done"] * 4
    assert all(t.attempts == 1 for t in trials)  # each trained (and counted) exactly once
    resumed, _ = _run(digits, tmp_path / "split", 4, batch=2)
    assert resumed.trained == 0 and resumed.gave_up == ()
    assert [r.objective for r in resumed.results] == pytest.approx([r.objective for r in whole.results], abs=1e-6)


def test_a_checkpoint_that_cannot_be_written_stops_the_search_and_loses_nothing(digits, tmp_path, monkeypatch):
    """Issue 12 #3: disk full is not the trial's fault: it is queued again, uncounted, and the error names the path."""
    import errno

    from nas.search import engine

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(engine, "save_model", disk_full)
        with pytest.raises(engine.CheckpointWriteError, match=r"trial 0's checkpoint to .*trials/0: No space left"):
            _run(digits, tmp_path, 2)
    outcome, trials = _run(digits, tmp_path, 2)  # space freed: the resume trains it, once
    assert [(t.status, t.attempts) for t in trials] == [("done", 1), ("done", 1)]
    assert outcome.best is not None and os.path.isdir(outcome.checkpoints[outcome.best])


def test_a_trial_whose_process_died_max_attempts_times_is_given_up_loudly(digits, tmp_path, caplog, monkeypatch):
    """Issue 12 #3: the limit is a setting; giving up is logged, counted and stored on the trial."""
    from nas.search import engine
    from nas.store import GAVE_UP

    real = engine.evaluate_candidates

    def dies_training_trial_1(candidates, *args, **kwargs):
        # To the store, a process that raised here and one SIGKILLed here look alike: trial 1 stays `running`.
        if any(c.trial == 1 for c in candidates):
            raise RuntimeError("killed while training trial 1")
        return real(candidates, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(engine, "evaluate_candidates", dies_training_trial_1)
        for _ in range(2):
            with pytest.raises(RuntimeError, match="killed"):
                _run(digits, tmp_path, 3)
    with caplog.at_level("WARNING", logger="nas.search.engine"):
        outcome, trials = _run(digits, tmp_path, 3, max_attempts=2)
    assert [t.status for t in trials] == ["done", "failed", "done"]
    assert trials[1].error.startswith(GAVE_UP) and "2 attempts" in trials[1].error
    assert outcome.gave_up == (1,) and outcome.best is not None
    assert any("trial 1 gave up" in r.getMessage() and "max_attempts=2" in r.getMessage() for r in caplog.records)
    again, _ = _run(digits, tmp_path, 3, max_attempts=5)  # a later resume still counts it, and keeps it failed
    assert again.gave_up == (1,) and again.trained == 0


def test_a_strategy_is_told_each_trials_history_and_feedback_the_same_fresh_or_replayed(digits, tmp_path):
    """Issue 13 #3: the result a strategy is told carries the per-epoch rows (what DREAM reads)."""
    from nas.search import Strategy

    told = []
    recording = Strategy("recording", RANDOM.init, RANDOM.ask,
                         lambda state, results: (told.extend(results), RANDOM.tell(state, results))[1], RANDOM.done)
    space = Posed(TINY, Problem.of(digits))

    def search(max_trials):
        with SqliteTrialStore.in_run_dir(tmp_path) as store:
            run = store.open_run({"test": 1}, {"name": "digits"}, "random", 3)
            run_search(recording, space, 3, digits, BASE, Budget(max_trials=max_trials), store, run,
                       run_dir=str(tmp_path))

    search(2)
    fresh = list(told)
    told.clear()
    search(2)  # every trial replayed from the store
    assert [r.history for r in told] == [r.history for r in fresh]
    assert [r.feedback for r in told] == [r.feedback for r in fresh]
    for r in fresh:
        assert [row["epoch"] for row in r.history] == [1, 2] and "val_accuracy" in r.history[0]
        assert len(r.feedback) == 2 and "grad_norm" in r.feedback[0] and "nonfinite" in r.feedback[0]
