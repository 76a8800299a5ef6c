"""Manas's repairs (section 3, step 6, Figures 5-9): IR rewrites that are not function-preserving.

Each repair is checked on hand-built Keras-style models against the model the
paper draws (compared by `Arch.structural_hash`, so new ids are free), and over
random IRs for validity, purity, no-op-when-satisfied and idempotence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import nas.morph as morph
from nas.compile import init_variables, to_flax
from nas.ir import Arch, Attrs, Node
from tests.strategies import archs

REPAIRS = {
    "insert_batchnorm": morph.insert_batchnorm,
    "flatten_to_gap": morph.flatten_to_gap,
    "relu_activations": morph.relu_activations,
    "add_dropout": morph.add_dropout,
}


# ====================================================================== helpers
def _arch(*nodes) -> Arch:
    """A chain: each (id, op, attrs) reads the node before it; the first is the Input."""
    built, previous = [], ()
    for node_id, op, attrs in nodes:
        built.append(Node(node_id, op, previous, Attrs(attrs)))
        previous = (node_id,)
    return Arch(tuple(built), (built[0].id,), (built[-1].id,), "hand-built").validate()


def _conv(node_id, filters=8):
    return (node_id, "Conv2D", {"filters": filters, "kernel_size": 3})


def _act(node_id, fn):
    return (node_id, "Activation", {"fn": fn})


def _keras_cnn(*extra_after_pool, extra_after_dense=()) -> Arch:
    """conv-relu-conv-relu-pool-flatten-dense-relu-dense-softmax, Keras's MNIST CNN."""
    return _arch(("in", "Input", {"shape": [8, 8, 1]}),
                 _conv("conv1", 4), _act("relu1", "relu"), _conv("conv2"), _act("relu2", "relu"),
                 ("pool1", "MaxPool2D", {"pool_size": 2}), *extra_after_pool,
                 ("flatten", "Flatten", {}),
                 ("dense1", "Dense", {"units": 16}), _act("relu3", "relu"), *extra_after_dense,
                 ("head", "Dense", {"units": 10}), _act("out", "softmax"))


def _tanh_cnn(dense_fn="relu") -> Arch:
    """Manas Figure 5a: (conv-tanh-pool) x 2, flatten, linear-relu, linear-softmax."""
    return _arch(("in", "Input", {"shape": [8, 8, 3]}),
                 _conv("conv1"), _act("tanh1", "tanh"), ("pool1", "MaxPool2D", {"pool_size": 2}),
                 _conv("conv2"), _act("tanh2", "tanh"), ("pool2", "MaxPool2D", {"pool_size": 2}),
                 ("flatten", "Flatten", {}),
                 ("dense1", "Dense", {"units": 8}), _act("act3", dense_fn),
                 ("head", "Dense", {"units": 2}), _act("out", "softmax"))


def _bn(node_id):
    return (node_id, "BatchNorm", {})


def _drop(node_id, rate):
    return (node_id, "Dropout", {"rate": rate})


def _fingerprint(arch: Arch) -> str:
    """Structure up to ids, with BatchNorm's hyperparameters left to the implementation."""
    nodes = [n.replace(attrs=Attrs()) if n.op == "BatchNorm" else n for n in arch.nodes]
    return arch.replace_nodes(nodes).structural_hash()


def _assert_structure(actual: Arch, expected: Arch) -> None:
    assert _fingerprint(actual) == _fingerprint(expected), (
        "\nexpected: " + " -> ".join(f"{n.op}{dict(n.attrs) if n.op in ('Activation', 'Dropout') else ''}"
                                     for n in expected.topological_order())
        + "\nactual:   " + " -> ".join(f"{n.op}{dict(n.attrs) if n.op in ('Activation', 'Dropout') else ''}"
                                       for n in actual.topological_order()))


def _compiles(arch: Arch) -> None:
    module = to_flax(arch)
    shape = arch.input_node.attrs["shape"]
    variables = init_variables(module, jax.random.key(0), shape)
    x = jnp.zeros((2, *shape), jnp.int32 if len(shape) == 1 else jnp.float32)
    y = module.apply(variables, x, train=False)
    assert y.shape == (2, *arch.output_shape())


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _named(changes: list[dict]) -> set[str]:
    return {s for change in changes for s in _strings(change)}


def _apply(name: str, arch: Arch, **kwargs):
    """Runs a repair; checks purity, the return types, validity and idempotence."""
    text = arch.to_json()
    new, changes = REPAIRS[name](arch, **kwargs)
    assert arch.to_json() == text, f"{name} modified its input"
    assert isinstance(new, Arch) and isinstance(changes, list) and all(isinstance(c, dict) for c in changes)
    new.validate()
    assert new.outputs == arch.outputs and new.input_node == arch.input_node
    if not changes:
        assert new.to_json() == arch.to_json(), f"{name} reported no change but changed the arch"
    again, more = REPAIRS[name](new, **kwargs)
    assert more == [] and again.to_json() == new.to_json(), f"{name} is not idempotent: {more}"
    return new, changes


# ====================================================================== each repair does exactly its edit
def test_insert_batchnorm_goes_between_each_conv_and_its_activation():
    arch = _keras_cnn()
    new, changes = _apply("insert_batchnorm", arch)
    expected = _arch(("in", "Input", {"shape": [8, 8, 1]}),
                     _conv("conv1", 4), _bn("b1"), _act("relu1", "relu"), _conv("conv2"), _bn("b2"),
                     _act("relu2", "relu"), ("pool1", "MaxPool2D", {"pool_size": 2}), ("flatten", "Flatten", {}),
                     ("dense1", "Dense", {"units": 16}), _act("relu3", "relu"),
                     ("head", "Dense", {"units": 10}), _act("out", "softmax"))
    _assert_structure(new, expected)
    for conv, act in (("conv1", "relu1"), ("conv2", "relu2")):
        (bn,) = new.consumers(conv)
        assert bn.op == "BatchNorm" and [c.id for c in new.consumers(bn.id)] == [act]
    assert len(changes) == 2 and {"conv1", "conv2"} <= _named(changes)
    _compiles(new)


def test_flatten_before_the_dense_head_becomes_global_average_pooling():
    arch = _keras_cnn()
    new, changes = _apply("flatten_to_gap", arch)
    expected = _arch(("in", "Input", {"shape": [8, 8, 1]}),
                     _conv("conv1", 4), _act("relu1", "relu"), _conv("conv2"), _act("relu2", "relu"),
                     ("pool1", "MaxPool2D", {"pool_size": 2}), ("gap", "GlobalAvgPool", {}),
                     ("dense1", "Dense", {"units": 16}), _act("relu3", "relu"),
                     ("head", "Dense", {"units": 10}), _act("out", "softmax"))
    _assert_structure(new, expected)
    assert not [n for n in new.nodes if n.op == "Flatten"]
    (reader,) = new.node("dense1").inputs
    assert new.node(reader).op == "GlobalAvgPool" and new.node(reader).inputs == ("pool1",)
    # The Dense now reads C features instead of H*W*C: 8 instead of 4*4*8.
    assert new.shapes()[reader] == (8,)
    assert arch.num_params() - new.num_params() == (4 * 4 * 8 - 8) * 16
    assert len(changes) == 1 and "flatten" in _named(changes)
    _compiles(new)


def test_conv_activations_become_relu_and_the_head_keeps_its_softmax():
    arch = _tanh_cnn()
    new, changes = _apply("relu_activations", arch)
    expected = _arch(("in", "Input", {"shape": [8, 8, 3]}),
                     _conv("conv1"), _act("a1", "relu"), ("pool1", "MaxPool2D", {"pool_size": 2}),
                     _conv("conv2"), _act("a2", "relu"), ("pool2", "MaxPool2D", {"pool_size": 2}),
                     ("flatten", "Flatten", {}), ("dense1", "Dense", {"units": 8}), _act("act3", "relu"),
                     ("head", "Dense", {"units": 2}), _act("out", "softmax"))
    _assert_structure(new, expected)
    assert len(changes) == 2 and {"tanh1", "tanh2"} <= _named(changes)
    _compiles(new)


def test_relu_activations_leaves_a_linear_head_alone():
    arch = _tanh_cnn()
    linear_head = arch.replace_nodes([n.replace(attrs=Attrs(fn="linear")) if n.id == "out" else n
                                      for n in arch.nodes])
    new, _ = _apply("relu_activations", linear_head)
    assert new.node(new.output_id).op == "Activation" and new.node(new.output_id).attrs["fn"] == "linear"
    no_softmax = _arch(*[(n.id, n.op, dict(n.attrs)) for n in arch.topological_order() if n.id != "out"])
    new, _ = _apply("relu_activations", no_softmax)
    assert new.node("head").op == "Dense" and new.output_id == "head"


def test_relu_activations_leaves_the_output_activation_of_a_fully_convolutional_net():
    # The head is the output even when a conv feeds it directly (per-pixel softmax).
    arch = _arch(("in", "Input", {"shape": [8, 8, 3]}), _conv("conv1"), _act("tanh1", "tanh"),
                 _conv("conv2", 4), _act("out", "softmax"))
    new, changes = _apply("relu_activations", arch)
    assert new.node("tanh1").attrs["fn"] == "relu"
    assert new.node("out").attrs["fn"] == "softmax", "the output's softmax was replaced"
    assert "out" not in _named(changes)


def test_dropout_follows_a_hidden_dense_activation_behind_batchnorm():
    from nas.ir import mlp

    arch = mlp([8, 6], 3, input_shape=(5,), batchnorm=True)  # Dense-BN-relu, twice, then the head
    new, changes = _apply("add_dropout", arch)
    drops = [n for n in new.nodes if n.op == "Dropout"]
    assert sorted(new.node(d.inputs[0]).id for d in drops) == ["act1", "act2"], [d.inputs for d in drops]
    assert all(d.attrs["rate"] == 0.5 for d in drops)


def test_relu_activations_on_a_tanh_dense_layer():
    # Manas replaces "the activation layers of convolutional layers"; whether a
    # hidden Dense's tanh changes too is left open, but the conv ones must.
    new, changes = _apply("relu_activations", _tanh_cnn(dense_fn="tanh"))
    acts = {n.id: n.attrs["fn"] for n in new.nodes if n.op == "Activation"}
    assert sorted(acts.values()).count("softmax") == 1
    assert sum(fn == "relu" for fn in acts.values()) >= 2
    assert {"tanh1", "tanh2"} <= _named(changes)


def test_dropout_after_each_conv_block_pooling_and_each_hidden_dense_activation():
    arch = _tanh_cnn()
    new, changes = _apply("add_dropout", arch)
    expected = _arch(("in", "Input", {"shape": [8, 8, 3]}),
                     _conv("conv1"), _act("tanh1", "tanh"), ("pool1", "MaxPool2D", {"pool_size": 2}),
                     _drop("d1", 0.25),
                     _conv("conv2"), _act("tanh2", "tanh"), ("pool2", "MaxPool2D", {"pool_size": 2}),
                     _drop("d2", 0.25),
                     ("flatten", "Flatten", {}), ("dense1", "Dense", {"units": 8}), _act("act3", "relu"),
                     _drop("d3", 0.5),
                     ("head", "Dense", {"units": 2}), _act("out", "softmax"))
    _assert_structure(new, expected)
    assert len(changes) == 3 and {"pool1", "pool2", "act3"} <= _named(changes)
    _compiles(new)

    keras = _keras_cnn()
    new, changes = _apply("add_dropout", keras, conv_rate=0.1, dense_rate=0.3)
    _assert_structure(new, _keras_cnn(_drop("d1", 0.1), extra_after_dense=(_drop("d2", 0.3),)))
    assert len(changes) == 2 and {"pool1", "relu3"} <= _named(changes)


def test_manas_figure_5_all_repairs_together():
    """Figure 5a -> 5b: BN, ReLU and GAP applied together, dropout afterwards."""
    arch = _tanh_cnn()
    for name in ("insert_batchnorm", "relu_activations", "flatten_to_gap", "add_dropout"):
        arch, _ = _apply(name, arch)
        _compiles(arch)
    expected = _arch(("in", "Input", {"shape": [8, 8, 3]}),
                     _conv("conv1"), _bn("b1"), _act("r1", "relu"), ("pool1", "MaxPool2D", {"pool_size": 2}),
                     _drop("d1", 0.25),
                     _conv("conv2"), _bn("b2"), _act("r2", "relu"), ("pool2", "MaxPool2D", {"pool_size": 2}),
                     _drop("d2", 0.25),
                     ("gap", "GlobalAvgPool", {}), ("dense1", "Dense", {"units": 8}), _act("act3", "relu"),
                     _drop("d3", 0.5),
                     ("head", "Dense", {"units": 2}), _act("out", "softmax"))
    _assert_structure(arch, expected)


# ====================================================================== no-ops
SATISFIED = {
    "insert_batchnorm": lambda: _arch(("in", "Input", {"shape": [8, 8, 1]}), _conv("conv1"), _bn("bn1"),
                                      _act("relu1", "relu"), ("gap", "GlobalAvgPool", {}),
                                      ("head", "Dense", {"units": 3})),
    "flatten_to_gap": lambda: _arch(("in", "Input", {"shape": [8, 8, 1]}), _conv("conv1"), _act("relu1", "relu"),
                                    ("gap", "GlobalAvgPool", {}), ("head", "Dense", {"units": 3})),
    "relu_activations": _keras_cnn,
    "add_dropout": lambda: _keras_cnn(_drop("d1", 0.25), extra_after_dense=(_drop("d2", 0.5),)),
}


@pytest.mark.parametrize("name", sorted(REPAIRS))
def test_a_repair_is_a_no_op_on_an_arch_that_satisfies_it(name):
    arch = SATISFIED[name]()
    new, changes = REPAIRS[name](arch)
    assert changes == []
    assert new == arch and new.to_json() == arch.to_json()


@pytest.mark.parametrize("name", sorted(REPAIRS))
def test_a_repair_changes_nothing_on_an_mlp_without_its_targets(name):
    from nas.ir import mlp

    arch = mlp([8], 3, input_shape=(5,))  # no conv, no pooling: only add_dropout has work (the hidden Dense)
    new, changes = _apply(name, arch)
    if name != "add_dropout":
        assert changes == [] and new == arch


# ====================================================================== random IRs
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archs())
def test_every_repair_returns_a_valid_arch_over_random_irs(pair):
    arch, input_shape = pair
    for name in sorted(REPAIRS):
        new, changes = _apply(name, arch)
        new.validate(input_shape)
        ids = {n.id for n in arch.nodes} | {n.id for n in new.nodes}
        for change in changes:
            assert _named([change]) & ids, f"{name}: change {change} names no node"
        module = to_flax(new)
        variables = jax.eval_shape(lambda k: init_variables(module, k, input_shape), jax.random.key(0))
        x = jax.ShapeDtypeStruct((2, *input_shape), jnp.int32 if len(input_shape) == 1 else jnp.float32)
        y = jax.eval_shape(lambda v, x: module.apply(v, x, train=False), variables, x)
        assert y.shape == (2, *new.output_shape())
        assert np.prod(y.shape) > 0
