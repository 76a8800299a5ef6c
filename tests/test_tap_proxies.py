"""Training-free baselines (nas.tapas.proxies) and the leave-one-dataset-out pipeline (experiments/tap_eval.py)."""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas.compile import ArchModule, init_variables
from nas.ir import Attrs, Node, cnn, mlp
from nas.tapas import proxies

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (12, 12, 1)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).standard_normal((32, *SHAPE)).astype(np.float32)


# ---------------------------------------------------------------------------- NASWOT
def test_naswot_finite_for_relu_cnn_and_mlp(batch):
    for arch in (cnn((8, 16), 10, input_shape=SHAPE, batchnorm=True), mlp((32, 32), 10, input_shape=SHAPE)):
        score = proxies.naswot_score(arch, batch, seed=0)
        assert math.isfinite(score), arch.name


def test_naswot_kernel_is_units_minus_hamming(batch):
    """K_H's diagonal is N_A (every code agrees with itself) and K_H is symmetric."""
    arch = mlp((16, 8), 10, input_shape=SHAPE)
    k = proxies.naswot_kernel(arch, batch[:8], seed=0)
    np.testing.assert_array_equal(np.diag(k), np.full(8, 16 + 8))
    np.testing.assert_array_equal(k, k.T)
    assert (k >= 0).all() and (k <= 24).all()


def test_naswot_higher_for_wider_network(batch):
    """Mean over 3 init seeds: 64-wide beats 4-wide on the same batch, by about B log(width ratio).

    Why: K_H's entries count agreeing units, so with W times more units K_H ~ W K_H(narrow)
    when codes agree in the same proportions, and log det gains B log W. Measured on this
    32-image batch (seeds 0-2): CNN widths (4, 8) vs (64, 128) 188-192 vs 279-280, a gap of
    90 = B log 16 (89) almost exactly; MLP 8-8 vs 256-256 -477..-473 and once -inf (singular:
    16 units cannot tell 32 inputs apart) vs 175-176. The margin asserted is a quarter of
    B log 16, well inside both gaps.
    """
    b = len(batch)
    pairs = [(cnn((4, 8), 10, input_shape=SHAPE), cnn((64, 128), 10, input_shape=SHAPE)),
             (mlp((8, 8), 10, input_shape=SHAPE), mlp((256, 256), 10, input_shape=SHAPE))]
    for narrow, wide in pairs:
        n = np.mean([proxies.naswot_score(narrow, batch, s) for s in range(3)])
        w = np.mean([proxies.naswot_score(wide, batch, s) for s in range(3)])
        assert w > n + 0.25 * b * math.log(16), (narrow.name, n, w)


def test_naswot_nan_with_reason_without_relu(batch):
    arch = mlp((16,), 10, input_shape=SHAPE, activation="tanh")
    assert math.isnan(proxies.naswot_score(arch, batch, seed=0))
    reason = proxies.naswot_undefined_reason(arch)
    assert reason and "no ReLU" in reason and arch.name in reason
    assert proxies.naswot_undefined_reason(mlp((16,), 10, input_shape=SHAPE)) is None


def test_keras_relu_layer_counts_as_relu_units(batch):
    """A ReLU node (Keras's layer) counts as Activation(relu) does; same init, same codes, same score."""
    arch = mlp((16,), 10, input_shape=SHAPE)
    swapped = arch.replace_nodes([Node(n.id, "ReLU", n.inputs, Attrs()) if n.op == "Activation" else n
                                  for n in arch.nodes])
    assert proxies.relu_nodes(swapped) == proxies.relu_nodes(arch) == ("act1",)
    assert proxies.naswot_score(swapped, batch, 0) == proxies.naswot_score(arch, batch, 0)


# ---------------------------------------------------------------------------- SynFlow
def test_synflow_matches_closed_form_of_a_one_hidden_layer_net():
    """R = sum_k |b2_k| + sum_jk |W2_jk| h_j with h_j = sum_i |W1_ij| + |b1_j| (all paths positive, ReLU
    is the identity), so sum theta dR/dtheta = 2 sum_jk |W2_jk| h_j + sum |b2|. Float64 both sides;
    relative tolerance 1e-9 covers summation order."""
    arch = mlp((7,), 3, input_shape=(5,))
    got = proxies.synflow_score(arch, (5,), seed=3)
    with jax.enable_x64(True):
        v = init_variables(ArchModule(arch=arch, dtype=jnp.float64), proxies.init_key(3), (5,))["params"]
        w1, b1 = np.abs(np.asarray(v["dense1"]["kernel"])), np.abs(np.asarray(v["dense1"]["bias"]))
        w2, b2 = np.abs(np.asarray(v["head"]["kernel"])), np.abs(np.asarray(v["head"]["bias"]))
    h = w1.sum(0) + b1
    expected = 2 * float((w2 * h[:, None]).sum()) + float(b2.sum())
    assert got == pytest.approx(expected, rel=1e-9)


def test_synflow_positive_finite_deterministic_and_data_free():
    """The score takes no batch (its input is ones), so it cannot depend on batch content;
    the same arch and seed give the same value; BatchNorm (inference mode) keeps it finite."""
    arch = cnn((8, 16), 10, input_shape=SHAPE, batchnorm=True)
    a = proxies.synflow_score(arch, SHAPE, seed=0)
    assert a > 0 and math.isfinite(a)
    assert proxies.synflow_score(arch, SHAPE, seed=0) == a


def test_synflow_grows_with_width():
    """Seed 0, measured: CNN (4, 8) 1.2e3 vs (32, 64) 1.5e4; MLP 8-8 3.2e3 vs 128-128 7.3e4."""
    for narrow, wide in [(cnn((4, 8), 10, input_shape=SHAPE), cnn((32, 64), 10, input_shape=SHAPE)),
                         (mlp((8, 8), 10, input_shape=SHAPE), mlp((128, 128), 10, input_shape=SHAPE))]:
        assert proxies.synflow_score(wide, SHAPE, 0) > 10 * proxies.synflow_score(narrow, SHAPE, 0), narrow.name


def _synflow_float32(arch, input_shape):
    """The same SynFlow sum in float32 (the module's default dtype), for comparison."""
    module = ArchModule(arch=arch)

    @jax.jit
    def score(key):
        params = jax.tree_util.tree_map(jnp.abs, init_variables(module, key, input_shape)["params"])
        grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, jnp.ones((1, *input_shape)))))(params)
        return sum(jnp.sum(g * p) for g, p in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(params)))

    return float(score(proxies.init_key(0)))


def test_synflow_float64_where_float32_overflows():
    """Fast, exact case: 15 Dense(512) layers with all-ones kernels on 16 inputs. Every path has
    weight 1, so R = 16 * 512**15 * 10 ~ 7e42 > float32's 3.4e38: float32 overflows, float64 not."""
    arch = mlp((512,) * 15, 10, input_shape=(16,), kernel_init="ones")
    arch = arch.replace_nodes([n.replace(attrs=n.attrs.replace(kernel_init="ones")) if n.id == "head" else n
                               for n in arch.nodes])
    score = proxies.synflow_score(arch, (16,), seed=0)
    # Every parameter's theta * dR/dtheta is R's share over the paths through it; each of the
    # 16 layers of kernels is crossed by every path once: the score is 16 R.
    assert score == pytest.approx(16 * 16 * 512.0 ** 15 * 10, rel=1e-12)
    assert not math.isfinite(_synflow_float32(arch, (16,)))


@pytest.mark.slow  # ~25 s: two compiles of a 30-layer program on the loaded 2-core machine
def test_synflow_needs_float64_for_deep_networks():
    """A 30-layer 512-wide ReLU MLP: R grows ~ (512 E|w|)^30 ~ 25^30 ~ 1e42, past float32's 3.4e38.
    float32 gives inf/nan, the float64 score is finite."""
    arch = mlp((512,) * 30, 10, input_shape=(16,))
    score = proxies.synflow_score(arch, (16,), seed=0)
    assert math.isfinite(score) and score > 3.4e38   # measured 6.0e45
    assert not math.isfinite(_synflow_float32(arch, (16,)))


def test_params_and_flops_scores():
    arch = mlp((16,), 10, input_shape=SHAPE)
    assert proxies.params_score(arch, SHAPE) == 144 * 16 + 16 + 16 * 10 + 10
    assert proxies.flops_score(arch, SHAPE) == float(arch.flops(SHAPE)) > 0


# ---------------------------------------------------------------------------- tap_eval plumbing
def _tap_eval():
    spec = importlib.util.spec_from_file_location("tap_eval_under_test", os.path.join(ROOT, "experiments", "tap_eval.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _prefix(full, k_nodes: int, num_classes: int):
    """The first `k_nodes` body nodes of an mlp (after Flatten) plus the fixed head `head`."""
    order = [n for n in full.topological_order() if n.op != "Input"]
    body = order[: 1 + k_nodes]  # flatten1 + k nodes
    nodes = [full.input_node, *body, Node("head", "Dense", (body[-1].id,), Attrs(units=num_classes))]
    return full.replace_nodes(nodes, outputs=("head",), name=full.name + f"-p{k_nodes}")


@pytest.mark.slow  # ~40 s on the loaded 2-core machine: 12 archs x (NASWOT + SynFlow) compiles, 6 TAP fits
def test_tap_eval_end_to_end_on_a_tiny_lde(tmp_path):
    from nas.lde import LDE, DatasetRecord, ExperimentRecord

    shape, classes = (4, 4, 1), 3
    rng = np.random.default_rng(0)
    path = str(tmp_path / "lde.sqlite")
    datasets = {"easy_a": 0.30, "easy_b": 0.32, "hard": 0.90}
    with LDE(path) as lde:
        for d, (name, dcn) in enumerate(datasets.items()):
            fp = f"{d:064x}"
            lde.add_dataset(DatasetRecord(fp, name, shape, classes, 100, 20))
            lde.set_dcn(fp, dcn, probe="test", seconds=0.0)
            rows = []
            for i, hidden in enumerate([(8,), (16, 8), (32, 16), (4,)]):
                full = mlp(hidden, classes, input_shape=shape, name=f"m{i}")
                peak = float(np.clip(dcn * (0.7 + 0.05 * i) + 0.02 * rng.standard_normal(), 0, 1))
                common = dict(dataset=fp, settings={"epochs": 1}, history=(), status="done", final_val=peak,
                              epochs=1, t_tr=0.1, num_params=full.num_params(shape), flops=full.flops(shape),
                              source={"kind": "lde_init"})
                if i < 2:  # incremental: a 2-node prefix (Dense, act) and the full network
                    pre = _prefix(full, 2, classes)
                    n = len([x for x in full.nodes if x.op not in ("Input", "Flatten")]) - 1
                    rows.append(ExperimentRecord(key=f"{name}-{i}-p1", arch=pre.to_json(),
                                                 arch_hash=pre.structural_hash(), peak_val=peak * 0.9,
                                                 lineage=f"{name}-{i}", prefix=1, **common))
                    rows.append(ExperimentRecord(key=f"{name}-{i}-full", arch=full.to_json(),
                                                 arch_hash=full.structural_hash(), peak_val=peak,
                                                 lineage=f"{name}-{i}", prefix=n, **common))
                else:
                    rows.append(ExperimentRecord(key=f"{name}-{i}", arch=full.to_json(),
                                                 arch_hash=full.structural_hash(), peak_val=peak, **common))
            lde.append(rows)
    md, png = tmp_path / "tap_eval.md", tmp_path / "tap_eval.png"
    results = _tap_eval().main(["--lde", path, "--tap-epochs", "2", "--batch", "8", "--no-builders",
                                "--cache", str(tmp_path / "cache.json"), "--out-md", str(md), "--out-png", str(png)])
    assert [r.name for r in results] == list(datasets)
    for r in results:
        assert len(r.networks) == 4 and len(r.actual) == 4
        assert r.tap["all"]["pred"] is not None and r.tap["all"]["pred"].shape == (4,)
        assert 0.0 <= r.tap["all"]["mae"] <= 1.0
        assert set(r.baselines) == {"params", "flops", "naswot", "synflow"}
        assert np.isfinite(r.baselines["synflow"]).all()
    by_name = {r.name: r for r in results}
    assert by_name["hard"].tap["tau"]["pred"] is None          # nothing within 0.05 of 0.90
    assert [n for n, _ in by_name["easy_a"].tap["tau"]["datasets"]] == ["easy_b"]
    text = md.read_text()
    assert "| **mean** |" in text and "| pooled" in text and "Datasets with no neighbour within tau = 0.05: hard." in text
    assert png.stat().st_size > 1000
    # The proxy cache makes a rerun score nothing again.
    assert len(__import__("json").loads((tmp_path / "cache.json").read_text())) == 12
