"""Library work behind nas-search: Deep-n-Cheap's c_0, and the best model's test score and summary."""

import dataclasses
import json
import math
import os
import re

import pytest

from nas.checkpoint import load_model
from nas.ir import mlp
from nas.search import (Budget, Objective, Posed, Problem, ReferenceComplexityError, SearchSpace, best_model,
                        export_artefacts, reference_complexity, run_search, score_on_test, search_summary)
from nas.search.random_search import RANDOM
from nas.search.reference import C0_FILENAME
from nas.store import SqliteTrialStore
from nas.train import TrainConfig, evaluate

BASE = TrainConfig(epochs=2, batch_size=64)
DIGITS = Problem((8, 8, 1), 10)


class _Space:
    """The one thing `reference_complexity` asks of a space: its most complex architecture for the problem."""

    def __init__(self, arch, batch_size=None):
        self.arch, self.calls = arch, 0
        if batch_size is not None:
            self.batch_size = batch_size

    def most_complex(self, problem):
        assert problem == DIGITS
        self.calls += 1
        return self.arch


class _NoSpace:
    """A space that must not be asked: c_0 comes from elsewhere."""

    def most_complex(self, problem):
        raise AssertionError("c_0 was measured although it was given or cached")


NOT_ASKED = Posed(_NoSpace(), DIGITS)


# ------------------------------------------------------------------ reference complexity
def test_given_c_0_or_no_complexity_weight_measures_nothing(digits, tmp_path):
    assert reference_complexity(NOT_ASKED, digits, BASE, w_c=1.0, complexity="t_tr", c_0=7,
                                cache_dir=str(tmp_path)) == 7.0
    assert reference_complexity(NOT_ASKED, digits, BASE, w_c=0.0, complexity="t_tr", cache_dir=str(tmp_path)) == 1.0
    assert not os.path.exists(tmp_path / C0_FILENAME)


def test_num_params_c_0_is_the_most_complex_arch_and_is_cached(digits, tmp_path):
    arch = mlp([64, 32], 10)
    space = _Space(arch)
    c_0 = reference_complexity(Posed(space, DIGITS), digits, BASE, w_c=0.5, complexity="num_params",
                               cache_dir=str(tmp_path))
    assert c_0 == float(arch.num_params(digits.input_shape)) and space.calls == 1
    with open(tmp_path / C0_FILENAME) as f:
        assert json.load(f) == {"c_0": c_0, "complexity": "num_params", "arch": arch.name}
    # A resumed run reads it back instead of measuring again.
    assert reference_complexity(NOT_ASKED, digits, BASE, w_c=0.5, complexity="num_params",
                                cache_dir=str(tmp_path)) == c_0


def test_t_tr_c_0_is_a_probe_trainings_epoch_time_and_is_cached(digits, tmp_path):
    space = _Space(mlp([16], 10), batch_size=32)
    c_0 = reference_complexity(Posed(space, DIGITS), digits, BASE, w_c=1.0, complexity="t_tr",
                               cache_dir=str(tmp_path))
    assert c_0 > 0 and math.isfinite(c_0)
    assert reference_complexity(NOT_ASKED, digits, BASE, w_c=1.0, complexity="t_tr",
                                cache_dir=str(tmp_path)) == c_0


def test_without_a_cache_dir_nothing_is_written(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = _Space(mlp([8], 10))
    reference_complexity(Posed(space, DIGITS), digits, BASE, w_c=1.0, complexity="num_params")
    reference_complexity(Posed(space, DIGITS), digits, BASE, w_c=1.0, complexity="num_params")
    assert space.calls == 2 and os.listdir(tmp_path) == []


@pytest.mark.parametrize("text", ['{"c_0": 1', '{"arch": "x"}', '{"c_0": "many"}', '[1]', ''])
def test_a_damaged_c0_json_is_an_error_naming_the_file(digits, tmp_path, text):
    path = tmp_path / C0_FILENAME
    path.write_text(text)
    with pytest.raises(ReferenceComplexityError, match=re.escape(str(path))) as caught:
        reference_complexity(NOT_ASKED, digits, BASE, w_c=1.0, complexity="t_tr", cache_dir=str(tmp_path))
    assert isinstance(caught.value, ValueError) and "search.objective.c_0" in str(caught.value)
    assert path.read_text() == text  # left for the user to inspect


# ------------------------------------------------------------------ the best model and the summary
@pytest.fixture(scope="module")
def searched(digits, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("search"))
    space = Posed(SearchSpace(families=("mlp",), mlp_layers=(1, 1), mlp_width=(16, 48), batchnorm=(False,),
                              dropout=(0.0,)), Problem.of(digits))
    objective = Objective(w_c=0.1, complexity="num_params", c_0=1e4)
    store = SqliteTrialStore.in_run_dir(run_dir)
    try:
        run = store.open_run({"test": 1}, {"name": "digits"}, "random", 3)
        outcome = run_search(RANDOM, space, 3, digits, BASE, Budget(max_trials=3), store, run,
                             objective=objective, run_dir=run_dir)
        artefacts = export_artefacts(outcome, store, run_dir)
        counts = store.counts(run).as_dict()
    finally:
        store.close()
    return outcome, objective, artefacts, counts, run_dir


def test_best_model_is_the_exported_checkpoint_scored_like_nas_train_evaluate(digits, searched):
    outcome, _, artefacts, _, run_dir = searched
    best = best_model(outcome, digits, BASE, artefacts)
    assert best.trial == outcome.best and best.checkpoint == os.path.join(run_dir, "best")
    arch, variables, _ = load_model(os.path.join(run_dir, "best"))
    expected = evaluate(arch, variables, digits.x_test, digits.y_test, digits.task, BASE.eval_batch_size)
    assert dict(best.test) == {"test_loss": expected["loss"], "test_accuracy": expected["accuracy"]}
    assert best.arch.structural_hash() == arch.structural_hash()
    assert score_on_test(arch, variables, digits, BASE.eval_batch_size) == dict(best.test)


def test_search_summary_reports_the_best_trial_and_its_test_score(digits, searched):
    outcome, objective, artefacts, counts, _ = searched
    best = best_model(outcome, digits, BASE, artefacts)
    summary = search_summary(outcome, objective, digits, best, artefacts, strategy="random", counts=counts,
                             finished_before=0)
    result = outcome.result(outcome.best)
    assert summary["status"] == "done" and summary["best_trial"] == outcome.best
    assert summary["test_accuracy"] == best.test["test_accuracy"] and summary["test_loss"] == best.test["test_loss"]
    assert summary["val_accuracy"] == summary["val_score"] == result.score
    assert summary["best_objective"] == result.objective and summary["num_params"] == result.num_params
    assert summary["checkpoint"] == artefacts["best"] and summary["counts"] == counts
    assert summary["objective"] == {"w_c": 0.1, "complexity": "num_params", "c_0": 1e4}
    assert summary["trials"] == 3 and summary["strategy"] == "random" and summary["pareto"] == list(outcome.pareto)
    json.dumps(summary)  # JSON-ready: results.json holds it


def test_a_search_without_a_finite_trial_has_no_best_model(digits, searched):
    outcome, objective, artefacts, counts, _ = searched
    empty = dataclasses.replace(outcome, best=None, pareto=())
    assert best_model(empty, digits, BASE, artefacts) is None
    summary = search_summary(empty, objective, digits, None, artefacts, strategy="random", counts=counts,
                             finished_before=3)
    assert summary["status"] == "no finite trial" and "test_accuracy" not in summary
    assert summary["finished_before"] == 3
