"""The evaluator, the objective and the store-backed engine (in process)."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from nas.ir import mlp
from nas.morph import widen
from nas.search import (CONTINUE, INHERIT, Budget, Candidate, Objective, SearchSpace, evaluate_candidates,
                        pareto_front, run_search)
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
    evaluations = evaluate_candidates(cands, digits, BASE)
    assert len({e.result.t_tr for e in evaluations}) == 1  # one program, its epoch time split three ways
    alone = train(arch, digits, dataclasses.replace(BASE, seed=BASE.seed + 1,
                                                    optimizer=dataclasses.replace(BASE.optimizer, learning_rate=3e-3)))
    assert evaluations[1].result.best_val_score == pytest.approx(alone.best_val_score, abs=1e-3)


def test_a_morph_child_starts_where_its_parent_ended(digits):
    parent_arch = mlp([24], 10, input_shape=digits.input_shape)
    parent = evaluate_candidates([Candidate(0, parent_arch, 3e-3)], digits, BASE)[0].result
    child_arch, child_vars = widen(parent_arch, parent.variables, "dense1", 40, jax.random.key(0))
    before = evaluate(parent_arch, parent.variables, digits.x_val, digits.y_val)
    after = evaluate(child_arch, child_vars, digits.x_val, digits.y_val)
    assert after["accuracy"] == before["accuracy"]
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
    space = TINY.for_data(digits.input_shape, digits.num_outputs)
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
    other = TINY.for_data(digits.input_shape, digits.num_outputs)
    with pytest.raises(ResumeMismatchError, match="configuration changed"):
        run_search(RANDOM, other, 4, digits, BASE, Budget(max_trials=3), store, run, run_dir=str(tmp_path))
    store.close()
