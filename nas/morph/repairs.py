"""Manas's model repairs (ICSE'22 s4.3): IR rewrites applied to mined models before search.

They are not function-preserving (the repaired model is trained afresh).
Each returns ``(new_arch, changes)``; `changes` lists one dict per edit and is
empty, with the architecture returned unchanged, when the model already
complies, so every repair is idempotent.
"""

from __future__ import annotations

from nas.ir import Arch, Attrs, Node
from nas.morph.graph import CONVS, POOLS, fresh_id, has_conv_upstream

# Ops between a conv and "its" activation that keep it the conv's activation.
_CONV_BODY_THROUGH = ("BatchNorm", "Dropout", "Identity", "ZeroPadding2D") + POOLS


def _readers(arch: Arch, node_id: str) -> list[Node]:
    return [n for n in arch.nodes if node_id in n.inputs]


def _insert(arch: Arch, after: Node, new: Node) -> Arch:
    """`new` reads `after`; every other reader of `after` now reads `new`."""
    nodes = []
    for n in arch.nodes:
        if n.id != new.id and after.id in n.inputs:
            n = n.replace(inputs=tuple(new.id if i == after.id else i for i in n.inputs))
        nodes.append(n)
        if n.id == after.id:
            nodes.append(new)
    outputs = tuple(new.id if o == after.id else o for o in arch.outputs)
    return arch.replace_nodes(nodes, outputs=outputs)


def _activated_layer(arch: Arch, node: Node) -> Node:
    """The layer an Activation node belongs to (looking back through BN/pool/dropout)."""
    source = arch.node(node.inputs[0])
    while source.op in _CONV_BODY_THROUGH:
        source = arch.node(source.inputs[0])
    return source


def insert_batchnorm(arch: Arch, momentum: float | None = None) -> tuple[Arch, list[dict]]:
    """BatchNorm between every conv and the activation that directly follows it.

    `momentum` sets the new layers' running-average momentum (None: the IR's
    default, Keras's 0.99). A short training budget wants less: at 0.99 the
    running statistics that evaluation uses are still far from the data's
    after a few hundred steps.
    """
    changes = []
    attrs = Attrs() if momentum is None else Attrs(momentum=float(momentum))
    for act in [n for n in arch.nodes if n.op == "Activation"]:
        conv = arch.node(act.inputs[0])
        if conv.op in CONVS:
            bn = Node(fresh_id(arch, f"{conv.id}_bn"), "BatchNorm", (conv.id,), attrs)
            arch = _insert(arch, conv, bn)
            changes.append({"repair": "insert_batchnorm", "conv": conv.id, "node": bn.id})
    return arch, changes


def flatten_to_gap(arch: Arch) -> tuple[Arch, list[dict]]:
    """Flatten after a conv body -> GlobalAvgPool (an MLP's Flatten of the raw input stays)."""
    changes = []
    nodes = []
    for n in arch.nodes:
        if n.op == "Flatten" and has_conv_upstream(arch, n.inputs[0]):
            n = n.replace(op="GlobalAvgPool", attrs=Attrs())
            changes.append({"repair": "flatten_to_gap", "node": n.id})
        nodes.append(n)
    return (arch.replace_nodes(nodes), changes) if changes else (arch, [])


def relu_activations(arch: Arch) -> tuple[Arch, list[dict]]:
    """Every conv layer's activation becomes ReLU (the head's activations are left alone)."""
    changes = []
    nodes = []
    for n in arch.nodes:
        if (n.op == "Activation" and n.attrs["fn"] != "relu" and n.id not in arch.outputs
                and _activated_layer(arch, n).op in CONVS):
            changes.append({"repair": "relu_activations", "node": n.id, "was": n.attrs["fn"]})
            n = n.replace(attrs=n.attrs.replace(fn="relu"))
        nodes.append(n)
    return (arch.replace_nodes(nodes), changes) if changes else (arch, [])


def add_dropout(arch: Arch, conv_rate: float = 0.25, dense_rate: float = 0.5) -> tuple[Arch, list[dict]]:
    """Dropout(conv_rate) after each conv block's pooling, Dropout(dense_rate) after each
    hidden Dense layer's activation, where no Dropout follows already."""
    changes = []
    sites = []
    for n in arch.nodes:
        if n.id in arch.outputs:
            continue
        if n.op in POOLS and has_conv_upstream(arch, n.inputs[0]):
            sites.append((n.id, conv_rate, "conv_block"))
        elif n.op == "Activation" and _activated_layer(arch, n).op == "Dense":
            sites.append((n.id, dense_rate, "dense_head"))
    for site, rate, where in sites:
        readers = _readers(arch, site)
        if readers and all(r.op == "Dropout" for r in readers):
            continue
        drop = Node(fresh_id(arch, f"{site}_drop"), "Dropout", (site,), Attrs(rate=rate))
        arch = _insert(arch, arch.node(site), drop)
        changes.append({"repair": "add_dropout", "after": site, "node": drop.id, "rate": rate, "where": where})
    return arch, changes
