"""IR -> Flax: the compiled module agrees with the IR's shapes and counts, with
numpy on the numbers, and with Keras on the semantics of training and evaluation.

Tolerances are dtype-aware: 5e-4 in float32, 5e-7 in float64 (tinygp's).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nas.ir as ir
from nas.compile import FEEDBACK, init_variables, to_flax
from nas.ir import ACTIVATIONS, OPS, Arch, Attrs, Node, ShapeError
from tests.strategies import archs, random_input

BATCH = 3
TOL = {np.dtype("float32"): 5e-4, np.dtype("float64"): 5e-7}


def _arch(*nodes, outputs=None) -> Arch:
    """Nodes as (id, op, inputs, attrs); the first is the Input, the last the output."""
    built = tuple(Node(i, op, tuple(ins), Attrs(attrs)) for i, op, ins, attrs in nodes)
    return Arch(built, (built[0].id,), outputs or (built[-1].id,))


def _one_op(op: str, attrs: dict, shape, inputs=("in",)) -> Arch:
    return _arch(("in", "Input", (), {"shape": list(shape)}), ("y", op, inputs, attrs))


def _size(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _close(actual, expected, dtype=np.float32):
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=tol, atol=tol)


def _with_params(variables, node_id, rng, **overrides):
    """Replaces node_id's parameters by seeded normal draws (or the given arrays)."""
    params = dict(variables["params"])
    params[node_id] = {
        name: jnp.asarray(overrides.get(name, rng.standard_normal(leaf.shape)), leaf.dtype)
        for name, leaf in params[node_id].items()
    }
    return {**variables, "params": params}


def _input_struct(input_shape):
    dtype = jnp.int32 if len(input_shape) == 1 else jnp.float32
    return jax.ShapeDtypeStruct((BATCH, *input_shape), dtype)


# ====================================================================== random archs: the IR and Flax agree
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archs())
def test_compiled_shapes_and_parameter_counts_match_the_ir(pair):
    arch, input_shape = pair
    before = arch.to_json()
    module = to_flax(arch)
    # Abstract evaluation traces the real module, so every shape below is the
    # compiled one, at a fraction of the cost of running it.
    variables = jax.eval_shape(lambda key: init_variables(module, key, input_shape), jax.random.key(0))

    def forward(variables, x):
        return module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)},
                            mutable=["batch_stats", "intermediates", FEEDBACK], capture_intermediates=True)

    y, state = jax.eval_shape(forward, variables, _input_struct(input_shape))
    shapes = arch.shapes()
    assert y.shape == (BATCH, *arch.output_shape())

    rows = arch.layer_table()
    params = variables.get("params", {})
    assert set(params) == {r["id"] for r in rows if r["params"]}
    for row in rows:
        assert _size(params.get(row["id"], {})) == row["params"], row["id"]
    assert _size(params) == arch.num_params()

    batchnorms = [n.id for n in arch.nodes if n.op == "BatchNorm"]
    assert set(variables.get("batch_stats", {})) == set(batchnorms)
    for node_id in batchnorms:
        channels = shapes[node_id][-1]
        stats = variables["batch_stats"][node_id]
        assert {k: v.shape for k, v in stats.items()} == {"mean": (channels,), "var": (channels,)}

    captured = {k: v for k, v in state["intermediates"].items() if k != "__call__"}
    trainable = {n.id for n in arch.nodes if n.spec.trainable}
    assert trainable <= set(captured) <= set(shapes)
    for node_id, (out,) in ((k, v["__call__"]) for k, v in captured.items()):
        assert out.shape == (BATCH, *shapes[node_id]), node_id

    relus = {n.id for n in arch.nodes if n.op == "Activation" and n.normalized_attrs()["fn"] == "relu"}
    assert set(state.get(FEEDBACK, {})) == relus
    assert arch.to_json() == before


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archs(), st.integers(0, 2**16))
def test_compiled_archs_run_finite_and_deterministic_in_eval(pair, seed):
    arch, input_shape = pair
    module = to_flax(arch)
    variables = init_variables(module, jax.random.key(seed), input_shape)
    x = random_input(input_shape, seed + 1, BATCH)
    apply = jax.jit(module.apply, static_argnames=("train", "mutable"))

    y = apply(variables, x)
    assert y.shape == (BATCH, *arch.output_shape()) and y.dtype == jnp.float32
    assert np.all(np.isfinite(y))
    np.testing.assert_array_equal(apply(variables, x), y)

    y_train, state = apply(variables, x, train=True, rngs={"dropout": jax.random.key(seed)},
                           mutable=("batch_stats", FEEDBACK))
    assert y_train.shape == y.shape and np.all(np.isfinite(y_train))
    for value in jax.tree.leaves(state.get(FEEDBACK, {})):
        assert 0.0 <= float(value) <= 1.0
    if "batch_stats" in variables:
        assert jax.tree.map(jnp.shape, state["batch_stats"]) == jax.tree.map(jnp.shape, variables["batch_stats"])
    _, eval_state = apply(variables, x, train=False, mutable=(FEEDBACK,))
    assert not jax.tree.leaves(eval_state)


# ====================================================================== every op compiles
OP_EXAMPLES = {
    # op: (attrs, per-example input shape, number of inputs)
    "Input": None,
    "Conv2D": ({"filters": 3, "kernel_size": 3, "groups": 1}, (6, 6, 2), 1),
    "Conv1D": ({"filters": 3, "kernel_size": 3, "padding": "valid"}, (7, 2), 1),
    "DepthwiseConv2D": ({"kernel_size": 3, "depth_multiplier": 2}, (6, 6, 2), 1),
    "SeparableConv2D": ({"filters": 4, "kernel_size": 3}, (6, 6, 2), 1),
    "Dense": ({"units": 4}, (5,), 1),
    "Embedding": ({"input_dim": 7, "output_dim": 3}, (6,), 1),
    "BatchNorm": ({}, (6, 6, 2), 1),
    "Activation": ({"fn": "gelu"}, (6, 6, 2), 1),
    "MaxPool2D": ({"pool_size": 2}, (6, 6, 2), 1),
    "AvgPool2D": ({"pool_size": 3, "strides": 2, "padding": "same"}, (6, 6, 2), 1),
    "MaxPool1D": ({"pool_size": 2}, (7, 2), 1),
    "AvgPool1D": ({"pool_size": 2, "padding": "same"}, (7, 2), 1),
    "GlobalAvgPool": ({}, (6, 6, 2), 1),
    "GlobalMaxPool": ({}, (7, 2), 1),
    "Flatten": ({}, (6, 6, 2), 1),
    "Dropout": ({"rate": 0.5}, (6, 6, 2), 1),
    "Add": ({}, (6, 6, 2), 3),
    "Concat": ({"axis": 1}, (6, 6, 2), 2),
    "Identity": ({}, (6, 6, 2), 1),
    "ZeroPadding2D": ({"padding": [[1, 0], [2, 3]]}, (6, 6, 2), 1),
    "Rescaling": ({"scale": 1 / 127.5, "offset": -1}, (6, 6, 2), 1),
    "ReLU": ({"max_value": 6, "negative_slope": 0.1, "threshold": 0.5}, (6, 6, 2), 1),
    "Reshape": ({"target_shape": [9, -1]}, (6, 6, 2), 1),
    "UpSampling2D": ({"size": [2, 3]}, (6, 6, 2), 1),
}


def test_every_op_has_a_compile_example():
    assert set(OP_EXAMPLES) == set(OPS)


@pytest.mark.parametrize("op", sorted(OP_EXAMPLES))
def test_every_op_compiles_and_runs(op):
    if op == "Input":
        arch = _arch(("in", "Input", (), {"shape": [4, 3]}))
        input_shape = (4, 3)
    else:
        attrs, input_shape, arity = OP_EXAMPLES[op]
        arch = _one_op(op, attrs, input_shape, inputs=("in",) * arity)
    module = to_flax(arch)
    variables = init_variables(module, jax.random.key(0), input_shape)
    x = random_input(input_shape, 1, BATCH, vocab=7)
    y, _ = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)}, mutable=True)
    assert y.shape == (BATCH, *arch.output_shape())
    assert _size(variables.get("params", {})) == arch.num_params()
    assert np.all(np.isfinite(y))


# ====================================================================== parameter layout, by node id
@pytest.mark.parametrize("op, attrs, shape, layout", [
    ("Conv2D", {"filters": 8, "kernel_size": 3}, (6, 6, 4), {"kernel": (3, 3, 4, 8), "bias": (8,)}),
    ("Conv2D", {"filters": 8, "kernel_size": [3, 5], "groups": 2}, (6, 6, 4), {"kernel": (3, 5, 2, 8), "bias": (8,)}),
    ("Conv2D", {"filters": 6, "kernel_size": 1, "groups": 3, "use_bias": False}, (6, 6, 3), {"kernel": (1, 1, 1, 6)}),
    ("Conv1D", {"filters": 6, "kernel_size": 3, "groups": 2}, (9, 4), {"kernel": (3, 2, 6), "bias": (6,)}),
    ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2}, (6, 6, 4), {"kernel": (3, 3, 1, 8), "bias": (8,)}),
    ("SeparableConv2D", {"filters": 5, "kernel_size": 3, "depth_multiplier": 2}, (6, 6, 4),
     {"depthwise_kernel": (3, 3, 1, 8), "pointwise_kernel": (1, 1, 8, 5), "bias": (5,)}),
    ("SeparableConv2D", {"filters": 5, "kernel_size": 3, "use_bias": False}, (6, 6, 4),
     {"depthwise_kernel": (3, 3, 1, 4), "pointwise_kernel": (1, 1, 4, 5)}),
    ("Dense", {"units": 7}, (12,), {"kernel": (12, 7), "bias": (7,)}),
    ("Dense", {"units": 7, "use_bias": False}, (4, 4, 3), {"kernel": (3, 7)}),
    ("Embedding", {"input_dim": 11, "output_dim": 4}, (6,), {"embedding": (11, 4)}),
    ("BatchNorm", {}, (6, 6, 4), {"scale": (4,), "bias": (4,)}),
], ids=lambda v: v if isinstance(v, str) else None)
def test_parameters_are_keyed_by_node_id_in_the_documented_layout(op, attrs, shape, layout):
    arch = _one_op(op, attrs, shape)
    module = to_flax(arch)
    variables = jax.eval_shape(lambda key: init_variables(module, key, shape), jax.random.key(0))
    assert set(variables["params"]) == {"y"}
    assert {k: v.shape for k, v in variables["params"]["y"].items()} == layout
    if op == "BatchNorm":
        assert {k: v.shape for k, v in variables["batch_stats"]["y"].items()} == {"mean": (4,), "var": (4,)}
    else:
        assert "batch_stats" not in variables


# ====================================================================== numbers against numpy
def _np_same_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same': pad to ceil(size/stride) outputs, the odd cell at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _np_conv(x, w, b, strides, dilation, padding, groups):
    """Direct N-d convolution (channels last, HWIO kernel, grouped), float64."""
    nd = x.ndim - 2
    extent = [d * (k - 1) + 1 for k, d in zip(w.shape[:nd], dilation)]
    if padding == "same":
        pads = [_np_same_pads(s, e, st_) for s, e, st_ in zip(x.shape[1:-1], extent, strides)]
        x = np.pad(x, [(0, 0), *pads, (0, 0)])
    out_sizes = [(s - e) // st_ + 1 for s, e, st_ in zip(x.shape[1:-1], extent, strides)]
    cin, cout = w.shape[-2], w.shape[-1]
    per_group = cout // groups
    out = np.zeros((x.shape[0], *out_sizes, cout))
    for pos in np.ndindex(*out_sizes):
        for tap in np.ndindex(*w.shape[:nd]):
            index = tuple(p * s + t * d for p, s, t, d in zip(pos, strides, tap, dilation))
            patch = x[(slice(None), *index)]
            for g in range(groups):
                out[(slice(None), *pos, slice(g * per_group, (g + 1) * per_group))] += (
                    patch[:, g * cin:(g + 1) * cin] @ w[(*tap, slice(None), slice(g * per_group, (g + 1) * per_group))]
                )
    return out + (0 if b is None else b)


def _run(arch, variables, x, **kwargs):
    return to_flax(arch).apply(variables, x, **kwargs)


def _init(arch, shape, seed=0):
    return init_variables(to_flax(arch), jax.random.key(seed), shape)


@pytest.mark.parametrize("kernel, strides, dilation, padding, groups, filters", [
    (3, 1, 1, "same", 1, 5),
    (3, 2, 1, "same", 1, 5),
    (2, 2, 1, "same", 1, 3),  # even kernel: 'same' pads the extra cell at the end
    (3, 1, 2, "same", 1, 3),
    (3, 2, 1, "valid", 1, 3),
    (3, 1, 2, "valid", 2, 4),
    ([3, 2], [2, 1], 1, "same", 4, 8),
    (3, 2, 2, "same", 1, 2),  # strides and dilation together (lax allows it, Keras does not)
])
def test_conv2d_matches_direct_convolution(kernel, strides, dilation, padding, groups, filters):
    shape = (7, 6, 4)
    arch = _one_op("Conv2D", dict(filters=filters, kernel_size=kernel, strides=strides, dilation=dilation,
                                  padding=padding, groups=groups), shape)
    rng = np.random.default_rng(0)
    variables = _with_params(_init(arch, shape), "y", rng)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    x_before = x.copy()
    w, b = (np.asarray(variables["params"]["y"][k], np.float64) for k in ("kernel", "bias"))
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)
    expected = _np_conv(x.astype(np.float64), w, b, pair(strides), pair(dilation), padding, groups)
    y = _run(arch, variables, x)
    assert y.shape == (2, *arch.output_shape()) == expected.shape
    _close(y, expected)
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("op, attrs", [
    ("Conv1D", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "dilation": 2, "padding": "valid", "groups": 2}),
    ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2, "strides": 2}),
    ("SeparableConv2D", {"filters": 5, "kernel_size": 3, "depth_multiplier": 2, "padding": "valid"}),
])
def test_other_convs_match_direct_convolution(op, attrs):
    shape = (9, 2) if op == "Conv1D" else (7, 6, 2)
    arch = _one_op(op, attrs, shape)
    rng = np.random.default_rng(1)
    variables = _with_params(_init(arch, shape), "y", rng)
    p = {k: np.asarray(v, np.float64) for k, v in variables["params"]["y"].items()}
    x = rng.standard_normal((2, *shape))
    a = arch.node("y").normalized_attrs()
    conv = lambda x, w, b, groups: _np_conv(x, w, b, a["strides"], a["dilation"], a["padding"], groups)
    if op == "Conv1D":
        expected = conv(x, p["kernel"], p["bias"], a["groups"])
    elif op == "DepthwiseConv2D":  # one group per input channel, depth_multiplier outputs each
        expected = conv(x, p["kernel"], p["bias"], shape[-1])
    else:  # depthwise, then a 1x1 pointwise conv, then the bias
        mid = conv(x, p["depthwise_kernel"], None, shape[-1])
        expected = _np_conv(mid, p["pointwise_kernel"], p["bias"], (1, 1), (1, 1), "valid", 1)
    _close(_run(arch, variables, x.astype(np.float32)), expected)


def _np_pool(x, window, strides, padding, reduce):
    """Pooling over the valid cells of each window (Keras: padding never counts)."""
    nd = x.ndim - 2
    pads = [_np_same_pads(s, k, st_) if padding == "same" else (0, 0)
            for s, k, st_ in zip(x.shape[1:-1], window, strides)]
    out_sizes = [(s + lo + hi - k) // st_ + 1 for s, (lo, hi), k, st_ in zip(x.shape[1:-1], pads, window, strides)]
    out = np.zeros((x.shape[0], *out_sizes, x.shape[-1]))
    for pos in np.ndindex(*out_sizes):
        cells = tuple(
            slice(max(p * st_ - lo, 0), min(p * st_ - lo + k, s))
            for p, st_, (lo, _), k, s in zip(pos, strides, pads, window, x.shape[1:-1])
        )
        out[(slice(None), *pos)] = reduce(x[(slice(None), *cells)], axis=tuple(range(1, nd + 1)))
    return out


@pytest.mark.parametrize("kind", ["Avg", "Max"])
@pytest.mark.parametrize("shape, pool_size, strides, padding", [
    ((5, 6, 2), 3, 1, "same"),
    ((5, 5, 2), 2, None, "same"),  # odd size: the last window is half padding
    ((6, 7, 3), 3, 2, "same"),
    ((6, 7, 3), 2, None, "valid"),
    ((9, 2), 3, 2, "same"),
    ((9, 2), 2, 1, "valid"),
])
def test_pooling_matches_numpy_and_ignores_padding(kind, shape, pool_size, strides, padding):
    nd = len(shape) - 1
    attrs = {"pool_size": pool_size, "strides": strides, "padding": padding}
    arch = _one_op(f"{kind}Pool{nd}D", attrs, shape)
    x = np.random.default_rng(2).standard_normal((2, *shape))
    a = arch.node("y").normalized_attrs()
    expected = _np_pool(x, a["pool_size"], a["strides"] or a["pool_size"], padding, np.mean if kind == "Avg" else np.max)
    y = _run(arch, {}, x.astype(np.float32))
    assert y.shape == expected.shape == (2, *arch.output_shape())
    _close(y, expected)


def test_same_avg_pool_of_a_constant_is_that_constant():
    # Counting the padded zeros would give 4/9 in the corners.
    arch = _one_op("AvgPool2D", {"pool_size": 3, "strides": 1, "padding": "same"}, (4, 4, 1))
    _close(_run(arch, {}, np.full((1, 4, 4, 1), 2.0, np.float32)), np.full((1, 4, 4, 1), 2.0))


@pytest.mark.parametrize("padding, pads", [
    (1, ((1, 1), (1, 1))), ([1, 2], ((1, 1), (2, 2))), ([[0, 1], [2, 3]], ((0, 1), (2, 3))),
])
def test_zero_padding_matches_numpy(padding, pads):
    arch = _one_op("ZeroPadding2D", {"padding": padding}, (3, 4, 2))
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 2)).astype(np.float32)
    expected = np.pad(x, ((0, 0), *pads, (0, 0)))
    y = _run(arch, {}, x)
    assert y.shape == (2, *arch.output_shape())
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("inputs, axis", [
    (("in", "t"), -1), (("t", "in"), -1), (("t", "in", "t"), 2), (("in", "t"), 0), (("t", "in"), -3), (("in", "t"), 1),
])
def test_concat_keeps_its_input_order_along_the_per_example_axis(inputs, axis):
    arch = _arch(
        ("in", "Input", (), {"shape": [3, 4, 2]}),
        ("t", "Activation", ("in",), {"fn": "tanh"}),
        ("cat", "Concat", inputs, {"axis": axis}),
    )
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 2)).astype(np.float32)
    values = {"in": x, "t": np.tanh(x)}
    expected = np.concatenate([values[i] for i in inputs], axis=axis + 1 if axis >= 0 else axis)
    y = _run(arch, {}, x)
    assert y.shape == expected.shape == (2, *arch.output_shape())
    _close(y, expected)


@pytest.mark.parametrize("shape", [(3, 4, 5), (6, 5)])
def test_global_pools_reduce_the_spatial_axes(shape):
    x = np.random.default_rng(5).standard_normal((2, *shape)).astype(np.float32)
    axes = tuple(range(1, len(shape)))
    for op, reduce in (("GlobalAvgPool", np.mean), ("GlobalMaxPool", np.max)):
        arch = _one_op(op, {}, shape)
        _close(_run(arch, {}, x), reduce(x.astype(np.float64), axis=axes))


@pytest.mark.parametrize("shape, flatten", [((10,), False), ((3, 4, 2), True), ((3, 4, 2), False)])
def test_dense_is_an_affine_map_of_the_last_axis(shape, flatten):
    nodes = [("in", "Input", (), {"shape": list(shape)})]
    if flatten:  # row-major (H, W, C) order, as Keras's channels-last Flatten
        nodes.append(("flat", "Flatten", ("in",), {}))
    nodes.append(("y", "Dense", (nodes[-1][0],), {"units": 5}))
    arch = _arch(*nodes)
    rng = np.random.default_rng(6)
    variables = _with_params(_init(arch, shape), "y", rng)
    x = rng.standard_normal((2, *shape))
    w, b = (np.asarray(variables["params"]["y"][k], np.float64) for k in ("kernel", "bias"))
    features = x.reshape(2, -1) if flatten else x
    _close(_run(arch, variables, x.astype(np.float32)), features @ w + b)


def _erf(x):
    return np.vectorize(math.erf)(x)


# Keras 3's definitions of the activations the IR names (keras.activations).
_KERAS_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),  # exact, not the tanh approximation
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
    "linear": lambda x: x,
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),  # keras.activations.leaky_relu(negative_slope=0.2)
    "silu": lambda x: x / (1 + np.exp(-x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
}


def test_every_activation_has_a_reference():
    assert set(_KERAS_ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("fn", ACTIVATIONS)
def test_activations_match_keras(fn):
    arch = _one_op("Activation", {"fn": fn}, (4, 5))
    x = 2 * np.random.default_rng(7).standard_normal((2, 4, 5))
    _close(_run(arch, {}, x.astype(np.float32)), _KERAS_ACTIVATIONS[fn](x))


# ====================================================================== Keras's parameter-free transforms
def _keras_relu(x, max_value=None, negative_slope=0.0, threshold=0.0):
    """keras.activations.relu (Keras 3's ReLU.static_call, the layer's computation), branch by branch."""
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return np.where(x >= 0, x, negative_slope * x)  # backend.nn.leaky_relu
        negative_part = np.maximum(-x + threshold, 0) if threshold != 0 else np.maximum(-x, 0)
    clip_max = max_value is not None
    if threshold != 0:
        x = x * (x > threshold)
    elif max_value == 6:
        x, clip_max = np.minimum(np.maximum(x, 0), 6), False  # backend.nn.relu6
    else:
        x = np.maximum(x, 0)
    if clip_max:
        x = np.clip(x, 0, max_value)
    if negative_slope != 0.0:
        x = x - negative_slope * negative_part
    return x


def _float64_run(arch, x):
    with jax.enable_x64(True):
        return np.asarray(to_flax(arch, dtype=jnp.float64).apply({}, jnp.asarray(x, jnp.float64)))


# Every branch of Keras's function: plain, bounded (6 takes Keras's relu6 path), leaky,
# thresholded, and the three together; the inputs hit the threshold and the bound exactly.
@pytest.mark.parametrize("max_value, negative_slope, threshold", [
    (None, 0.0, 0.0), (6.0, 0.0, 0.0), (2.5, 0.0, 0.0), (0.0, 0.0, 0.0), (None, 0.3, 0.0),
    (None, 0.0, 1.0), (None, 0.1, 1.0), (6.0, 0.2, 0.0), (3.0, 0.5, 1.5), (1.0, 0.0, 2.0),
])
def test_relu_layer_computes_keras_relu(max_value, negative_slope, threshold):
    arch = _one_op("ReLU", {"max_value": max_value, "negative_slope": negative_slope, "threshold": threshold},
                   (4, 6))
    x = 4 * np.random.default_rng(11).standard_normal((2, 4, 6))
    x[0, 0, :5] = [0.0, threshold, max_value or 7.0, -threshold, 6.0]
    want = _keras_relu(x, max_value, negative_slope, threshold)
    np.testing.assert_allclose(_float64_run(arch, x), want, rtol=1e-12, atol=1e-12)
    _close(_run(arch, {}, x.astype(np.float32)), want)


@pytest.mark.parametrize("attrs, fn", [({}, "relu"), ({"max_value": 6}, "relu6"),
                                       ({"negative_slope": 0.2}, "leaky_relu")])
def test_relu_layer_special_cases_are_the_named_activations(attrs, fn):
    x = 8 * np.random.default_rng(12).standard_normal((3, 5, 4))
    layer = _float64_run(_one_op("ReLU", attrs, (5, 4)), x)
    named = _float64_run(_one_op("Activation", {"fn": fn}, (5, 4)), x)
    np.testing.assert_array_equal(layer, named)


@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (1 / 127.5, -1.0), (-2, 3)])
def test_rescaling_computes_x_times_scale_plus_offset(scale, offset):
    arch = _one_op("Rescaling", {"scale": scale, "offset": offset}, (4, 4, 3))
    x = np.random.default_rng(13).integers(0, 256, (2, 4, 4, 3)).astype(np.float64)
    np.testing.assert_allclose(_float64_run(arch, x), x * scale + offset, rtol=1e-12, atol=1e-12)


def test_rescaling_casts_integer_inputs_to_floats_like_keras():
    arch = _arch(("in", "Input", (), {"shape": [3, 3, 1]}), ("y", "Rescaling", ("in",), {"scale": 0.5}))
    x = np.arange(18, dtype=np.int32).reshape(2, 3, 3, 1)
    y = _run(arch, {}, x)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y), x * 0.5)


@pytest.mark.parametrize("shape, target", [
    ((4, 6, 2), [48]), ((4, 6, 2), [8, -1]), ((48,), [4, 4, 3]), ((4, 6, 2), [-1, 3, 4]), ((5,), [1, 1, 5]),
])
def test_reshape_lays_out_elements_in_row_major_order(shape, target):
    arch = _one_op("Reshape", {"target_shape": target}, shape)
    x = np.random.default_rng(14).standard_normal((3, *shape))
    y = _float64_run(arch, x)
    assert y.shape == (3, *arch.output_shape())
    # Keras's Reshape is ops.reshape(x, (batch, *target_shape)): numpy's C order.
    np.testing.assert_array_equal(y, x.reshape(3, *target))


@pytest.mark.parametrize("size", [2, [2, 3], [1, 4]])
def test_upsampling_repeats_every_cell_nearest(size):
    sh, sw = (size, size) if isinstance(size, int) else size
    arch = _one_op("UpSampling2D", {"size": size}, (3, 4, 2))
    x = np.random.default_rng(15).standard_normal((2, 3, 4, 2))
    y = _float64_run(arch, x)
    assert y.shape == (2, 3 * sh, 4 * sw, 2) == (2, *arch.output_shape())
    # Nearest neighbour written out: output cell (i, j) is input cell (i // sh, j // sw).
    rows, cols = np.arange(3 * sh) // sh, np.arange(4 * sw) // sw
    np.testing.assert_array_equal(y, x[:, rows][:, :, cols])


# ====================================================================== train and eval modes
def test_dropout_is_identity_in_eval_and_random_inverted_dropout_in_train():
    arch = _one_op("Dropout", {"rate": 0.5}, (8, 8, 2))
    x = np.random.default_rng(8).standard_normal((2, 8, 8, 2)).astype(np.float32)
    np.testing.assert_array_equal(_run(arch, {}, x), x)
    np.testing.assert_array_equal(_run(arch, {}, x, train=False, rngs={"dropout": jax.random.key(0)}), x)
    first = np.asarray(_run(arch, {}, x, train=True, rngs={"dropout": jax.random.key(0)}))
    again = np.asarray(_run(arch, {}, x, train=True, rngs={"dropout": jax.random.key(0)}))
    other = np.asarray(_run(arch, {}, x, train=True, rngs={"dropout": jax.random.key(1)}))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    kept = first != 0
    _close(first[kept], x[kept] / (1 - 0.5))  # survivors are scaled by 1/(1-rate)
    assert 0.3 < 1 - kept.mean() < 0.7


def test_batchnorm_uses_batch_statistics_in_train_and_running_statistics_in_eval():
    momentum, epsilon = 0.9, 1e-3
    arch = _one_op("BatchNorm", {"momentum": momentum, "epsilon": epsilon}, (4, 4, 3))
    rng = np.random.default_rng(9)
    scale, offset = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    variables = _with_params(_init(arch, (4, 4, 3)), "y", rng, scale=scale, bias=offset)
    x = (3 + 2 * rng.standard_normal((5, 4, 4, 3))).astype(np.float32)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))  # biased, over batch and space

    # Eval before any training: running mean 0 and variance 1.
    _close(_run(arch, variables, x), x64 / np.sqrt(1 + epsilon) * scale + offset)

    y, updates = _run(arch, variables, x, train=True, mutable=["batch_stats"])
    _close(y, (x64 - mean) / np.sqrt(var + epsilon) * scale + offset)
    stats = updates["batch_stats"]["y"]
    _close(stats["mean"], momentum * 0 + (1 - momentum) * mean)
    _close(stats["var"], momentum * 1 + (1 - momentum) * var)
    np.testing.assert_array_equal(variables["batch_stats"]["y"]["mean"], np.zeros(3))  # no in-place update

    trained = {**variables, "batch_stats": updates["batch_stats"]}
    ra_mean, ra_var = (np.asarray(stats[k], np.float64) for k in ("mean", "var"))
    y_eval, unchanged = _run(arch, trained, x, train=False, mutable=["batch_stats"])
    _close(y_eval, (x64 - ra_mean) / np.sqrt(ra_var + epsilon) * scale + offset)
    np.testing.assert_array_equal(unchanged["batch_stats"]["y"]["mean"], stats["mean"])


def test_relus_sow_their_dead_fraction_in_train_mode_only():
    arch = _arch(
        ("in", "Input", (), {"shape": [5]}),
        ("relu", "Activation", ("in",), {"fn": "relu"}),
        ("tanh", "Activation", ("relu",), {"fn": "tanh"}),
        ("relu2", "Activation", ("tanh",), {"fn": "relu"}),
    )
    # Units 0, 3 and 4 are <= 0 for every example: 3 of 5 units are dead.
    x = np.array([[-1.0, 2.0, 0.5, 0.0, -3.0],
                  [-2.0, -1.0, 1.5, 0.0, -0.1]], np.float32)
    y, state = _run(arch, {}, x, train=True, mutable=[FEEDBACK])
    feedback = jax.tree.map(float, state[FEEDBACK])
    assert set(feedback) == {"relu", "relu2"}  # only ReLUs report
    assert feedback["relu"] == (pytest.approx(3 / 5),)
    assert feedback["relu2"] == (pytest.approx(3 / 5),)
    _, eval_state = _run(arch, {}, x, train=False, mutable=[FEEDBACK])
    assert FEEDBACK not in eval_state or not jax.tree.leaves(eval_state[FEEDBACK])
    np.testing.assert_array_equal(_run(arch, {}, x, train=True), y)  # not mutable: nothing sown, same output


# ====================================================================== dtypes, errors, inputs left alone
def _bn_net():
    return ir.cnn([4], 3, input_shape=(6, 6, 2), batchnorm=True, dense=[5], dropout=0.1)


def test_float64_gives_float64_params_and_outputs():
    arch = _bn_net()
    with jax.enable_x64(True):
        module = to_flax(arch, dtype=jnp.float64)
        variables = init_variables(module, jax.random.key(0), (6, 6, 2))
        assert {leaf.dtype for leaf in jax.tree.leaves(variables["params"])} == {jnp.dtype("float64")}
        x = random_input((6, 6, 2), 1, BATCH, jnp.float64)
        y = module.apply(variables, x)
        assert y.dtype == jnp.float64
        # The same weights in float32 give the same function, to float32's tolerance.
        y32 = to_flax(arch).apply(jax.tree.map(lambda v: v.astype(jnp.float32), variables), x.astype(jnp.float32))
        _close(y32, np.asarray(y), np.float32)
        # Dense in float64 agrees with numpy to float64's tolerance.
        dense = _one_op("Dense", {"units": 3}, (4,))
        dvars = init_variables(to_flax(dense, jnp.float64), jax.random.key(2), (4,))
        xd = np.random.default_rng(10).standard_normal((2, 4))
        w, b = (np.asarray(dvars["params"]["y"][k]) for k in ("kernel", "bias"))
        _close(to_flax(dense, jnp.float64).apply(dvars, xd), xd @ w + b, np.float64)


def test_float64_batch_stats_are_float64_and_keep_their_dtype_in_training():
    # Running statistics are half of a BatchNorm's function in eval mode: kept in
    # float32 they cap function preservation at float32 precision, and a train
    # step that returns them as float64 changes the state's dtype (a retrace, or
    # a type error inside lax.scan/fori_loop carries).
    with jax.enable_x64(True):
        module = to_flax(_bn_net(), dtype=jnp.float64)
        variables = init_variables(module, jax.random.key(0), (6, 6, 2))
        x = random_input((6, 6, 2), 1, BATCH, jnp.float64)
        _, updates = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)},
                                  mutable=["batch_stats"])
        before = jax.tree.map(lambda v: v.dtype, variables["batch_stats"])
        after = jax.tree.map(lambda v: v.dtype, updates["batch_stats"])
        assert before == after
        assert set(jax.tree.leaves(before)) == {jnp.dtype("float64")}


def test_to_flax_raises_the_irs_error_naming_the_node():
    arch = _arch(
        ("in", "Input", (), {"shape": [6, 6, 2]}),
        ("conv", "Conv2D", ("in",), {"filters": 4, "kernel_size": 3}),
        ("add", "Add", ("in", "conv"), {}),
    )
    with pytest.raises(ShapeError, match=r"node 'add' \(Add\)") as caught:
        to_flax(arch)
    assert caught.value.node_id == "add"
    shapeless = arch.replace_nodes([Node("in", "Input")] + list(arch.nodes[1:]))
    to_flax(shapeless)  # no shape known: structure only
    with pytest.raises(ShapeError) as caught:
        to_flax(shapeless, input_shape=(6, 6, 2))
    assert caught.value.node_id == "add"


def test_compiling_initialising_and_running_leave_the_arch_and_inputs_alone():
    arch = ir.builtin("cnn", 10, (8, 8, 1))
    text, digest = arch.to_json(), arch.structural_hash()
    module = to_flax(arch)
    variables = init_variables(module, jax.random.key(0), (8, 8, 1))
    snapshot = jax.tree.map(np.array, variables)
    x = np.random.default_rng(11).standard_normal((2, 8, 8, 1)).astype(np.float32)
    x_before = x.copy()
    module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats", FEEDBACK])
    assert arch.to_json() == text and arch.structural_hash() == digest
    np.testing.assert_array_equal(x, x_before)
    jax.tree.map(np.testing.assert_array_equal, variables, snapshot)
