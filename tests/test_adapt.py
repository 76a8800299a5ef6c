"""Manas's adaptation system (section 4.4-4.5): mined models and optimizers made fit for new data.

Model adaptation is checked on hand-built Keras-style models (a 224x224
VGG-like net on 28x28 data, an MNIST net on 224x224 data, 'valid' convs that
no longer fit) and over random IRs; the translated optimizers are checked
step by step against Keras 2's update rules written out by hand, on a small
quadratic in float64, to 1e-6.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.compile import init_variables, to_flax
from nas.ir import Arch, Attrs, InvalidArchError, Node
from nas.mining.adapt import ABLATION_ARMS, DROPOUT_RULES, AdaptError, adapt, apply_manas_repairs, dropout_variant
from nas.mining.optimizer_translation import (
    KERAS_DEFAULTS, KERAS_OPTIMIZERS, OptimizerTranslationError, parse_keras_optimizer, to_optax, to_train_config,
)
from nas.train.config import OptimizerConfig, ScheduleConfig
from nas.train.optim import make_optimizer
from tests.strategies import archs
from tests.arch_helpers import chain as _chain

TOL64 = 1e-6


# ====================================================================== helpers
def _vgg_like(blocks=5, shape=(224, 224, 3), classes=1000) -> Arch:
    """(conv-relu-maxpool 'valid') x blocks, flatten, dense-relu-dropout, dense-softmax."""
    nodes = [("in", "Input", {"shape": list(shape)})]
    for b in range(blocks):
        nodes += [(f"conv{b}", "Conv2D", {"filters": 8, "kernel_size": 3}), (f"relu{b}", "Activation", {"fn": "relu"}),
                  (f"pool{b}", "MaxPool2D", {"pool_size": 2})]
    nodes += [("flatten", "Flatten", {}), ("fc", "Dense", {"units": 64}), ("fc_relu", "Activation", {"fn": "relu"}),
              ("drop", "Dropout", {"rate": 0.5}), ("out", "Dense", {"units": classes}),
              ("softmax", "Activation", {"fn": "softmax"})]
    return _chain(*nodes, name="vgg-like")


def _mnist_cnn(activation="relu") -> Arch:
    """Keras's MNIST example: conv32-conv64 'valid', maxpool, dropout, flatten, dense128, dense10-softmax."""
    return _chain(("in", "Input", {"shape": [28, 28, 1]}),
                  ("conv1", "Conv2D", {"filters": 32, "kernel_size": 3, "padding": "valid"}),
                  ("act1", "Activation", {"fn": activation}),
                  ("conv2", "Conv2D", {"filters": 64, "kernel_size": 3, "padding": "valid"}),
                  ("act2", "Activation", {"fn": activation}),
                  ("pool", "MaxPool2D", {"pool_size": 2}), ("drop1", "Dropout", {"rate": 0.25}),
                  ("flatten", "Flatten", {}), ("fc", "Dense", {"units": 128}), ("fc_act", "Activation", {"fn": "relu"}),
                  ("drop2", "Dropout", {"rate": 0.5}), ("out", "Dense", {"units": 10}),
                  ("softmax", "Activation", {"fn": "softmax"}), name="mnist-cnn")


def _kinds(changes) -> list[str]:
    return [c["adapt"] for c in changes]


# ====================================================================== model adaptation
def test_a_224_model_on_28x28_data_loses_the_pooling_that_no_longer_fits():
    mined = _vgg_like()
    before = mined.to_json()
    adapted, changes = adapt(mined, (28, 28, 1), 10)
    assert mined.to_json() == before  # the mined model is left alone
    assert adapted.input_node.attrs["shape"] == (28, 28, 1)
    assert adapted.output_shape() == (10,)
    head = adapted.node(adapted.output_id)
    assert (head.id, head.op, head.attrs["units"]) == ("out", "Dense", 10)  # logits: the softmax is gone
    assert "softmax" not in adapted and "drop" in adapted  # only what follows the classifier goes
    # 28 -> 14 -> 7 -> 3 -> 1: the fifth 2x2 'valid' pooling would meet a 1x1 map
    assert "pool4" not in adapted and all(f"pool{b}" in adapted for b in range(4))
    assert _kinds(changes) == ["input_shape", "remove_output_layer", "head_units", "remove_pooling"]
    assert adapted.shapes()["conv4"] == (1, 1, 8)


def test_an_mnist_model_on_224x224_data_gets_global_average_pooling():
    adapted, changes = adapt(_mnist_cnn(), (224, 224, 3), 2)
    assert adapted.node("flatten").op == "GlobalAvgPool"  # 9216 -> 394272 features otherwise
    assert adapted.output_shape() == (2,)
    assert adapted.shapes()["fc"] == (128,)
    assert adapted.num_params() < _mnist_cnn().num_params()
    assert "flatten_to_gap" in _kinds(changes)


def test_a_small_change_of_input_size_keeps_the_flatten():
    adapted, changes = adapt(_mnist_cnn(), (32, 32, 1), 10)
    assert adapted.node("flatten").op == "Flatten"  # 12x12x64 -> 14x14x64 is 1.4x, under the 4x limit
    assert _kinds(changes) == ["input_shape", "remove_output_layer"]
    strict, _ = adapt(_mnist_cnn(), (32, 32, 1), 10, flatten_growth=1.2)
    assert strict.node("flatten").op == "GlobalAvgPool"


def test_valid_convs_that_no_longer_fit_get_same_padding():
    mined = _chain(("in", "Input", {"shape": [64, 64, 3]}),
                   ("c1", "Conv2D", {"filters": 4, "kernel_size": 5, "padding": "valid"}),
                   ("p1", "MaxPool2D", {"pool_size": 2, "padding": "same"}),
                   ("c2", "Conv2D", {"filters": 4, "kernel_size": 5, "padding": "valid", "strides": 2}),
                   ("gap", "GlobalAvgPool", {}), ("out", "Dense", {"units": 5}))
    adapted, changes = adapt(mined, (6, 6, 1), 5)
    # 6 -> 2 (c1 'valid') -> 1 (p1 'same') -> c2's 5x5 'valid' window no longer fits
    assert adapted.node("c2").attrs["padding"] == "same" and adapted.node("c2").attrs["strides"] == 2
    assert adapted.node("c1").attrs["padding"] == "valid"
    assert _kinds(changes) == ["input_shape", "same_padding"]
    assert adapted.shapes()["c2"] == (1, 1, 4)


def test_other_input_channels_get_a_1x1_adapter_only_when_the_model_needs_it():
    residual = (Node("in", "Input", (), Attrs(shape=(16, 16, 3))),
                Node("c", "Conv2D", ("in",), Attrs(filters=3, kernel_size=3)),
                Node("add", "Add", ("in", "c")),
                Node("gap", "GlobalAvgPool", ("add",)), Node("out", "Dense", ("gap",), Attrs(units=4)))
    adapted, changes = adapt(Arch(residual, ("in",), ("out",)), (16, 16, 1), 4)
    adapter = adapted.node("channel_adapter")
    assert (adapter.op, adapter.inputs, adapter.attrs["filters"], adapter.attrs["kernel_size"]) == (
        "Conv2D", ("in",), 3, 1)
    assert set(adapted.node("add").inputs) == {"channel_adapter", "c"}
    assert _kinds(changes) == ["input_shape", "channel_adapter"]
    plain, changes = adapt(_mnist_cnn(), (28, 28, 3), 10)  # the first conv just reads 3 channels
    assert "channel_adapter" not in plain and plain.shapes()["conv1"] == (26, 26, 32)


def test_adaptation_is_idempotent_and_a_fitting_model_is_unchanged():
    once, _ = adapt(_vgg_like(), (28, 28, 1), 10)
    twice, changes = adapt(once, (28, 28, 1), 10)
    assert changes == [] and twice == once


def test_regression_data_gets_a_single_linear_output():
    adapted, _ = adapt(_mnist_cnn(), (28, 28, 1), 1)
    assert adapted.output_shape() == (1,) and adapted.node(adapted.output_id).op == "Dense"


def test_the_adapted_model_compiles_and_runs():
    adapted, _ = adapt(_vgg_like(blocks=3), (8, 8, 1), 10)
    module = to_flax(adapted)
    variables = init_variables(module, jax.random.key(0), (8, 8, 1))
    logits = module.apply(variables, jnp.ones((2, 8, 8, 1)), train=False)
    assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))


def test_what_cannot_be_adapted_is_named():
    no_classifier = _chain(("in", "Input", {"shape": [8, 8, 1]}), ("c", "Conv2D", {"filters": 3, "kernel_size": 3}),
                           ("gap", "GlobalAvgPool", {}), ("act", "Activation", {"fn": "softmax"}))
    with pytest.raises(AdaptError, match="'gap'.*Dense classifier"):
        adapt(no_classifier, (8, 8, 1), 10)
    with pytest.raises(AdaptError, match="'conv0'.*new input shape \\[64\\]"):
        adapt(_vgg_like(), (64,), 10)  # flat features cannot feed a Conv2D
    nodes = (Node("in", "Input", (), Attrs(shape=(8, 8, 1))),
             Node("c", "Conv2D", ("in",), Attrs(filters=2, kernel_size=3)),
             Node("gap", "GlobalAvgPool", ("c",)),
             Node("a", "Dense", ("gap",), Attrs(units=2)), Node("b", "Dense", ("gap",), Attrs(units=3)))
    with pytest.raises(AdaptError, match="single-output"):
        adapt(Arch(nodes, ("in",), ("a", "b")), (8, 8, 1), 10)
    assert issubclass(AdaptError, InvalidArchError)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archs(families=("image",)), st.integers(1, 40), st.integers(1, 40), st.integers(1, 3), st.integers(1, 12))
def test_adaptation_gives_a_valid_model_of_the_right_shape_over_random_irs(pair, height, width, channels, classes):
    mined, _ = pair
    before = mined.to_json()
    try:
        adapted, changes = adapt(mined, (height, width, channels), classes)
    except AdaptError as exc:
        # Only merges of branches that were neutralised differently are beyond the rules.
        assert exc.op in ("Add", "Concat"), str(exc)
        return
    assert mined.to_json() == before
    adapted.validate((height, width, channels))
    assert adapted.output_shape() == (classes,)
    assert adapted.node(adapted.output_id).op == "Dense"
    assert all(c["node"] in mined or c["adapt"] == "channel_adapter" for c in changes)


# ====================================================================== transformations
def _tanh_cnn() -> Arch:
    """Manas Figure 5a: (conv-tanh-pool) x 2, flatten, linear-relu, linear (adapted: no softmax)."""
    return _chain(("in", "Input", {"shape": [8, 8, 3]}),
                  ("conv1", "Conv2D", {"filters": 8, "kernel_size": 3}), ("tanh1", "Activation", {"fn": "tanh"}),
                  ("pool1", "MaxPool2D", {"pool_size": 2}),
                  ("conv2", "Conv2D", {"filters": 8, "kernel_size": 3}), ("tanh2", "Activation", {"fn": "tanh"}),
                  ("pool2", "MaxPool2D", {"pool_size": 2}), ("flatten", "Flatten", {}),
                  ("fc", "Dense", {"units": 32}), ("relu", "Activation", {"fn": "relu"}),
                  ("out", "Dense", {"units": 2}))


def test_manas_repairs_transform_figure_5():
    mined = _tanh_cnn()
    before = mined.to_json()
    repaired, changes = apply_manas_repairs(mined)
    assert mined.to_json() == before
    assert [c["repair"] for c in changes] == ["insert_batchnorm", "insert_batchnorm", "flatten_to_gap",
                                              "relu_activations", "relu_activations"]
    order = [n.op for n in repaired.topological_order()]
    assert order == ["Input", "Conv2D", "BatchNorm", "Activation", "MaxPool2D", "Conv2D", "BatchNorm", "Activation",
                     "MaxPool2D", "GlobalAvgPool", "Dense", "Activation", "Dense"]
    assert {repaired.node(i).attrs["fn"] for i in ("tanh1", "tanh2")} == {"relu"}
    assert not any(n.op == "Dropout" for n in repaired.nodes)  # dropout is the search's call


def test_inserted_batchnorm_takes_the_requested_momentum():
    mined = _tanh_cnn()
    keras_default = [n for n in apply_manas_repairs(mined)[0].nodes if n.op == "BatchNorm"]
    assert keras_default and all(n.normalized_attrs()["momentum"] == 0.99 for n in keras_default)
    fast = [n for n in apply_manas_repairs(mined, bn_momentum=0.9)[0].nodes if n.op == "BatchNorm"]
    assert len(fast) == len(keras_default) and all(n.normalized_attrs()["momentum"] == 0.9 for n in fast)


def test_ablation_arms_and_repair_selection():
    mined = _tanh_cnn()
    original, changes = apply_manas_repairs(mined, ABLATION_ARMS["original"])
    assert original == mined and changes == []
    transformed, _ = apply_manas_repairs(mined, ABLATION_ARMS["transformed"])
    assert transformed == apply_manas_repairs(mined)[0]
    dropped, changes = apply_manas_repairs(mined, ("add_dropout",))
    assert {c["rate"] for c in changes} == {0.25, 0.5}
    with pytest.raises(ValueError, match="unknown repair"):
        apply_manas_repairs(mined, ("insert_bn",))


def test_dropout_rules_add_the_papers_rates_where_they_say():
    model, _ = apply_manas_repairs(_tanh_cnn())
    before = model.to_json()
    rates = {}
    for rule in DROPOUT_RULES:
        variant, changes = dropout_variant(model, rule)
        dropped = [n for n in variant.nodes if n.op == "Dropout"]
        rates[rule] = sorted(n.attrs["rate"] for n in dropped)
        assert [c["node"] for c in changes] == [n.id for n in dropped]
        for n in dropped:  # conv blocks: after the pooling; the dense head: after the hidden activation
            source = variant.node(n.inputs[0])
            assert source.op == ("MaxPool2D" if n.attrs["rate"] == 0.25 else "Activation")
    assert model.to_json() == before
    assert rates == {"none": [], "conv": [0.25, 0.25], "dense": [0.5], "both": [0.25, 0.25, 0.5]}
    with pytest.raises(ValueError, match="unknown dropout rule"):
        dropout_variant(model, "everywhere")
    with pytest.raises(ValueError, match="conv_rate"):
        dropout_variant(model, "conv", conv_rate=1.0)


def test_a_dropout_variant_computes_the_same_function_at_inference():
    model, _ = apply_manas_repairs(_tanh_cnn())
    variables = init_variables(to_flax(model), jax.random.key(0), (8, 8, 3))
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    reference = to_flax(model).apply(variables, x, train=False)
    variant, _ = dropout_variant(model, "both")
    np.testing.assert_allclose(to_flax(variant).apply(variables, x, train=False), reference, atol=1e-6)


# ====================================================================== optimizers: Keras 2 by hand
def _quadratic():
    """f(p) = 1/2 sum a (p - c)^2 over a two-leaf pytree; grad = a (p - c)."""
    a = {"w": np.array([1.0, 4.0, 0.25]), "b": np.array([[2.0, 0.5]])}
    c = {"w": np.array([1.0, -2.0, 3.0]), "b": np.array([[-1.0, 0.5]])}
    p0 = {"w": np.array([0.3, 0.1, -0.7]), "b": np.array([[0.9, -0.4]])}
    return p0, (lambda p: {k: a[k] * (p[k] - c[k]) for k in p})


def _keras_reference(name: str, h: dict, steps: int) -> dict:
    """Keras 2's update rules (keras/optimizers.py, 2.2.x), one leaf at a time, in NumPy float64."""
    p0, grad = _quadratic()
    params = {k: v.copy() for k, v in p0.items()}
    state = {k: {} for k in params}
    for it in range(steps):
        t = it + 1
        lr = h["learning_rate"] / (1.0 + h.get("decay", 0.0) * it)
        grads = grad(params)
        for k in params:
            p, g, s = params[k], grads[k], state[k]
            zeros = np.zeros_like(p)
            if name == "sgd":
                v = h["momentum"] * s.get("v", zeros) - lr * g
                s["v"] = v
                p = p + h["momentum"] * v - lr * g if h["nesterov"] else p + v
            elif name == "adam":
                m = h["beta_1"] * s.get("m", zeros) + (1 - h["beta_1"]) * g
                v = h["beta_2"] * s.get("v", zeros) + (1 - h["beta_2"]) * g * g
                lr_t = lr * math.sqrt(1 - h["beta_2"] ** t) / (1 - h["beta_1"] ** t)
                if h["amsgrad"]:
                    s["vhat"] = np.maximum(s.get("vhat", zeros), v)
                    p = p - lr_t * m / (np.sqrt(s["vhat"]) + h["epsilon"])
                else:
                    p = p - lr_t * m / (np.sqrt(v) + h["epsilon"])
                s["m"], s["v"] = m, v
            elif name == "rmsprop" and not h.get("momentum"):
                a = h["rho"] * s.get("a", zeros) + (1 - h["rho"]) * g * g
                p = p - lr * g / (np.sqrt(a) + h["epsilon"])
                s["a"] = a
            elif name == "rmsprop":  # tf.keras's momentum form
                a = h["rho"] * s.get("a", zeros) + (1 - h["rho"]) * g * g
                mom = h["momentum"] * s.get("mom", zeros) + lr * g / np.sqrt(a + h["epsilon"])
                p = p - mom
                s["a"], s["mom"] = a, mom
            elif name == "adagrad":
                a = s.get("a", zeros + h["initial_accumulator_value"]) + g * g
                p = p - lr * g / (np.sqrt(a) + h["epsilon"])
                s["a"] = a
            elif name == "adadelta":
                a = h["rho"] * s.get("a", zeros) + (1 - h["rho"]) * g * g
                d_a = s.get("d_a", zeros)
                update = g * np.sqrt(d_a + h["epsilon"]) / np.sqrt(a + h["epsilon"])
                p = p - lr * update
                s["a"], s["d_a"] = a, h["rho"] * d_a + (1 - h["rho"]) * update * update
            elif name == "adamax":
                m = h["beta_1"] * s.get("m", zeros) + (1 - h["beta_1"]) * g
                u = np.maximum(h["beta_2"] * s.get("u", zeros), np.abs(g))
                p = p - lr / (1 - h["beta_1"] ** t) * m / (u + h["epsilon"])
                s["m"], s["u"] = m, u
            elif name == "nadam":
                b1, b2 = h["beta_1"], h["beta_2"]
                cache_t = b1 * (1 - 0.5 * 0.96 ** (t * h["schedule_decay"]))
                cache_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * h["schedule_decay"]))
                schedule = s.get("schedule", 1.0) * cache_t
                schedule_next = schedule * cache_next
                m = b1 * s.get("m", zeros) + (1 - b1) * g
                v = b2 * s.get("v", zeros) + (1 - b2) * g * g
                m_bar = (1 - cache_t) * g / (1 - schedule) + cache_next * m / (1 - schedule_next)
                p = p - lr * m_bar / (np.sqrt(v / (1 - b2 ** t)) + h["epsilon"])
                s["m"], s["v"], s["schedule"] = m, v, schedule
            params[k] = p
    return params


def _run(tx: optax.GradientTransformation, steps: int) -> dict:
    p0, grad = _quadratic()
    with jax.enable_x64(True):
        params = jax.tree.map(jnp.asarray, p0)
        state = tx.init(params)
        for _ in range(steps):
            updates, state = tx.update(jax.tree.map(jnp.asarray, grad(params)), state, params)
            params = optax.apply_updates(params, updates)
        return jax.tree.map(np.asarray, params)


KERAS_CASES = [
    {"type": "SGD", "lr": 0.05},
    {"type": "SGD", "lr": 0.05, "decay": 0.1},
    {"type": "SGD", "learning_rate": 0.05, "momentum": 0.9, "decay": 0.05},
    {"type": "SGD", "lr": 0.01, "momentum": 0.9, "decay": 1e-2, "nesterov": True},
    {"type": "Adam"},
    {"type": "Adam", "lr": 0.05, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3, "decay": 0.01},
    {"type": "Adam", "lr": 0.05, "amsgrad": True, "decay": 0.01, "epsilon": None},
    {"type": "RMSprop", "lr": 0.01},
    {"type": "RMSprop", "lr": 0.01, "rho": 0.8, "epsilon": 1e-4, "decay": 0.05},
    {"type": "RMSprop", "lr": 0.01, "momentum": 0.5, "decay": 0.05},
    {"type": "Adagrad", "lr": 0.1, "decay": 0.01},
    {"type": "Adadelta", "rho": 0.9},
    {"type": "Adamax", "decay": 0.01},
    {"type": "Nadam", "lr": 0.01},
]


@pytest.mark.parametrize("mined", KERAS_CASES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_translated_optimizer_takes_kerass_steps(mined):
    steps = 25
    parsed = parse_keras_optimizer(mined)
    expected = _keras_reference(parsed.name, dict(parsed.arguments), steps)
    got = _run(to_optax(mined), steps)
    moved = max(np.abs(expected[k] - _quadratic()[0][k]).max() for k in expected)
    assert moved > 1e-3  # the comparison is not between two parameter sets that stayed put
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=TOL64)


@pytest.mark.parametrize("name", sorted(KERAS_DEFAULTS))
def test_translated_optimizers_jit_in_float32(name):
    tx = to_optax({"type": name, "decay": 0.01, "clipnorm": 1.0})
    params = {"w": jnp.ones((3,), jnp.float32)}
    state = tx.init(params)
    updates, state = jax.jit(tx.update)({"w": jnp.full((3,), 0.5, jnp.float32)}, state, params)
    assert updates["w"].dtype == jnp.float32 and bool(jnp.all(updates["w"] < 0))


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_the_learning_rate_can_live_in_the_state_for_populations(name):
    # As nas.train.optim does: inject the learning rate, keep the rest static.
    arguments = dict(KERAS_DEFAULTS[name], momentum=0.5, decay=0.01) if name != "adam" else dict(
        KERAS_DEFAULTS[name], decay=0.01)
    build = KERAS_OPTIMIZERS[name]
    injected = optax.inject_hyperparams(build, static_args=tuple(k for k in arguments if k != "learning_rate"))
    steps = 10
    got = _run(injected(**arguments), steps)
    expected = _run(build(**arguments), steps)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=TOL64)


def test_missing_arguments_take_kerass_defaults():
    parsed = parse_keras_optimizer({"type": "sgd"})
    assert dict(parsed.arguments) == dict(KERAS_DEFAULTS["sgd"], clipnorm=None, clipvalue=None)
    assert parse_keras_optimizer({"type": "Adam", "lr": 1})["learning_rate"] == 1.0
    assert parse_keras_optimizer(None) is None


def test_what_the_miner_could_not_resolve_takes_the_defaults():
    parsed = parse_keras_optimizer({"type": "SGD", "learning_rate": {"unresolved": "args.lr"}, "momentum": 0.9})
    assert parsed["learning_rate"] == 0.01 and parsed["momentum"] == 0.9 and parsed.unresolved == ("learning_rate",)
    assert parse_keras_optimizer({"unresolved": "make_optimizer()"}) is None
    translated = to_train_config({"unresolved": "make_optimizer()"})
    assert translated.optimizer == OptimizerConfig() and "could not resolve" in translated.differences[0]
    sgd = to_train_config({"type": "SGD", "lr": {"unresolved": "args.lr"}})
    assert sgd.optimizer.learning_rate == 0.01 and "['learning_rate'] take Keras's defaults" in sgd.differences[0]


def test_clipping_is_applied_before_the_optimizer():
    steps = 5
    clipped = _run(to_optax({"type": "SGD", "lr": 0.1, "clipnorm": 0.5}), steps)
    by_hand = _run(optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1)), steps)
    for k in clipped:
        np.testing.assert_allclose(clipped[k], by_hand[k], rtol=0, atol=TOL64)
    valued = _run(to_optax({"type": "SGD", "lr": 0.1, "clipvalue": 0.2}), 1)
    p0, grad = _quadratic()
    for k in valued:
        np.testing.assert_allclose(valued[k], p0[k] - 0.1 * np.clip(grad(p0)[k], -0.2, 0.2), atol=TOL64)


@pytest.mark.parametrize("mined, message", [
    ({"type": "LBFGS"}, "unknown optimizer type 'LBFGS'"),
    ({"type": "SGD", "momentun": 0.9}, "unknown argument 'momentun'"),
    ({"type": "SGD", "lr": 0.1, "learning_rate": 0.2}, "both 'lr' and 'learning_rate'"),
    ({"type": "Adam", "lr": "learning_rate"}, "'lr' must be a non-negative number"),
    ({"type": "Adam", "amsgrad": 1}, "'amsgrad' must be True or False"),
    ({"lr": 0.1}, "with a 'type'"),
])
def test_bad_mined_optimizers_are_named(mined, message):
    with pytest.raises(OptimizerTranslationError, match=message):
        parse_keras_optimizer(mined)


def test_no_mined_optimizer_means_the_projects_default():
    steps = 5
    default = _run(make_optimizer(OptimizerConfig(), ScheduleConfig(), 1), steps)
    translated = _run(to_optax(None), steps)
    for k in default:
        np.testing.assert_allclose(translated[k], default[k], rtol=0, atol=TOL64)
    assert to_train_config(None).optimizer == OptimizerConfig() and to_train_config(None).exact


# ====================================================================== optimizers: as trainer configs
@pytest.mark.parametrize("mined", [
    {"type": "SGD", "lr": 0.05, "decay": 0.1},
    {"type": "SGD", "lr": 0.05, "momentum": 0.9},
    {"type": "SGD", "lr": 0.01, "momentum": 0.9, "nesterov": True},
    {"type": "RMSprop", "lr": 0.01, "momentum": 0.5},
])
def test_configs_called_exact_train_exactly_as_keras(mined):
    steps = 25
    translated = to_train_config(mined)
    assert translated.exact, translated.differences
    with jax.enable_x64(True):
        got = _run(make_optimizer(translated.optimizer, translated.schedule, steps), steps)
    parsed = parse_keras_optimizer(mined)
    expected = _keras_reference(parsed.name, dict(parsed.arguments), steps)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=TOL64)


def test_configs_say_where_they_depart_from_keras():
    sgd = to_train_config({"type": "SGD", "lr": 0.01, "momentum": 0.9, "decay": 1e-6, "nesterov": True})
    assert sgd.optimizer == OptimizerConfig("sgd", 0.01, momentum=0.9, nesterov=True)
    assert sgd.schedule == ScheduleConfig("inverse_time", decay=1e-6)
    assert not sgd.exact and "momentum trace" in sgd.differences[0]
    adam = to_train_config({"type": "Adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                            "epsilon": 1e-7, "amsgrad": True})
    assert adam.optimizer == OptimizerConfig("adam", 0.001, b1=0.9, b2=0.999, eps=1e-7, amsgrad=True)
    assert len(adam.differences) == 2
    rms = to_train_config({"type": "RMSprop", "lr": 0.002, "rho": 0.8})
    assert rms.optimizer.momentum == 0.0 and rms.optimizer.rho == 0.8  # not the config's default momentum 0.9
    adadelta = to_train_config({"type": "Adadelta"})
    assert adadelta.optimizer == OptimizerConfig() and "default" in adadelta.differences[0]
