"""Morphisms that add layers: Net2DeeperNet, kernel widening, skips and branches (NeuNetS s4.1).

- `deepen`: an identity-initialised layer (centre tap = I; separable:
  depthwise = 1, pointwise = I). When the tensor is a ReLU output the new
  layer is followed by ReLU again (relu(relu(x)) = relu(x)); on a
  pre-activation tensor the layer is linear, which is what NeuNetS's branch +
  insert (Figure 4) needs. Other activations have no such identity.
- `widen_kernel`: zero-pads a kernel; the centre tap keeps its place.
- `add_skip`: a zero-initialised layer from an earlier tensor summed in.
- `branch`: a conv split into two convs whose concatenation is the original.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nas.ir import Arch, Attrs, Node
from nas.morph.errors import MorphError
from nas.morph.graph import (
    fresh_id, insert_after, is_upstream, join_variables, param_dtype, require, shapes_of, split_variables,
)

IDEMPOTENT = ("relu", "linear")
# Activations whose outputs are non-negative, so a ReLU identity layer after them passes them unchanged.
NON_NEGATIVE = ("relu", "relu6")
_SIGN_KEEPING = (  # a ReLU output stays non-negative through these
    "Dropout", "Identity", "MaxPool2D", "AvgPool2D", "MaxPool1D", "AvgPool1D",
    "ZeroPadding2D", "Flatten", "GlobalAvgPool", "GlobalMaxPool", "Add", "Concat",
)


def tensor_activation(arch: Arch, node_id: str) -> str | None:
    """``"relu"`` if `node_id`'s output is a ReLU output (non-negative), None if pre-activation.

    Raises:
      MorphError: the tensor is the Input (negatives possible, no identity
        under ReLU) or the output of a non-idempotent activation.
    """
    node = arch.node(node_id)
    if node.op == "Input":
        raise MorphError(f"cannot insert an identity layer right after the input {node_id!r}: "
                         "its values may be negative, so no ReLU layer can pass them unchanged")
    if node.op == "Activation":
        fn = node.attrs["fn"]
        if fn not in IDEMPOTENT + NON_NEGATIVE:
            raise MorphError(f"cannot insert an identity layer after {node_id!r}: no identity layer passes its "
                             f"activation {fn!r} unchanged (one exists after {', '.join(IDEMPOTENT + NON_NEGATIVE)})")
        return "relu" if fn in NON_NEGATIVE else None
    if node.op in ("Add", "Concat"):
        # A merge is a new (pre-activation) tensor: a linear identity layer is
        # exact whatever its inputs were; only all-ReLU inputs keep it a ReLU output.
        return "relu" if all(_is_relu_output(arch, i) for i in node.inputs) else None
    if node.op in _SIGN_KEEPING:
        return tensor_activation(arch, node.inputs[0])
    return None


def _is_relu_output(arch: Arch, node_id: str) -> bool:
    try:
        return tensor_activation(arch, node_id) == "relu"
    except MorphError:
        return False


def _identity_layer(where: str, kind: str, rank: int, channels: int, kernel_size: int,
                    dtype) -> tuple[str, dict, dict]:
    """(op, attrs, params) of a layer that copies its input (`where` names the site in errors)."""
    eye = jnp.eye(channels, dtype=dtype)
    centre = kernel_size // 2
    if kind == "dense":
        if rank != 1:
            raise MorphError(f"deepen after {where!r}: kind 'dense' needs a flat tensor, got rank {rank} (use 'conv')")
        return "Dense", {"units": channels}, {"kernel": eye, "bias": jnp.zeros(channels, dtype)}
    if rank not in (2, 3) or (kind == "separable" and rank != 3):
        raise MorphError(f"deepen after {where!r}: kind {kind!r} needs a spatial tensor, got rank {rank} (use 'dense')")
    spatial = (kernel_size,) * (rank - 1)
    attrs = {"kernel_size": kernel_size, "padding": "same"}
    if kind == "separable":
        depthwise = jnp.zeros(spatial + (1, channels), dtype).at[(centre, centre, 0)].set(1.0)
        return "SeparableConv2D", dict(attrs, filters=channels), {
            "depthwise_kernel": depthwise, "pointwise_kernel": eye.reshape(1, 1, channels, channels),
            "bias": jnp.zeros(channels, dtype)}
    if kind != "conv":
        raise MorphError(f"deepen after {where!r}: kind must be 'conv', 'separable' or 'dense', got {kind!r}")
    kernel = jnp.zeros(spatial + (channels, channels), dtype).at[(centre,) * (rank - 1)].set(eye)
    return ("Conv2D" if rank == 3 else "Conv1D"), dict(attrs, filters=channels), {
        "kernel": kernel, "bias": jnp.zeros(channels, dtype)}


def deepen(arch: Arch, variables: dict, after_node_id: str, key: jax.Array, kind: str = "conv",
           kernel_size: int = 3, input_shape: Sequence[int] | None = None) -> tuple[Arch, dict]:
    """Inserts an identity-initialised layer on `after_node_id`'s output.

    Args:
      kind: ``conv`` (Conv2D, or Conv1D on sequences), ``separable`` or ``dense``.
      kernel_size: odd, for conv kinds.
      key: unused (identity is deterministic); kept for a uniform signature.
    Returns:
      (child, variables); the new layer (and its ReLU, if any) read
      `after_node_id` and its former consumers read them.
    """
    del key
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise MorphError(f"deepen after {after_node_id!r}: kernel_size must be odd (a centre tap), got {kernel_size}")
    activation = tensor_activation(arch, after_node_id)
    shape = shapes_of(arch, input_shape)[after_node_id]
    params, stats, was_full = split_variables(variables)
    op, attrs, layer = _identity_layer(after_node_id, kind, len(shape), shape[-1], kernel_size, param_dtype(params))
    layer_id = fresh_id(arch, f"{after_node_id}_deep")
    new = [Node(layer_id, op, (after_node_id,), Attrs(attrs))]
    if activation is not None:
        new.append(Node(fresh_id(arch, f"{layer_id}_act", [layer_id]), "Activation", (layer_id,), Attrs(fn=activation)))
    params[layer_id] = layer
    return insert_after(arch, after_node_id, new, new[-1].id), join_variables(params, stats, was_full)


def _same_pad_before(size: int, kernel: int, stride: int, dilation: int) -> int:
    reach = dilation * (kernel - 1) + 1
    out = -(-size // stride)
    return max((out - 1) * stride + reach - size, 0) // 2


def widen_kernel(arch: Arch, variables: dict, node_id: str, new_kernel_size: int,
                 input_shape: Sequence[int] | None = None) -> tuple[Arch, dict]:
    """Grows a conv's kernel to `new_kernel_size` (odd) by zero padding around it."""
    node = require(arch, node_id, ("Conv2D", "Conv1D", "DepthwiseConv2D", "SeparableConv2D"), "widen_kernel")
    a = node.normalized_attrs()
    if new_kernel_size < 1 or new_kernel_size % 2 == 0:
        raise MorphError(f"widen_kernel: {node_id!r} needs an odd kernel size, got {new_kernel_size}")
    if a["padding"] != "same":
        raise MorphError(f"widen_kernel: {node_id!r} uses 'valid' padding; a larger kernel would shrink its output")
    if any(new_kernel_size <= k for k in a["kernel_size"]):
        raise MorphError(f"widen_kernel: {node_id!r} has kernel {list(a['kernel_size'])}; "
                         f"{new_kernel_size} is not larger")
    in_shape = shapes_of(arch, input_shape)[node.inputs[0]]
    pads = []
    for size, k, s, d in zip(in_shape[:-1], a["kernel_size"], a["strides"], a["dilation"]):
        grow = (new_kernel_size - k) // 2
        if _same_pad_before(size, new_kernel_size, s, d) - _same_pad_before(size, k, s, d) != d * grow:
            raise MorphError(f"widen_kernel: with stride {s} on size {size}, 'same' padding would shift "
                             f"{node_id!r}'s centre tap; the output would change")
        pads.append((grow, grow))
    params, stats, was_full = split_variables(variables)
    layer = dict(params[node_id])
    name = "depthwise_kernel" if node.op == "SeparableConv2D" else "kernel"
    layer[name] = jnp.pad(layer[name], pads + [(0, 0), (0, 0)])
    params[node_id] = layer
    child = arch.replace_nodes([n.replace(attrs=n.attrs.replace(kernel_size=new_kernel_size)) if n.id == node_id
                                else n for n in arch.nodes])
    return child, join_variables(params, stats, was_full)


def add_skip(arch: Arch, variables: dict, from_node_id: str, to_node_id: str, key: jax.Array,
             input_shape: Sequence[int] | None = None) -> tuple[Arch, dict]:
    """Sums a zero-initialised layer of `from_node_id`'s tensor into `to_node_id`'s.

    Spatial tensors get a 1x1 conv (strided when `to` is a downsampled copy of
    `from`'s grid), flat ones a Dense layer. Consumers of `to_node_id` read the sum.
    """
    del key
    arch.node(from_node_id)
    if not is_upstream(arch, from_node_id, to_node_id):
        raise MorphError(f"add_skip: {to_node_id!r} is not downstream of {from_node_id!r}")
    shapes = shapes_of(arch, input_shape)
    src, dst = shapes[from_node_id], shapes[to_node_id]
    if len(src) != len(dst):
        raise MorphError(f"add_skip: cannot map {from_node_id!r} {list(src)} onto {to_node_id!r} {list(dst)}")
    params, stats, was_full = split_variables(variables)
    dtype = param_dtype(params)
    channels = dst[-1]
    skip_id = fresh_id(arch, f"{from_node_id}_to_{to_node_id}_skip")
    if len(dst) == 1:
        op, attrs = "Dense", {"units": channels}
        layer = {"kernel": jnp.zeros((src[0], channels), dtype)}
    else:
        stride = next((s for s in range(1, max(src[:-1]) + 1)
                       if all(-(-a // s) == b for a, b in zip(src[:-1], dst[:-1]))), None)
        if stride is None:
            raise MorphError(f"add_skip: spatial size {list(src[:-1])} of {from_node_id!r} does not reach "
                             f"{list(dst[:-1])} of {to_node_id!r} by any stride")
        op = "Conv2D" if len(dst) == 3 else "Conv1D"
        attrs = {"filters": channels, "kernel_size": 1, "strides": stride, "padding": "same"}
        layer = {"kernel": jnp.zeros((1,) * (len(dst) - 1) + (src[-1], channels), dtype)}
    layer["bias"] = jnp.zeros(channels, dtype)
    add_id = fresh_id(arch, f"{to_node_id}_skip_add", [skip_id])
    new = [Node(skip_id, op, (from_node_id,), Attrs(attrs)), Node(add_id, "Add", (to_node_id, skip_id))]
    params[skip_id] = layer
    return insert_after(arch, to_node_id, new, add_id), join_variables(params, stats, was_full)


def branch(arch: Arch, variables: dict, node_id: str, key: jax.Array) -> tuple[Arch, dict]:
    """Splits a conv's filters into two convs over the same input, joined by a Concat.

    The Concat keeps `node_id` (downstream ids are unchanged); the branches are
    ``<node_id>_a`` and ``<node_id>_b`` with a random split of the filters.
    """
    node = require(arch, node_id, ("Conv2D", "Conv1D"), "branch")
    a = node.normalized_attrs()
    filters = a["filters"]
    if filters < 2 or a["groups"] != 1:
        raise MorphError(f"branch: {node_id!r} needs at least 2 filters and groups=1 "
                         f"(has {filters} filters, groups={a['groups']})")
    split = int(jax.random.randint(key, (), 1, filters))
    left, right = fresh_id(arch, f"{node_id}_a"), fresh_id(arch, f"{node_id}_b")
    params, stats, was_full = split_variables(variables)
    layer = params.pop(node_id)
    for branch_id, part in ((left, slice(0, split)), (right, slice(split, filters))):
        params[branch_id] = {name: value[..., part] for name, value in layer.items()}
    nodes = []
    for n in arch.nodes:
        if n.id == node_id:
            nodes += [n.replace(id=left, attrs=n.attrs.replace(filters=split)),
                      n.replace(id=right, attrs=n.attrs.replace(filters=filters - split)),
                      Node(node_id, "Concat", (left, right))]
        else:
            nodes.append(n)
    return arch.replace_nodes(nodes), join_variables(params, stats, was_full)
