"""Random search on the init/ask/tell contract and the budgeted driver."""

import dataclasses

import numpy as np

from nas.search import Budget, SearchSpace, best_trial, run_random_search
from nas.search import random_search
from nas.train import TrainConfig

SPACE = SearchSpace(mlp_width=(16, 64), cnn_channels=(4, 8), cnn_layers=(1, 2))


def test_proposals_depend_on_seed_and_trial_not_on_batching():
    state = random_search.init(SPACE, seed=7, num_outputs=10, input_shape=(8, 8, 1))
    _, all_at_once = random_search.ask(state, 6)
    one_by_one, s = [], state
    for _ in range(6):
        s, (c,) = random_search.ask(s, 1)
        one_by_one.append(c)
    assert [c.arch for c in all_at_once] == [c.arch for c in one_by_one]
    assert [c.learning_rate for c in all_at_once] == [c.learning_rate for c in one_by_one]
    _, other_seed = random_search.ask(random_search.init(SPACE, 8, 10, (8, 8, 1)), 6)
    assert [c.arch for c in other_seed] != [c.arch for c in all_at_once]


def test_proposals_respect_the_space():
    state = random_search.init(SPACE, seed=0, num_outputs=3, input_shape=(8, 8, 1))
    _, candidates = random_search.ask(state, 40)
    for c in candidates:
        c.arch.validate()
        assert c.arch.output_shape() == (3,)
        assert SPACE.learning_rate[0] <= c.learning_rate <= SPACE.learning_rate[1]
        low, high = SPACE.mlp_width if c.choices["family"] == "mlp" else (SPACE.cnn_channels[0], SPACE.cnn_max_channels)
        assert all(low <= w <= high for w in c.choices["widths"])
    assert {c.choices["family"] for c in candidates} == {"mlp", "cnn"}


def test_sequence_inputs_only_get_mlps():
    state = random_search.init(SPACE, seed=0, num_outputs=3, input_shape=(20,))
    _, candidates = random_search.ask(state, 10)
    assert {c.choices["family"] for c in candidates} == {"mlp"}


def test_tell_keeps_scores_and_best():
    state = random_search.init(SPACE, 0, 10, (8, 8, 1))
    state = random_search.tell(state, [(0, 0.5), (1, float("-inf")), (2, 0.7)])
    assert random_search.best(state) == (2, 0.7)


def test_driver_budgets_and_best(digits):
    config = TrainConfig(epochs=2, batch_size=64)
    records = run_random_search(SPACE, digits, config, Budget(max_trials=4, batch=2), seed=1)
    assert [r.candidate.trial for r in records] == [0, 1, 2, 3]
    best = best_trial(records)
    assert best.score == max(r.score for r in records)
    assert best.result.variables  # only the best keeps its weights
    assert all(not r.result.variables for r in records if r is not best)
    stopped = run_random_search(SPACE, digits, config, Budget(max_trials=10, target=0.0), seed=1)
    assert len(stopped) == 1  # any finite accuracy reaches a target of 0
    again = run_random_search(SPACE, digits, config, Budget(max_trials=4, batch=2), seed=1)
    np.testing.assert_allclose([r.score for r in again], [r.score for r in records])


def test_equal_architectures_in_a_batch_train_as_one_population(digits):
    tiny = dataclasses.replace(SPACE, families=("mlp",), mlp_layers=(1, 1), mlp_width=(16, 16),
                               batchnorm=(False,), dropout=(0.0,))
    records = run_random_search(tiny, digits, TrainConfig(epochs=2, batch_size=64), Budget(max_trials=3, batch=3))
    assert len({r.candidate.arch.structural_hash() for r in records}) == 1
    assert len({r.candidate.learning_rate for r in records}) == 3
    # one program ran all three: their shared epoch time was split three ways
    assert len({r.result.t_tr for r in records}) == 1
