"""Deep-n-Cheap's Bayesian optimisation: ramp kernel, GP, EI, Sobol, init/ask/tell.

The ramp kernel reproduces the paper's worked example (Figure 2: 0.386) and is
positive semi-definite on random CNN and MLP configurations; expected
improvement has its textbook properties; GP + EI beats random search on Branin
and Hartmann-6 over 10 seeds; a search is reproducible from its seed and
recoverable from its trial history alone.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.search import bo
from nas.search.bo import optimizer
from nas.search.bo.gp import posterior

TOL = {np.dtype("float32"): 5e-4, np.dtype("float64"): 5e-7}  # tinygp's dtype-aware tolerances

CNN = bo.dnc_cnn_channels()  # 4-16 conv layers, c_1 in 16..64, c_{i+1} in c_i..min(2 c_i, 512)
MLP = bo.dnc_mlp_hidden()  # 0-2 hidden layers of 20-400 nodes
TRAINING = bo.dnc_training()  # lr, weight decay (log scale), batch size

_gram = jax.jit(lambda kernel, X: kernel(X, X))
_posterior = jax.jit(posterior)


# ---------------------------------------------------------------------------
# The ramp-distance kernel (section 2.2.1, Figure 2)

def test_figure_2_first_layer_distance_and_kernel_value():
    # u_1 = 64, l_1 = 16, omega_1 = 3, r_1 = 1: d_1 = 3 * (50 - 36) / 48 = 0.875, sigma_1 = 0.682.
    d1 = bo.ramp_distance(50.0, 36.0, 16.0, 64.0, 3.0, 1.0)
    assert float(d1) == pytest.approx(0.875)
    assert round(float(bo.squared_exponential(d1)), 3) == 0.682


def test_ramp_kernel_reproduces_figure_2():
    """x_i = [50, 80] and x_j = [36, 61, 107] with equal s: sigma = 0.386."""
    x_i, x_j = (50, 80), (36, 61, 107)
    (p,) = CNN.params
    lower, upper = p.slot_bounds()
    r = p.slot_powers()
    per_layer = [float(bo.squared_exponential(bo.ramp_distance(a, b, lower[i], upper[i], p.omega, r[i])))
                 for i, (a, b) in enumerate(zip(x_i, x_j))]
    per_layer.append(float(bo.squared_exponential(p.omega)))  # no 3rd layer in x_i: d_3 = omega_3
    assert [round(v, 3) for v in per_layer[:2]] == [0.682, 0.466]
    assert round(per_layer[2], 2) == 0.01
    assert round(sum(per_layer) / 3, 3) == 0.386  # s_1 = s_2 = s_3 = 1/3

    kernel = bo.ramp_kernel(CNN)
    with jax.enable_x64(True):
        a, b = bo.encode(CNN, {"out_channels": x_i}), bo.encode(CNN, {"out_channels": x_j})
        sigma = float(kernel.evaluate(a, b))
        print(f"\nFigure 2 ramp-kernel value: {sigma:.5f} (paper: 0.386)")
        assert round(sigma, 3) == 0.386
        assert sigma == pytest.approx(sum(per_layer) / 3, abs=TOL[np.dtype("float64")])
        assert float(kernel.evaluate(b, a)) == pytest.approx(sigma, abs=TOL[np.dtype("float64")])
        assert float(kernel.evaluate(a, a)) == pytest.approx(1.0)


def test_log_scale_and_summed_widths():
    kernel = bo.ramp_kernel(TRAINING)
    base = {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": 256}
    x = bo.encode(TRAINING, base)
    # lr 1e-3 vs 1e-4 is one decade of four: d = 3 / 4, equal weights over three hyperparameters.
    y = bo.encode(TRAINING, {**base, "lr": 1e-4})
    assert float(kernel.evaluate(x, y)) == pytest.approx((2 + math.exp(-0.5 * 0.75**2)) / 3, rel=1e-5)
    # Weight decay 0 counts as the lower bound 1e-6.
    assert np.array_equal(bo.encode(TRAINING, {**base, "weight_decay": 0.0}),
                          bo.encode(TRAINING, {**base, "weight_decay": 1e-6}))
    # MLPs compare total width: three 300-node layers are close to one 900-node layer.
    mlp = bo.dnc_mlp_hidden(layers=(0, 3), width=(20, 1000))
    k = bo.ramp_kernel(mlp)
    e = lambda widths: bo.encode(mlp, {"hidden_mlp": widths})
    assert float(k.evaluate(e((300, 300, 300)), e((900,)))) == pytest.approx(1.0)
    assert float(k.evaluate(e((300, 300, 300)), e((900,)))) > float(k.evaluate(e((300, 300, 300)), e((100, 100, 100))))


def _cnn_configs(min_n=2, max_n=20):
    layers = st.lists(st.integers(16, 512), min_size=1, max_size=16).map(lambda cs: tuple(sorted(cs)))
    return st.lists(layers.map(lambda cs: {"out_channels": cs}), min_size=min_n, max_size=max_n)


def _mlp_configs(min_n=2, max_n=20):
    widths = st.lists(st.integers(20, 400), min_size=0, max_size=2).map(tuple)
    return st.lists(widths.map(lambda ws: {"hidden_mlp": ws}), min_size=min_n, max_size=max_n)


def _assert_psd(space, configs):
    with jax.enable_x64(True):
        X = np.stack([bo.encode(space, c) for c in configs])
        K = np.asarray(_gram(bo.ramp_kernel(space), jnp.asarray(X)))
    assert np.allclose(K, K.T, atol=1e-12)
    assert np.allclose(np.diag(K), 1.0)
    assert K.min() >= 0.0 and K.max() <= 1.0 + 1e-12
    eigenvalues = np.linalg.eigvalsh(K)
    assert eigenvalues[0] >= -1e-6 * eigenvalues[-1], eigenvalues[0]


@settings(max_examples=40, deadline=None)
@given(_cnn_configs())
def test_ramp_gram_matrix_is_psd_on_random_cnns(configs):
    _assert_psd(bo.dnc_cnn_channels(layers=(1, 16)), configs)


@settings(max_examples=40, deadline=None)
@given(_mlp_configs())
def test_ramp_gram_matrix_is_psd_on_random_mlps(configs):
    _assert_psd(MLP, configs)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**31 - 1))
def test_ramp_gram_matrix_is_psd_on_sampled_joint_configurations(n, seed):
    space = bo.Space(CNN.params + MLP.params + TRAINING.params)
    U = np.random.default_rng(seed).random((n, space.unit_dim))
    _assert_psd(space, [bo.decode(space, x) for x in bo.from_unit(space, U)])


# ---------------------------------------------------------------------------
# The space: Deep-n-Cheap's sampling rules and a lossless encoding

@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_samples_follow_the_paper_rules_and_round_trip(seed):
    U = np.random.default_rng(seed).random((16, CNN.unit_dim + MLP.unit_dim + TRAINING.unit_dim))
    space = bo.Space(CNN.params + MLP.params + TRAINING.params)
    X = bo.from_unit(space, U)
    U_copy = U.copy()
    for x in X:
        config = bo.decode(space, x)
        channels = config["out_channels"]
        assert 4 <= len(channels) <= 16 and 16 <= channels[0] <= 64
        assert all(a <= b <= min(2 * a, 512) for a, b in zip(channels, channels[1:]))
        assert len(config["hidden_mlp"]) <= 2 and all(20 <= w <= 400 for w in config["hidden_mlp"])
        assert 1e-5 <= config["lr"] <= 1e-1 and 1e-6 <= config["weight_decay"] <= 1e-3
        assert isinstance(config["batch_size"], int) and 32 <= config["batch_size"] <= 512
        np.testing.assert_allclose(bo.encode(space, config), x, atol=1e-12)
        assert bo.canonical(space, json.loads(json.dumps(config))) == config
    assert np.array_equal(U, U_copy)  # inputs left unchanged


def test_bad_configurations_name_the_fault():
    with pytest.raises(bo.SpaceError, match="out_channels"):
        bo.encode(CNN, {"out_channels": tuple(range(1, 18))})  # 17 layers > 16
    with pytest.raises(bo.SpaceError, match="hidden_mlp"):
        bo.encode(MLP, {})
    with pytest.raises(bo.SpaceError, match="numeric"):
        bo.Space(CNN.params, kernel="matern52")


def test_sobol_design_is_seeded_and_resumable():
    full = bo.sobol_unit(5, 0, 16, seed=3)
    assert np.array_equal(np.concatenate([bo.sobol_unit(5, 0, 7, 3), bo.sobol_unit(5, 7, 9, 3)]), full)
    assert not np.array_equal(bo.sobol_unit(5, 0, 16, seed=4), full)
    assert full.min() >= 0 and full.max() < 1


# ---------------------------------------------------------------------------
# Expected improvement (minimisation)

@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_expected_improvement_properties(dtype):
    with jax.enable_x64(True):
        tol = TOL[np.dtype(dtype)]
        ei = jax.jit(bo.expected_improvement)
        # Zero where there is no uncertainty and no improvement; the plain improvement otherwise.
        zero = ei(jnp.array([1.0, 2.0, 0.5], dtype), jnp.zeros(3, dtype), 1.0)
        assert np.allclose(zero, [0.0, 0.0, 0.5], atol=tol) and np.all(np.isfinite(zero))
        # Increasing in sigma at a fixed mean, above and below the best (below it, float32
        # saturates at the plain improvement for small sigma, so there only non-decreasing).
        sigmas = jnp.linspace(0.0, 3.0, 31, dtype=dtype)
        for mean in (0.5, 1.0, 1.5):
            values = np.asarray(ei(jnp.full(31, mean, dtype), sigmas, 1.0))
            assert np.all(np.diff(values) >= 0) and values[-1] > values[0]
            if mean >= 1.0:
                assert np.all(np.diff(values) > 0)
        # Closed forms: best - mean = 1, sigma = 1 gives Phi(1) + phi(1); mean = best gives sigma / sqrt(2 pi).
        closed = 0.5 * (1 + math.erf(1 / math.sqrt(2))) + math.exp(-0.5) / math.sqrt(2 * math.pi)
        assert float(ei(jnp.asarray(0.0, dtype), jnp.asarray(1.0, dtype), 1.0)) == pytest.approx(closed, abs=tol)
        assert float(ei(jnp.asarray(1.0, dtype), jnp.asarray(2.0, dtype), 1.0)) == pytest.approx(
            2 / math.sqrt(2 * math.pi), abs=tol)
        assert closed == pytest.approx(1.0833154705876864)


# ---------------------------------------------------------------------------
# The GP

def test_gp_interpolates_and_padding_changes_nothing():
    space = bo.box({"x": (0.0, 1.0)})
    kernel = optimizer._kernel_at(optimizer._base_kernel(space), 1.0, 0.3)
    with jax.enable_x64(True):
        X = jnp.array([[0.1], [0.4], [0.9]])
        z = jnp.array([1.0, -1.0, 0.5])
        mask = jnp.ones(3, bool)
        mean, var = _posterior(kernel, X, z, mask, 1e-8, X)
        np.testing.assert_allclose(mean, z, atol=1e-5)
        assert np.all(var < 1e-5)
        # The same data padded to 16 rows (padding copies row 0 with a garbage value).
        Xp = jnp.concatenate([X, jnp.repeat(X[:1], 13, axis=0)])
        zp = jnp.concatenate([z, jnp.full(13, 7.0)])
        maskp = jnp.arange(16) < 3
        X_test = jnp.linspace(0, 1, 11)[:, None]
        m1, v1 = _posterior(kernel, X, z, mask, 1e-4, X_test)
        m2, v2 = _posterior(kernel, Xp, zp, maskp, 1e-4, X_test)
        np.testing.assert_allclose(m1, m2, atol=1e-6)
        np.testing.assert_allclose(v1, v2, atol=1e-6)


# ---------------------------------------------------------------------------
# GP + EI against random search (Branin, Hartmann-6)

def branin(c):
    x1, x2 = c["x1"], c["x2"]
    b, cc, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
    return (x2 - b * x1**2 + cc * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(c):
    x = np.array([c[f"x{i}"] for i in range(6)])
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))


PROBLEMS = {
    "branin": (bo.box({"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}), branin, 0.397887),
    "hartmann6": (bo.box({f"x{i}": (0.0, 1.0) for i in range(6)}), hartmann6, -3.32237),
}


def _bo_regret(space, f, optimum, seed, budget=30):
    state = bo.init(space, seed)
    for _ in range(budget):
        state, (config,) = bo.ask(state)
        state = bo.tell(state, [(config, f(config))])
    return bo.best(state)[1] - optimum


def _random_regret(space, f, optimum, seed, budget=30):
    key = jax.random.fold_in(jax.random.key(seed), 12345)
    U = np.asarray(jax.random.uniform(key, (budget, space.unit_dim)))
    return min(f(bo.decode(space, x)) for x in bo.from_unit(space, U)) - optimum


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_gp_ei_beats_random_search_over_ten_seeds(name):
    space, f, optimum = PROBLEMS[name]
    bo_regrets = [_bo_regret(space, f, optimum, seed) for seed in range(10)]
    random_regrets = [_random_regret(space, f, optimum, seed) for seed in range(10)]
    bo_median, random_median = np.median(bo_regrets), np.median(random_regrets)
    print(f"\n{name}: median simple regret at 30 evaluations over 10 seeds: "
          f"GP+EI {bo_median:.4f}, random {random_median:.4f}")
    assert min(bo_regrets) >= -1e-4 and min(random_regrets) >= -1e-4  # the optima are right
    assert bo_median < random_median


# ---------------------------------------------------------------------------
# init / ask / tell: determinism, recovery, failures, batches

def _run(space, f, seed, steps, **settings):
    state = bo.init(space, seed, **settings)
    proposals = []
    for _ in range(steps):
        state, (config,) = bo.ask(state)
        proposals.append(config)
        state = bo.tell(state, [(config, f(config))])
    return state, proposals


def _cnn_objective(config):
    """A cheap stand-in for f(x) = log(f_p + w_c f_c): prefers ~8 layers of ~100 channels."""
    channels = np.array(config["out_channels"], float)
    return float(np.log(1 + abs(len(channels) - 8) + np.mean(np.abs(np.log(channels / 100)))))


@pytest.mark.parametrize("space, f", [(PROBLEMS["branin"][0], branin), (CNN, _cnn_objective)],
                         ids=["branin-matern52", "cnn-ramp"])
def test_same_seed_same_proposals_and_recover_matches_live(space, f):
    live, proposals = _run(space, f, seed=5, steps=18, n_initial=10, n_candidates=256)
    again, proposals_again = _run(space, f, seed=5, steps=18, n_initial=10, n_candidates=256)
    assert proposals == proposals_again and live == again
    _, other = _run(space, f, seed=6, steps=3, n_initial=10, n_candidates=256)
    assert other != proposals[:3]

    recovered = bo.recover(space, live.history, 5, n_initial=10, n_candidates=256)
    assert recovered == live
    _, (next_live,) = bo.ask(live)
    _, (next_recovered,) = bo.ask(recovered)
    assert next_recovered == next_live
    # Also through a JSON round trip, as a trial store would keep it.
    restored = bo.from_dict(json.loads(json.dumps(bo.to_dict(live))))
    assert restored == live
    assert bo.ask(restored)[1] == [next_live]


def test_cnn_search_proposes_valid_architectures():
    state, proposals = _run(CNN, _cnn_objective, seed=0, steps=20, n_initial=10, n_candidates=256)
    for config in proposals:
        channels = config["out_channels"]
        assert 4 <= len(channels) <= 16 and 16 <= channels[0] <= 64
        assert all(a <= b <= min(2 * a, 512) for a, b in zip(channels, channels[1:]))
    assert bo.best(state)[1] == min(v for _, v in state.history)


def test_failed_trials_count_as_the_worst_seen_or_are_skipped():
    space, f, _ = PROBLEMS["branin"]
    state = bo.init(space, 0, n_initial=4, n_candidates=64)
    state, configs = bo.ask(state, 4)
    assert len(state.pending) == 4
    state = bo.tell(state, [(configs[0], float("nan")), (configs[1], float("inf"))])
    assert bo.best(state) is None
    X, y = optimizer._observations(state)
    assert len(y) == 0  # nothing finite yet: failures are skipped
    state = bo.tell(state, [(configs[2], 3.0), (configs[3], 5.0)])
    X, y = optimizer._observations(state)
    assert y.tolist() == [5.0, 5.0, 3.0, 5.0]  # failures become the worst finite value
    assert bo.best(state) == (configs[2], 3.0) and state.pending == ()
    state, (config,) = bo.ask(state)  # the GP step runs on penalised data
    assert -5 <= config["x1"] <= 10 and 0 <= config["x2"] <= 15


def test_batch_ask_spreads_out_and_is_traced_once_per_bucket():
    space, f, _ = PROBLEMS["hartmann6"]
    state, _ = _run(space, f, seed=1, steps=15, n_initial=15, n_candidates=512)
    state, batch = bo.ask(state, 4)  # 15 observations + up to 3 pending fantasies
    assert len({tuple(sorted(c.items())) for c in batch}) == 4
    X = np.stack([bo.encode(space, c) for c in batch])
    assert np.min([np.linalg.norm(a - b) for i, a in enumerate(X) for b in X[i + 1:]]) > 1e-3
    state = bo.tell(state, [(c, f(c)) for c in batch])
    before = optimizer._acquire._cache_size()
    for _ in range(8):  # 19 .. 26 observations: the 32-row bucket the batch already traced
        state, (c,) = bo.ask(state)
        state = bo.tell(state, [(c, f(c))])
    assert optimizer._acquire._cache_size() == before
