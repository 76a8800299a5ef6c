"""The IR rewrites behind DREAM's architecture actions (`nas.search.dream.actions`).

Each is a pure function of an `Arch` returning a new one (the same object
when nothing applies, so "already applied" is `new is arch`). Rewrites that
retrain from scratch live here; those with a function-preserving weight
transform call `nas.morph` from the actions module. Node ids of the layers a
rewrite keeps never change, so a layer's weights stay keyed the same.
"""

from __future__ import annotations

from typing import Iterable

from nas.ir import Arch, Attrs, Node
from nas.morph import add_dropout
from nas.morph.graph import fresh_id

WEIGHT_LAYERS = ("Conv2D", "Conv1D", "DepthwiseConv2D", "SeparableConv2D", "Dense")
WIDTH_LAYERS = ("Conv2D", "Conv1D", "SeparableConv2D", "Dense")
# The ops that belong to a layer's block after it: [BatchNorm] activation [Dropout].
BLOCK_TAIL = ("BatchNorm", "Activation", "Dropout")
# EfficientNet's MBConv6: the inverted block expands the channels six times before its depthwise conv.
INVERTED_EXPANSION = 6


# ------------------------------------------------------------------ small graph edits
def hidden_activations(arch: Arch) -> list[Node]:
    """Activation nodes inside the network (not an output, not a softmax over classes)."""
    return [n for n in arch.topological_order()
            if n.op == "Activation" and n.id not in arch.outputs and n.attrs["fn"] != "softmax"]


def bypass(arch: Arch, node_ids: Iterable[str]) -> Arch:
    """Removes unary nodes; whoever read one reads its input instead (outputs too)."""
    arch_nodes = {n.id: n for n in arch.nodes}
    gone = set(node_ids)

    def source(i: str) -> str:
        while i in gone:
            i = arch_nodes[i].inputs[0]
        return i

    nodes = [n.replace(inputs=tuple(source(i) for i in n.inputs)) for n in arch.nodes if n.id not in gone]
    return arch.replace_nodes(nodes, outputs=tuple(source(o) for o in arch.outputs))


def prune(arch: Arch) -> Arch:
    """Drops nodes that no output depends on (a removed skip's projection layer)."""
    keep, stack = set(arch.inputs), list(arch.outputs)
    while stack:
        i = stack.pop()
        if i not in keep:
            keep.add(i)
            stack.extend(arch.node(i).inputs)
    if len(keep) == len(arch.nodes):
        return arch
    return arch.replace_nodes([n for n in arch.nodes if n.id in keep])


def block_end(arch: Arch, layer_id: str) -> str:
    """The last node of `layer_id`'s block: the layer, then its sole reader while that is BN/activation/dropout."""
    end = layer_id
    while end not in arch.outputs:
        readers = arch.consumers(end)
        if len(readers) != 1 or readers[0].op not in BLOCK_TAIL:
            break
        end = readers[0].id
    return end


def _with_attrs(arch: Arch, changes: dict[str, dict]) -> Arch:
    if not changes:
        return arch
    return arch.replace_nodes([n.replace(attrs=n.attrs.replace(**changes[n.id])) if n.id in changes else n
                               for n in arch.nodes])


# ------------------------------------------------------------------ model hyperparameters (Table 1, rows 1-2)
def set_activation(arch: Arch, fn: str) -> Arch:
    """Every hidden activation becomes `fn` (the head's softmax or output activation is left)."""
    return _with_attrs(arch, {n.id: {"fn": fn} for n in hidden_activations(arch) if n.attrs["fn"] != fn})


def set_initializer(arch: Arch, initializer: str) -> Arch:
    """Every weight layer's kernel initialiser becomes `initializer` (takes effect when trained afresh)."""
    return _with_attrs(arch, {n.id: {"kernel_init": initializer} for n in arch.nodes
                              if n.op in WEIGHT_LAYERS and n.normalized_attrs()["kernel_init"] != initializer})


# ------------------------------------------------------------------ batch normalisation and dropout
def add_batchnorm(arch: Arch) -> Arch:
    """BatchNorm between every weight layer and the hidden activation that reads it directly."""
    for act in hidden_activations(arch):
        layer = arch.node(act.inputs[0])
        if layer.op in WEIGHT_LAYERS:
            bn = Node(fresh_id(arch, f"{layer.id}_bn"), "BatchNorm", (layer.id,))
            nodes = []
            for n in arch.nodes:
                nodes.append(n.replace(inputs=(bn.id,)) if n.id == act.id else n)
                if n.id == layer.id:
                    nodes.append(bn)
            arch = arch.replace_nodes(nodes)
    return arch


def remove_batchnorm(arch: Arch) -> Arch:
    ids = [n.id for n in arch.nodes if n.op == "BatchNorm"]
    return bypass(arch, ids) if ids else arch


def set_dropout(arch: Arch, rate: float) -> Arch:
    """Every Dropout at `rate`; with none, Dropout(rate) after each conv block's pooling and hidden
    Dense activation (Manas's sites, `nas.morph.add_dropout`); rate 0 removes them all."""
    drops = [n for n in arch.nodes if n.op == "Dropout"]
    if rate == 0:
        return bypass(arch, [n.id for n in drops]) if drops else arch
    if drops:
        return _with_attrs(arch, {n.id: {"rate": rate} for n in drops if n.attrs["rate"] != rate})
    child, changes = add_dropout(arch, conv_rate=rate, dense_rate=rate)
    return child if changes else arch


# ------------------------------------------------------------------ block types
def _main_input(arch: Arch, add: Node) -> str:
    """The Add's input on the longest path from the input: the residual branch, not the shortcut."""
    depth: dict[str, int] = {}
    for n in arch.topological_order():
        depth[n.id] = 1 + max((depth[i] for i in n.inputs), default=0)
    return max(add.inputs, key=lambda i: depth[i])


def to_plain(arch: Arch) -> Arch:
    """A plain chain: skips dropped (each Add keeps its residual branch), separable and
    depthwise convs replaced by ordinary ones of the same output."""
    shapes = arch.shapes() if any(n.op == "DepthwiseConv2D" for n in arch.nodes) else {}
    adds = [n for n in arch.nodes if n.op == "Add"]
    if adds:
        keep = {a.id: _main_input(arch, a) for a in adds}
        nodes = [n for n in arch.nodes if n.id not in keep]
        nodes = [n.replace(inputs=tuple(keep.get(i, i) for i in n.inputs)) for n in nodes]
        # An Add may read another Add: resolve chains.
        while any(i in keep for n in nodes for i in n.inputs):
            nodes = [n.replace(inputs=tuple(keep.get(i, i) for i in n.inputs)) for n in nodes]
        outputs = tuple(keep.get(o, o) for o in arch.outputs)
        arch = prune(arch.replace_nodes(nodes, outputs=outputs))
    nodes = []
    for n in arch.nodes:
        if n.op in ("SeparableConv2D", "DepthwiseConv2D"):
            a = n.normalized_attrs()
            filters = a["filters"] if n.op == "SeparableConv2D" else shapes[n.inputs[0]][-1] * a["depth_multiplier"]
            n = Node(n.id, "Conv2D", n.inputs, Attrs(
                filters=filters, kernel_size=list(a["kernel_size"]), strides=list(a["strides"]),
                padding=a["padding"], dilation=list(a["dilation"]), use_bias=a["use_bias"],
                kernel_init=a["kernel_init"], bias_init=a["bias_init"]))
        nodes.append(n)
    return arch.replace_nodes(nodes) if adds or nodes != list(arch.nodes) else arch


def _plain_convs(arch: Arch, min_kernel: int = 1) -> list[Node]:
    return [n for n in arch.nodes if n.op == "Conv2D" and n.normalized_attrs()["groups"] == 1
            and max(n.normalized_attrs()["kernel_size"]) >= min_kernel]


def to_separable(arch: Arch) -> Arch:
    """Every ungrouped Conv2D becomes a SeparableConv2D of the same filters and window (Xception-like)."""
    convs = {n.id for n in _plain_convs(arch)}
    if not convs:
        return arch
    nodes = []
    for n in arch.nodes:
        if n.id in convs:
            a = n.normalized_attrs()
            n = Node(n.id, "SeparableConv2D", n.inputs, Attrs(
                filters=a["filters"], kernel_size=list(a["kernel_size"]), strides=list(a["strides"]),
                padding=a["padding"], dilation=list(a["dilation"]), use_bias=a["use_bias"],
                kernel_init=a["kernel_init"], bias_init=a["bias_init"]))
        nodes.append(n)
    return arch.replace_nodes(nodes)


def to_inverted(arch: Arch) -> Arch:
    """Every ungrouped Conv2D with a kernel over 1x1 becomes an inverted bottleneck (MBConv):
    1x1 expansion to `INVERTED_EXPANSION` x its input channels, ReLU, the depthwise conv with
    the original window and stride, ReLU, and a 1x1 projection to its filters (which keeps the
    original id, so its readers are unchanged)."""
    convs = _plain_convs(arch, min_kernel=2)
    if not convs:
        return arch
    shapes = arch.shapes()
    targets = {n.id for n in convs}
    nodes, taken = [], [n.id for n in arch.nodes]
    for n in arch.nodes:
        if n.id not in targets:
            nodes.append(n)
            continue
        a = n.normalized_attrs()
        ids = [fresh_id(arch, f"{n.id}_{part}", taken) for part in ("expand", "expand_act", "dw", "dw_act")]
        taken += ids
        expand, expand_act, dw, dw_act = ids
        nodes += [
            Node(expand, "Conv2D", n.inputs, Attrs(filters=shapes[n.inputs[0]][-1] * INVERTED_EXPANSION,
                                                   kernel_size=1, kernel_init=a["kernel_init"])),
            Node(expand_act, "Activation", (expand,), Attrs(fn="relu")),
            Node(dw, "DepthwiseConv2D", (expand_act,), Attrs(
                kernel_size=list(a["kernel_size"]), strides=list(a["strides"]), padding=a["padding"],
                dilation=list(a["dilation"]), kernel_init=a["kernel_init"])),
            Node(dw_act, "Activation", (dw,), Attrs(fn="relu")),
            Node(n.id, "Conv2D", (dw_act,), Attrs(filters=a["filters"], kernel_size=1, use_bias=a["use_bias"],
                                                  kernel_init=a["kernel_init"], bias_init=a["bias_init"])),
        ]
    return arch.replace_nodes(nodes)


# ------------------------------------------------------------------ width and depth (retrained)
def narrow(arch: Arch, factor: float = 0.5) -> Arch:
    """Hidden conv/dense widths times `factor` (at least 1); the caller validates (an Add may no longer fit)."""
    changes = {}
    for n in arch.nodes:
        if n.op in WIDTH_LAYERS and n.id not in arch.outputs:
            key = "units" if n.op == "Dense" else "filters"
            new = max(1, int(n.attrs[key] * factor))
            if new != n.attrs[key]:
                changes[n.id] = {key: new}
    return _with_attrs(arch, changes)


def remove_last_block(arch: Arch) -> Arch:
    """Drops the last hidden weight layer (with its BN/activation/dropout) whose block keeps its
    input's shape, so the rest still fits; the architecture keeps at least one hidden layer."""
    shapes = arch.shapes()
    layers = [n for n in arch.topological_order() if n.op in WEIGHT_LAYERS and n.id not in arch.outputs]
    if len(layers) < 2:
        return arch
    for layer in reversed(layers):
        end = block_end(arch, layer.id)
        if end in arch.outputs or shapes[end] != shapes[layer.inputs[0]]:
            continue
        chain, node = [layer.id], layer.id
        while node != end:
            node = arch.consumers(node)[0].id
            chain.append(node)
        return bypass(arch, chain)
    return arch
