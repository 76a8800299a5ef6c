"""The random and Sobol baselines on the strategy contract, and the search space."""

import pickle

import numpy as np
import pytest

from nas.search import Posed, Problem, SearchSpace, TrialResult, from_unit
from nas.search.random_search import RANDOM, SOBOL, best

SPACE = SearchSpace(mlp_width=(16, 64), cnn_channels=(4, 8), cnn_layers=(1, 2))
PROBLEM = Problem((8, 8, 1), 10)
POSED = Posed(SPACE, PROBLEM)


@pytest.mark.parametrize("strategy", [RANDOM, SOBOL])
def test_proposals_depend_on_seed_and_trial_not_on_batching(strategy):
    state = strategy.init(POSED, 7)
    _, all_at_once = strategy.ask(state, 6)
    one_by_one, s = [], state
    for _ in range(6):
        s, (c,) = strategy.ask(s, 1)
        one_by_one.append(c)
    assert [c.arch for c in all_at_once] == [c.arch for c in one_by_one]
    assert [c.learning_rate for c in all_at_once] == [c.learning_rate for c in one_by_one]
    assert [c.trial for c in all_at_once] == list(range(6))
    _, other_seed = strategy.ask(strategy.init(POSED, 8), 6)
    assert [c.arch for c in other_seed] != [c.arch for c in all_at_once]


def test_proposals_respect_the_space():
    _, candidates = RANDOM.ask(RANDOM.init(Posed(SPACE, Problem((8, 8, 1), 3)), 0), 40)
    for c in candidates:
        c.arch.validate()
        assert c.arch.output_shape() == (3,)
        assert SPACE.learning_rate[0] <= c.learning_rate <= SPACE.learning_rate[1]
        low, high = SPACE.mlp_width if c.choices["family"] == "mlp" else (SPACE.cnn_channels[0], SPACE.cnn_max_channels)
        assert all(low <= w <= high for w in c.choices["widths"])
    assert {c.choices["family"] for c in candidates} == {"mlp", "cnn"}


def test_sobol_points_cover_the_families_evenly():
    _, candidates = SOBOL.ask(SOBOL.init(POSED, 0), 16)
    families = [c.choices["family"] for c in candidates]
    assert families.count("mlp") == families.count("cnn") == 8  # a Sobol coordinate splits [0, 1) exactly


def test_sequence_inputs_only_get_mlps():
    _, candidates = RANDOM.ask(RANDOM.init(Posed(SPACE, Problem((20,), 3)), 0), 10)
    assert {c.choices["family"] for c in candidates} == {"mlp"}


def test_a_space_is_posed_only_on_a_problem_it_can_search():
    with pytest.raises(TypeError, match="Problem"):
        Posed(SearchSpace(), (8, 8, 1))
    with pytest.raises(ValueError, match=r"need image inputs; the data has shape \(20,\)"):
        Posed(SearchSpace(families=("cnn",)), Problem((20,), 3))
    with pytest.raises(ValueError, match="need image inputs"):
        from_unit(SearchSpace(families=("cnn",)), Problem((20,), 3), np.zeros(SearchSpace().unit_dim))


def test_most_complex_is_the_largest_configuration():
    biggest = POSED.most_complex()
    rng = np.random.default_rng(0)
    sizes = [from_unit(SPACE, PROBLEM, rng.random(SPACE.unit_dim))[0].num_params() for _ in range(50)]
    assert biggest.num_params() >= max(sizes)


def test_tell_keeps_objectives_and_best_and_the_state_pickles():
    state = RANDOM.init(POSED, 0)
    state, _ = RANDOM.ask(state, 3)
    results = [TrialResult(0, "done", 0.5, 0.5, 0.1, 10, 2, np.log(0.5)),
               TrialResult(1, "diverged", -np.inf, np.inf, 0.1, 10, 1, np.inf),
               TrialResult(2, "done", 0.7, 0.3, 0.1, 10, 2, np.log(0.3))]
    state = RANDOM.tell(state, results)
    assert best(state) == (2, pytest.approx(np.log(0.3)))
    restored = pickle.loads(pickle.dumps(state))
    assert RANDOM.ask(restored, 2)[1] == RANDOM.ask(state, 2)[1]
