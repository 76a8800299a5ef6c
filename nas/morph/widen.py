"""Net2WiderNet (NeuNetS eqs 1-3, extended to separable and depthwise convs).

Widening a layer from o to o' units draws a map g: new unit -> old unit (the
identity on the first o, random replicas after). The layer's outgoing copy of
unit j is old unit g(j); every layer that reads the widened tensor divides its
incoming weights for j by n_{g(j)}, the number of replicas of g(j), so the
sum it computes is unchanged.

The map travels with the data: through channel-wise ops (BatchNorm carries
its scale, offset, mean and variance along), through depthwise convs (which
replicate their per-channel filters and pass a derived map on), through
Flatten (each spatial position repeats the map) and Concat (offsets). At an
Add every summed tensor must carry the same map, so the producers of the
other summands widen together with the same g.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nas.ir import Arch
from nas.morph.errors import MorphError
from nas.morph.graph import CHANNELWISE, join_variables, require, shapes_of, split_variables

WIDENABLE = ("Conv2D", "Conv1D", "SeparableConv2D", "Dense")


def _width(node) -> int:
    return node.attrs["units"] if node.op == "Dense" else node.attrs["filters"]


def _expand(channel_map: np.ndarray, multiplier: int) -> np.ndarray:
    """The map on a depthwise conv's outputs (channel c, multiplier m -> c * dm + m)."""
    return (channel_map[:, None] * multiplier + np.arange(multiplier)).reshape(-1)


def _propagate(arch: Arch, producers: dict[str, np.ndarray], shapes) -> tuple[dict, tuple | None]:
    """Maps of every tensor the widening reaches, or the first Add that needs more producers.

    Returns:
      (maps, None) when consistent, else (maps so far, (add_id, input_id, map)).
    """
    maps: dict[str, np.ndarray] = {}
    for node in arch.topological_order():
        if node.id in producers:
            maps[node.id] = producers[node.id]
        else:
            ins = [maps.get(i) for i in node.inputs]
            if all(m is None for m in ins):
                continue
            op, first = node.op, ins[0]
            if op == "Activation" and node.attrs["fn"] == "softmax":
                raise MorphError(f"cannot widen through softmax {node.id!r}: it normalises across channels")
            if op in CHANNELWISE:
                maps[node.id] = first
            elif op == "DepthwiseConv2D":
                maps[node.id] = _expand(first, node.normalized_attrs()["depth_multiplier"])
            elif op == "Flatten":
                in_shape = shapes[node.inputs[0]]
                positions = int(np.prod(in_shape[:-1]))
                maps[node.id] = (np.arange(positions)[:, None] * in_shape[-1] + first[None, :]).reshape(-1)
            elif op == "Concat":
                rank = len(shapes[node.id])
                if node.normalized_attrs()["axis"] % rank != rank - 1:
                    raise MorphError(f"cannot widen through Concat {node.id!r}: it does not join channels")
                parts, offset = [], 0
                for i, m in zip(node.inputs, ins):
                    width = shapes[i][-1]
                    parts.append((np.arange(width) if m is None else m) + offset)
                    offset += width
                maps[node.id] = np.concatenate(parts)
            elif op == "Add":
                target = next(m for m in ins if m is not None)
                for i, m in zip(node.inputs, ins):
                    if m is None:
                        return maps, (node.id, i, target)
                    if not np.array_equal(m, target):
                        raise MorphError(
                            f"cannot widen: Add {node.id!r} sums tensors widened in different ways")
                maps[node.id] = target
            elif op in ("Conv2D", "Conv1D"):
                if node.normalized_attrs()["groups"] != 1:
                    raise MorphError(f"cannot widen into grouped conv {node.id!r} (groups > 1)")
            elif op in ("SeparableConv2D", "Dense"):
                pass  # reads the widened tensor; its own output is unchanged
            else:
                raise MorphError(f"cannot widen into {node.op} {node.id!r}")
        if node.id in arch.outputs and node.id in maps:
            raise MorphError(f"widening would change the architecture's output {node.id!r}")
    return maps, None


def _summand_producers(arch: Arch, tensor_id: str) -> list[str]:
    """The widenable layers whose output channels make up `tensor_id` one-to-one."""
    node = arch.node(tensor_id)
    if node.op in WIDENABLE:
        return [node.id]
    softmax = node.op == "Activation" and node.attrs["fn"] == "softmax"
    if (node.op in CHANNELWISE and not softmax) or node.op == "Add":
        return [p for i in node.inputs for p in _summand_producers(arch, i)]
    raise MorphError(
        f"cannot widen the summands of an Add: {tensor_id!r} ({node.op}) is not made by a widenable layer")


def channel_maps(arch: Arch, node_id: str, channel_map: np.ndarray, input_shape=None) -> tuple[dict, dict]:
    """(producers, maps): every layer that must widen with `node_id`, and every tensor's map."""
    shapes = shapes_of(arch, input_shape)
    producers = {node_id: channel_map}
    while True:
        maps, conflict = _propagate(arch, producers, shapes)
        if conflict is None:
            return producers, maps
        add_id, input_id, target = conflict
        for producer in _summand_producers(arch, input_id):
            node = arch.node(producer)
            if node.op in ("Conv2D", "Conv1D") and node.normalized_attrs()["groups"] != 1:
                raise MorphError(f"cannot widen: grouped conv {producer!r} (groups > 1) feeds Add {add_id!r}")
            if producer in producers and not np.array_equal(producers[producer], target):
                raise MorphError(f"cannot widen: {producer!r} would need two different widenings (Add {add_id!r})")
            producers[producer] = target


def _read_side(kernel, channel_map: np.ndarray, axis: int):
    """Incoming weights for the widened inputs: replicas share their original's weight / n."""
    counts = np.bincount(channel_map, minlength=kernel.shape[axis]).astype(np.float64)
    scale = jnp.asarray(1.0 / counts[channel_map], kernel.dtype)
    shape = [1] * kernel.ndim
    shape[axis] = -1
    return jnp.take(kernel, channel_map, axis=axis) * scale.reshape(shape)


def _write_side(layer: dict, names: Sequence[str], channel_map: np.ndarray, old_width: int, noise: float, key):
    """Outgoing copies: kernel columns and bias entries of the replicas (plus Net2Net noise)."""
    out = dict(layer)
    for name in names:
        widened = jnp.take(layer[name], channel_map, axis=-1)
        if noise and name != "bias":
            key, sub = jax.random.split(key)
            scale = noise * jnp.std(layer[name])
            fresh = (jnp.arange(len(channel_map)) >= old_width).astype(widened.dtype)
            widened = widened + scale * fresh * jax.random.normal(sub, widened.shape, widened.dtype)
        out[name] = widened
    if "bias" in layer:
        out["bias"] = jnp.take(layer["bias"], channel_map, axis=-1)
    return out


def widen(arch: Arch, variables: dict, node_id: str, new_width: int, key: jax.Array, noise: float = 0.0,
          input_shape: Sequence[int] | None = None) -> tuple[Arch, dict]:
    """Widens a Conv2D, Conv1D, SeparableConv2D (its filters) or hidden Dense layer.

    Args:
      arch: the parent architecture (its Input shape must be known, or pass
        `input_shape`).
      variables: ``{"params", "batch_stats"}`` or bare params of the parent.
      node_id: the layer to widen.
      new_width: filters/units after widening; more than now.
      key: chooses which units are replicated (and the noise).
      noise: Net2Net's symmetry-breaking noise on the replicas' incoming
        weights, relative to the kernel's std; 0 keeps the function exactly.
    Returns:
      (child architecture, child variables in the form given).
    Raises:
      MorphError: not a widenable layer, not wider, or the widening would
        reach the output or a layer that cannot absorb it.
    """
    node = require(arch, node_id, WIDENABLE, "widen")
    old = _width(node)
    if not isinstance(new_width, (int, np.integer)) or new_width <= old:
        raise MorphError(f"widen: {node_id!r} has {old} units; new_width must be larger, got {new_width}")
    if node.op in ("Conv2D", "Conv1D") and node.normalized_attrs()["groups"] != 1:
        raise MorphError(f"widen: {node_id!r} is a grouped conv (groups > 1)")
    pick_key, noise_key = jax.random.split(key)
    extra = np.asarray(jax.random.randint(pick_key, (int(new_width) - old,), 0, old))
    producers, maps = channel_maps(arch, node_id, np.concatenate([np.arange(old), extra]), input_shape)

    params, stats, was_full = split_variables(variables)
    nodes = []
    for n in arch.nodes:
        read = maps.get(n.inputs[0]) if len(n.inputs) == 1 else None
        write = producers.get(n.id)
        if read is None and write is None:
            nodes.append(n)
            continue
        layer = dict(params.get(n.id, {}))
        if n.op in ("Conv2D", "Conv1D", "Dense"):
            if read is not None:
                layer["kernel"] = _read_side(layer["kernel"], read, axis=-2)
        elif n.op == "SeparableConv2D" and read is not None:
            mid = _expand(read, n.normalized_attrs()["depth_multiplier"])
            layer["depthwise_kernel"] = jnp.take(layer["depthwise_kernel"], mid, axis=-1)
            layer["pointwise_kernel"] = _read_side(layer["pointwise_kernel"], mid, axis=-2)
        elif n.op == "DepthwiseConv2D" and read is not None:
            mid = _expand(read, n.normalized_attrs()["depth_multiplier"])
            layer = {k: jnp.take(v, mid, axis=-1) for k, v in layer.items()}
        elif n.op == "BatchNorm" and read is not None:
            if n.id not in stats:
                raise MorphError(f"widen: BatchNorm {n.id!r} needs its batch_stats; pass the full variables")
            layer = {k: jnp.take(v, read, axis=-1) for k, v in layer.items()}
            stats[n.id] = {k: jnp.take(v, read, axis=-1) for k, v in stats[n.id].items()}
        if write is not None:
            noise_key, sub = jax.random.split(noise_key)
            names = ("pointwise_kernel",) if n.op == "SeparableConv2D" else ("kernel",)
            layer = _write_side(layer, names, write, _width(n), noise, sub)
            n = n.replace(attrs=n.attrs.replace(**{"units" if n.op == "Dense" else "filters": len(write)}))
        if layer:
            params[n.id] = layer
        nodes.append(n)
    return arch.replace_nodes(nodes), join_variables(params, stats, was_full)
