"""Small IR edits and queries that every morphism shares.

Weight layout follows `nas.compile`: ``params[node_id]`` per layer. A morphism
takes either full variables ``{"params", "batch_stats"}`` or bare params and
returns the same form.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import jax.numpy as jnp

from nas.ir import Arch, InvalidArchError, Node
from nas.morph.errors import MorphError

CONVS = ("Conv2D", "Conv1D", "SeparableConv2D", "DepthwiseConv2D")
# Windowed (not global) pooling: a conv block's downsampling.
POOLS = ("MaxPool2D", "AvgPool2D", "MaxPool1D", "AvgPool1D")
# Ops whose output channel c depends only on input channel c (and only there).
CHANNELWISE = ("Activation", "Dropout", "Identity", "ZeroPadding2D", "BatchNorm", *POOLS, "GlobalAvgPool",
               "GlobalMaxPool")


def split_variables(variables: dict) -> tuple[dict, dict, bool]:
    """(params, batch_stats, was_full) for either accepted form."""
    if "params" in variables and set(variables) <= {"params", "batch_stats"}:
        return dict(variables["params"]), dict(variables.get("batch_stats", {})), True
    return dict(variables), {}, False


def join_variables(params: dict, batch_stats: dict, was_full: bool) -> dict:
    if not was_full:
        return params
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def shapes_of(arch: Arch, input_shape: Sequence[int] | None) -> dict[str, tuple[int, ...]]:
    try:
        return arch.shapes(input_shape)
    except InvalidArchError as exc:
        raise MorphError(f"cannot morph an architecture whose shapes are unknown: {exc}") from None


def param_dtype(params: dict) -> Any:
    for layer in params.values():
        for leaf in layer.values():
            return jnp.asarray(leaf).dtype
    return jnp.float32


def fresh_id(arch: Arch, base: str, taken: Sequence[str] = ()) -> str:
    """`base`, or `base_2`, `base_3`... whichever no node of `arch` (or `taken`) uses."""
    candidate, n = base, 1
    while candidate in arch or candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def require(arch: Arch, node_id: str, ops: Sequence[str], operator: str) -> Node:
    node = arch.node(node_id)
    if node.op not in ops:
        raise MorphError(f"{operator}: node {node_id!r} is a {node.op}; {operator} applies to {', '.join(ops)}")
    return node


def insert_after(arch: Arch, after_id: str, new_nodes: Sequence[Node], reader_id: str) -> Arch:
    """Puts `new_nodes` right after `after_id`; its former consumers read `reader_id` instead.

    The new nodes themselves keep reading `after_id` as they were built.
    """
    if after_id in arch.outputs:
        raise MorphError(f"cannot insert after {after_id!r}: it is an output of the architecture")
    new_ids = {n.id for n in new_nodes}
    nodes = []
    for node in arch.nodes:
        if node.id not in new_ids and after_id in node.inputs:
            node = node.replace(inputs=tuple(reader_id if i == after_id else i for i in node.inputs))
        nodes.append(node)
        if node.id == after_id:
            nodes.extend(new_nodes)
    return arch.replace_nodes(nodes)


def _upstream(arch: Arch, node_id: str) -> Iterator[Node]:
    """Every node whose output reaches `node_id`, each once, nearest first along each path."""
    stack, seen = list(arch.node(node_id).inputs), set()
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            node = arch.node(i)
            yield node
            stack.extend(node.inputs)


def is_upstream(arch: Arch, ancestor: str, node_id: str) -> bool:
    """Whether `ancestor`'s output reaches `node_id` (strictly before it)."""
    return any(n.id == ancestor for n in _upstream(arch, node_id))


def has_conv_upstream(arch: Arch, node_id: str) -> bool:
    """Whether `node_id` is a conv layer or reads one's output (on any path): it is in a conv body."""
    return arch.node(node_id).op in CONVS or any(n.op in CONVS for n in _upstream(arch, node_id))
