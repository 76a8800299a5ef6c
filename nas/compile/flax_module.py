"""IR -> Flax: one `ArchModule` interprets any valid `Arch` in topological order.

Every layer is a submodule named by its node id, so ``params[node_id]`` holds
that layer's ``kernel``/``bias`` (SeparableConv2D: ``depthwise_kernel``,
``pointwise_kernel``, ``bias``; Embedding: ``embedding``; BatchNorm:
``scale``/``bias`` plus ``batch_stats[node_id]`` ``mean``/``var``). Weight
transforms in `nas.morph` rely on this layout.

In training mode each ReLU sows, into the ``feedback`` collection, the
fraction of its units that are zero for every example of the batch (an
inactive unit passes no gradient back). The collection is only written
when the caller makes it mutable, so evaluation pays nothing for it.

Each ReLU's input also carries a zero-valued perturbation in the ``probes``
collection (Flax's `perturb`): a caller that passes zeros there and
differentiates with respect to them gets the loss gradient at every unit's
pre-activation, which is what DREAM's dying-ReLU condition counts (a unit
whose gradient is zero for every example, whether it is inactive or active
with no gradient reaching it, e.g. an unselected max-pool cell). Without a
``probes`` collection the perturbation is a no-op.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from nas.ir import Arch, Node

_INITIALIZERS: dict[str, Callable] = {
    "he_normal": nn.initializers.he_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "lecun_normal": nn.initializers.lecun_normal(),
    "lecun_uniform": nn.initializers.lecun_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
    # Keras's RandomNormal/RandomUniform defaults (stddev 0.05, +-0.05).
    "random_normal": nn.initializers.normal(0.05),
    "random_uniform": lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -0.05, 0.05),
    "zeros": nn.initializers.zeros,
    "ones": nn.initializers.ones,
}

_ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "selu": nn.selu,
    "elu": nn.elu,
    # Keras's gelu is the exact erf form; JAX defaults to the tanh approximation.
    "gelu": functools.partial(nn.gelu, approximate=False),
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "softmax": nn.softmax,
    "linear": lambda x: x,
    # Keras's "leaky_relu" activation (slope 0.2), not Flax's 0.01.
    "leaky_relu": functools.partial(nn.leaky_relu, negative_slope=0.2),
    "silu": nn.silu,
    "softplus": nn.softplus,
    "relu6": nn.relu6,  # min(max(x, 0), 6), Keras's relu6
}
FEEDBACK = "feedback"
PROBES = "probes"


class SeparableConv(nn.Module):
    """Depthwise conv followed by a 1x1 pointwise conv, Keras's SeparableConv2D."""

    filters: int
    kernel_size: Sequence[int]
    strides: Sequence[int]
    padding: str
    dilation: Sequence[int]
    depth_multiplier: int
    use_bias: bool
    kernel_init: Callable
    bias_init: Callable
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x):
        x = x.astype(self.dtype)
        channels = x.shape[-1]
        mid = channels * self.depth_multiplier
        depthwise = self.param("depthwise_kernel", self.kernel_init, (*self.kernel_size, 1, mid), self.param_dtype)
        pointwise = self.param("pointwise_kernel", self.kernel_init, (1, 1, mid, self.filters), self.param_dtype)
        numbers = ("NHWC", "HWIO", "NHWC")
        y = lax.conv_general_dilated(
            x, depthwise.astype(self.dtype), self.strides, self.padding.upper(),
            rhs_dilation=self.dilation, dimension_numbers=numbers, feature_group_count=channels,
        )
        y = lax.conv_general_dilated(y, pointwise.astype(self.dtype), (1, 1), "VALID", dimension_numbers=numbers)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.filters,), self.param_dtype).astype(self.dtype)
        return y


def _conv(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    groups = a.get("groups", 1) if node.op != "DepthwiseConv2D" else xs[0].shape[-1]
    features = a["filters"] if node.op != "DepthwiseConv2D" else xs[0].shape[-1] * a["depth_multiplier"]
    return nn.Conv(
        features=features, kernel_size=a["kernel_size"], strides=a["strides"],
        padding=a["padding"].upper(), kernel_dilation=a["dilation"], feature_group_count=groups,
        use_bias=a["use_bias"], kernel_init=_INITIALIZERS[a["kernel_init"]],
        bias_init=_INITIALIZERS[a["bias_init"]], dtype=dtype, param_dtype=dtype, name=node.id,
    )(xs[0])


def _separable(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    return SeparableConv(
        filters=a["filters"], kernel_size=a["kernel_size"], strides=a["strides"], padding=a["padding"],
        dilation=a["dilation"], depth_multiplier=a["depth_multiplier"], use_bias=a["use_bias"],
        kernel_init=_INITIALIZERS[a["kernel_init"]], bias_init=_INITIALIZERS[a["bias_init"]],
        dtype=dtype, param_dtype=dtype, name=node.id,
    )(xs[0])


def _dense(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    return nn.Dense(
        a["units"], use_bias=a["use_bias"], kernel_init=_INITIALIZERS[a["kernel_init"]],
        bias_init=_INITIALIZERS[a["bias_init"]], dtype=dtype, param_dtype=dtype, name=node.id,
    )(xs[0])


def _embedding(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    return nn.Embed(
        a["input_dim"], a["output_dim"], embedding_init=_INITIALIZERS[a["kernel_init"]],
        dtype=dtype, param_dtype=dtype, name=node.id,
    )(xs[0].astype(jnp.int32))


def _batchnorm(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    return nn.BatchNorm(
        use_running_average=not train, momentum=a["momentum"], epsilon=a["epsilon"],
        dtype=dtype, param_dtype=dtype, name=node.id,
        # Keep float64 running statistics in float64 (function-preservation checks need it).
        force_float32_reductions=jnp.dtype(dtype).itemsize < 4,
    )(xs[0])


def _pool(reduce: Callable) -> Callable:
    def build(node: Node, a: dict, xs, train: bool, dtype) -> Any:
        return reduce(xs[0], a["pool_size"], strides=a["strides"], padding=a["padding"].upper())
    return build


def _avg_pool(x, window, strides, padding):
    # Keras averages over the valid (unpadded) cells only. Flax divides by a
    # count array that is float64 under x64, so keep the input's dtype.
    # window_shape by keyword: jax2onnx's stand-in for nn.avg_pool takes it only so.
    return nn.avg_pool(x, window_shape=window, strides=strides, padding=padding, count_include_pad=False).astype(x.dtype)


def _concat(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    axis = a["axis"]
    return jnp.concatenate(xs, axis=axis + 1 if axis >= 0 else axis)


def _zero_pad(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    (t, b), (l, r) = a["padding"]
    return jnp.pad(xs[0], ((0, 0), (t, b), (l, r), (0, 0)))


def _rescaling(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    # Keras casts the input to the compute dtype first (integer pixels become floats).
    return xs[0].astype(dtype) * jnp.asarray(a["scale"], dtype) + jnp.asarray(a["offset"], dtype)


def _keras_relu(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    """Keras's ReLU layer (keras.activations.relu with its three arguments, threshold >= 0)."""
    x = xs[0]
    y = jnp.where(x > a["threshold"], x, jnp.zeros_like(x))
    if a["max_value"] is not None:
        y = jnp.minimum(y, jnp.asarray(a["max_value"], x.dtype))
    if a["negative_slope"]:
        y = y - jnp.asarray(a["negative_slope"], x.dtype) * nn.relu(jnp.asarray(a["threshold"], x.dtype) - x)
    return y


def _upsampling(node: Node, a: dict, xs, train: bool, dtype) -> Any:
    # 'nearest': every cell repeated, as Keras's UpSampling2D does it (ops.repeat per axis).
    (sh, sw) = a["size"]
    return jnp.repeat(jnp.repeat(xs[0], sh, axis=1), sw, axis=2)


def _spatial_axes(x) -> tuple[int, ...]:
    return tuple(range(1, x.ndim - 1))


_BUILDERS: dict[str, Callable] = {
    "Conv2D": _conv,
    "Conv1D": _conv,
    "DepthwiseConv2D": _conv,
    "SeparableConv2D": _separable,
    "Dense": _dense,
    "Embedding": _embedding,
    "BatchNorm": _batchnorm,
    "MaxPool2D": _pool(nn.max_pool),
    "MaxPool1D": _pool(nn.max_pool),
    "AvgPool2D": _pool(_avg_pool),
    "AvgPool1D": _pool(_avg_pool),
    "GlobalAvgPool": lambda n, a, xs, t, d: jnp.mean(xs[0], axis=_spatial_axes(xs[0])),
    "GlobalMaxPool": lambda n, a, xs, t, d: jnp.max(xs[0], axis=_spatial_axes(xs[0])),
    "Flatten": lambda n, a, xs, t, d: xs[0].reshape(xs[0].shape[0], -1),
    "Dropout": lambda n, a, xs, t, d: nn.Dropout(a["rate"], deterministic=not t, name=n.id)(xs[0]),
    "Add": lambda n, a, xs, t, d: functools.reduce(jnp.add, xs),
    "Concat": _concat,
    "Identity": lambda n, a, xs, t, d: xs[0],
    "ZeroPadding2D": _zero_pad,
    "Rescaling": _rescaling,
    "ReLU": _keras_relu,
    # Row-major over the per-example axes, batch kept (jnp infers a -1).
    "Reshape": lambda n, a, xs, t, d: xs[0].reshape((xs[0].shape[0], *a["target_shape"])),
    "UpSampling2D": _upsampling,
}


class ArchModule(nn.Module):
    """A Flax module that runs `arch` on a batch (batch axis first).

    Attributes:
      arch: a validated architecture.
      dtype: computation and parameter dtype (float64 needs jax x64 enabled).
    """

    arch: Arch
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        values: dict[str, Any] = {}
        for node in self.arch.topological_order():
            attrs = node.normalized_attrs()
            if node.op == "Input":
                values[node.id] = x if jnp.issubdtype(x.dtype, jnp.integer) else x.astype(self.dtype)
                continue
            xs = [values[i] for i in node.inputs]
            if node.op == "Activation":
                z = xs[0]
                if train and attrs["fn"] == "relu":
                    z = self.perturb(node.id, z, collection=PROBES)
                y = _ACTIVATIONS[attrs["fn"]](z)
                if train and attrs["fn"] == "relu":
                    self.sow(FEEDBACK, node.id, jnp.mean(jnp.all(y <= 0, axis=0)))
            else:
                y = _BUILDERS[node.op](node, attrs, xs, train, self.dtype)
            values[node.id] = y
        outs = tuple(values[o] for o in self.arch.outputs)
        return outs[0] if len(outs) == 1 else outs


def to_flax(arch: Arch, dtype: Any = jnp.float32, input_shape: Sequence[int] | None = None) -> ArchModule:
    """Validates `arch` and returns the Flax module that computes it.

    Args:
      arch: the architecture.
      dtype: parameter and computation dtype.
      input_shape: checked against the graph when given (else the Input node's
        shape, if it has one).
    Returns:
      An `ArchModule`; call ``module.apply(variables, x, train=...)``.
    Raises:
      nas.ir.InvalidArchError: naming the node at fault.
    """
    arch.validate(input_shape)
    return ArchModule(arch=arch, dtype=dtype)


def init_variables(module: ArchModule, key: jax.Array, input_shape: Sequence[int]) -> dict:
    """Initial ``params`` (and ``batch_stats`` when the graph has BatchNorm)."""
    dummy = jnp.zeros((1, *input_shape), module.dtype)
    if any(n.op == "Embedding" for n in module.arch.nodes):
        dummy = dummy.astype(jnp.int32)
    variables = module.init({"params": key}, dummy, train=False)
    kept = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    kept.setdefault("params", {})
    return kept
