"""Manas's adaptation system (section 4.4-4.5): mined models made fit for new data.

Model adaptation is checked on hand-built Keras-style models (a 224x224
VGG-like net on 28x28 data, an MNIST net on 224x224 data, 'valid' convs that
no longer fit) and over random IRs. The mined optimizers' translation is
checked in test_keras_optimizers.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.compile import init_variables, to_flax
from nas.ir import Arch, Attrs, InvalidArchError, Node
from nas.search.manas.adapt import ABLATION_ARMS, DROPOUT_RULES, AdaptError, adapt, apply_manas_repairs, dropout_variant
from tests.strategies import archs
from tests.arch_helpers import chain as _chain


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
