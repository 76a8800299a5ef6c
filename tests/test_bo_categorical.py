"""Categorical hyperparameters in the BO space: one-hot encoding, stationary kernels only.

Any two different choices are equally far apart (no invented order), samples
are exact one-hot vectors drawn uniformly, a state with categorical
hyperparameters survives a JSON round trip and `recover`, and GP + EI finds the
right category and the continuous optimum on a mixed Branin problem more
often than random search does.
"""

import copy
import json

import jax
import numpy as np
import pytest

from nas.search import bo
from nas.search.bo import optimizer
from nas.search.bo.space import SpaceError, categorical, choice_index

OPTIMIZER = categorical("optimizer", ("adam", "sgd", "rmsprop", "adamw"))
MIXED = bo.Space((bo.Hyperparameter("x1", -5.0, 10.0), bo.Hyperparameter("x2", 0.0, 15.0), OPTIMIZER),
                 kernel="matern52")
OFFSET = {"adam": 8.0, "sgd": 0.0, "rmsprop": 15.0, "adamw": 4.0}  # sgd is the right choice


def branin(c):
    x1, x2 = c["x1"], c["x2"]
    b, cc, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
    return (x2 - b * x1**2 + cc * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


def mixed_branin(c):
    return float(branin(c) + OFFSET[c["optimizer"]])


OPTIMUM = 0.397887


def test_one_hot_round_trip_and_inputs_unchanged():
    config = {"x1": 1.5, "x2": 3.0, "optimizer": "rmsprop"}
    before = copy.deepcopy(config)
    x = bo.encode(MIXED, config)
    assert MIXED.dim == 6 and MIXED.unit_dim == 3
    np.testing.assert_array_equal(x, [1.5, 3.0, 0, 0, 1, 0])
    assert bo.decode(MIXED, x) == config and config == before
    # After JSON (choices are kept as given; values come back as the stored choice).
    assert bo.canonical(MIXED, json.loads(json.dumps(config))) == config


def test_mixed_types_are_distinct_choices():
    p = categorical("flag", (1, True, "1", 1.5))
    assert [choice_index(p, v) for v in (1, True, "1", 1.5, np.int64(1))] == [0, 1, 2, 3, 0]
    with pytest.raises(SpaceError, match="'flag' = 2 is not one of its choices"):
        choice_index(p, 2)


def test_bad_categorical_specs_name_the_fault():
    with pytest.raises(SpaceError, match="repeat a value"):
        categorical("c", ("a", "a"))
    with pytest.raises(SpaceError, match="at least one choice"):
        categorical("c", ())
    with pytest.raises(SpaceError, match="choices must be str, int, float or bool"):
        categorical("c", ("a", None))
    with pytest.raises(SpaceError, match="choices are for kind 'categorical'"):
        bo.Hyperparameter("x", 0.0, 1.0, choices=("a",))
    with pytest.raises(SpaceError, match="ramp kernel has no distance for categorical"):
        bo.Space((OPTIMIZER,), kernel="ramp")
    with pytest.raises(SpaceError, match="not one of its choices"):
        bo.encode(MIXED, {"x1": 0.0, "x2": 0.0, "optimizer": "lion"})


def test_samples_are_one_hot_and_uniform_over_choices():
    U = np.asarray(jax.random.uniform(jax.random.key(0), (4000, MIXED.unit_dim)))
    X = bo.from_unit(MIXED, U)
    one_hot = X[:, 2:]
    assert set(np.unique(one_hot)) == {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.sum(axis=1), 1.0)
    frequencies = one_hot.mean(axis=0)
    np.testing.assert_allclose(frequencies, 0.25, atol=0.03)  # 4000 draws: sd ~0.007 each
    assert {bo.decode(MIXED, x)["optimizer"] for x in X[:50]} == set(OPTIMIZER.choices)


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_different_choices_are_equally_far_apart(kernel):
    space = bo.Space(MIXED.params, kernel=kernel)
    k = optimizer._kernel_at(optimizer._base_kernel(space), 1.0, 0.5)
    X = np.stack([bo.encode(space, {"x1": 0.0, "x2": 5.0, "optimizer": o}) for o in OPTIMIZER.choices])
    with jax.enable_x64(True):
        K = np.asarray(k(X, X))
    off = K[~np.eye(4, dtype=bool)]
    np.testing.assert_allclose(off, off[0], rtol=5e-7)  # no order between choices
    np.testing.assert_allclose(np.diag(K), 1.0, rtol=5e-7)
    assert off[0] < 1.0 - 1e-3


def test_state_with_categoricals_survives_json_and_recover():
    state = bo.init(MIXED, 3, n_initial=6, n_candidates=256)
    for _ in range(9):
        state, (config,) = bo.ask(state)
        assert config["optimizer"] in OPTIMIZER.choices
        state = bo.tell(state, [(config, mixed_branin(config))])
    restored = bo.from_dict(json.loads(json.dumps(bo.to_dict(state))))
    assert restored == state
    recovered = bo.recover(MIXED, restored.history, 3, n_initial=6, n_candidates=256)
    assert bo.ask(recovered)[1] == bo.ask(state)[1]


def test_gp_ei_finds_the_category_and_beats_random_over_ten_seeds():
    budget = 30
    bo_regrets, random_regrets, right_category = [], [], 0
    for seed in range(10):
        state = bo.init(MIXED, seed, n_initial=8, n_candidates=1024)
        for _ in range(budget):
            state, (config,) = bo.ask(state)
            state = bo.tell(state, [(config, mixed_branin(config))])
        best_config, best_value = bo.best(state)
        bo_regrets.append(best_value - OPTIMUM)
        right_category += best_config["optimizer"] == "sgd"
        U = np.asarray(jax.random.uniform(jax.random.fold_in(jax.random.key(seed), 7), (budget, MIXED.unit_dim)))
        random_regrets.append(min(mixed_branin(bo.decode(MIXED, x)) for x in bo.from_unit(MIXED, U)) - OPTIMUM)
    print(f"\nmixed Branin (4 categories), median regret at {budget}: GP+EI {np.median(bo_regrets):.3f}, "
          f"random {np.median(random_regrets):.3f}; GP+EI picked sgd in {right_category}/10")
    assert min(bo_regrets) >= -1e-4
    assert np.median(bo_regrets) < np.median(random_regrets)
    assert right_category >= 8
