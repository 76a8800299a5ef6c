"""Manas's adaptation and transformation steps (ICSE'22 s4.4-4.5) on the IR.

`adapt` rewrites a mined model for the user's data, so that it is a valid
architecture for their input shape and head width:

1. Input: the Input node's shape becomes the dataset's input shape.
2. Head: the last Dense layer (the classifier) gets the dataset's number of
   outputs, and the Activation/Dropout/Identity nodes after it (Keras's
   ``softmax``/``sigmoid`` output activation) are removed, so the model ends in
   logits like `nas.ir.builders`' models (the trainer applies softmax
   cross-entropy itself).
3. Downsampling: shapes are inferred for the new input; where a layer's
   window no longer fits (a 'valid' window larger than its input, which is how
   a mined 224x224 model's fifth 2x2 pooling meets a 1x1 map on 28x28 data),
   that step is neutralised and inference repeats: a pooling layer is removed
   (its readers read its input), a conv layer gets 'same' padding (it keeps its
   weights' shape and its stride). 'same' windows and strides never drive a
   size below 1, so they are left as mined.
4. Channels: when the data has other input channels than the mined model and
   shapes then fail (a residual Add on the input, a grouped conv, a depthwise
   conv's channel multiple), a 1x1 conv from the data's channels to the mined
   ones is put after the Input; the rest of the model stays as mined. (Manas
   itself only matches models with the data's channels; this serves the case
   where no such model exists.)
5. Flatten: when the new input makes a Flatten after the conv body more than
   `flatten_growth` times as wide as it was for the mined input (the Dense
   after it would grow as much), or when shapes still do not fit after it,
   Flatten becomes GlobalAvgPool (`nas.morph.flatten_to_gap`, which rewrites
   every Flatten after a conv body), the paper's own cure for input-size
   mismatch.

The result is `validate()`d; whatever cannot be adapted raises `AdaptError`
(a `nas.ir.InvalidArchError`) naming the node. `apply_manas_repairs` chains the
paper's transformations (BatchNorm between conv and activation, Flatten ->
GlobalAvgPool, ReLU in the conv body) for the RQ2 ablation arms; dropout is a
separate, later step that the search decides on: `dropout_variant` builds the
variants it chooses between. Imports `nas.ir`, `nas.morph` and `nas.mining.errors`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from nas.ir import Arch, Attrs, InvalidArchError, Node, ShapeError
from nas.mining.errors import MiningError
from nas.morph import add_dropout, flatten_to_gap, insert_batchnorm, relu_activations
from nas.morph.graph import CONVS, POOLS, fresh_id, has_conv_upstream, insert_after

# Nodes after the classifier that only shape its output (Keras's output activation).
_HEAD_TAIL = ("Activation", "Dropout", "Identity")
DEFAULT_FLATTEN_GROWTH = 4.0

REPAIRS: dict[str, Callable[[Arch], tuple[Arch, list[dict]]]] = {
    "insert_batchnorm": insert_batchnorm,
    "flatten_to_gap": flatten_to_gap,
    "relu_activations": relu_activations,
    "add_dropout": add_dropout,
}
# Applied before search (s4.5: "all the transformations except Dropout").
MANAS_REPAIRS = ("insert_batchnorm", "flatten_to_gap", "relu_activations")
# RQ2's arms: Original Manas (no transformation) and Transformed Manas.
ABLATION_ARMS: dict[str, tuple[str, ...]] = {"original": (), "transformed": MANAS_REPAIRS}
# s4.5's dropout rule and its parts: which of `add_dropout`'s sites get a Dropout.
DROPOUT_RULES: dict[str, tuple[str, ...]] = {
    "none": (), "conv": ("conv_block",), "dense": ("dense_head",), "both": ("conv_block", "dense_head")}


class AdaptError(InvalidArchError, MiningError):
    """A mined model cannot be adapted to the data (the message names the node and why)."""


def _remove(arch: Arch, node_id: str) -> Arch:
    """Drops a unary node; its readers (and the outputs) read its input instead."""
    node = arch.node(node_id)
    (source,) = node.inputs
    nodes = [n.replace(inputs=tuple(source if i == node_id else i for i in n.inputs))
             for n in arch.nodes if n.id != node_id]
    outputs = tuple(source if o == node_id else o for o in arch.outputs)
    return arch.replace_nodes(nodes, outputs=outputs)


def _set_attrs(arch: Arch, node_id: str, **changes) -> Arch:
    return arch.replace_nodes([n.replace(attrs=n.attrs.replace(**changes)) if n.id == node_id else n
                               for n in arch.nodes])


def _set_input_shape(arch: Arch, shape: tuple[int, ...]) -> tuple[Arch, list[dict]]:
    node = arch.input_node
    was = node.attrs.get("shape")
    if was is not None and tuple(was) == shape:
        return arch, []
    arch = _set_attrs(arch, node.id, shape=shape)
    return arch, [{"adapt": "input_shape", "node": node.id, "was": None if was is None else list(was),
                   "now": list(shape)}]


def _set_head(arch: Arch, outputs: int) -> tuple[Arch, list[dict]]:
    """The last Dense becomes the output with `outputs` units; what followed it goes."""
    if len(arch.outputs) != 1:
        raise AdaptError(None, f"adaptation needs a single-output model, got outputs {list(arch.outputs)}")
    changes = []
    node = arch.node(arch.output_id)
    while node.op in _HEAD_TAIL:
        if len(arch.consumers(node.inputs[0])) > 1:
            raise AdaptError(node.id, "the output layer's input is read elsewhere too; cannot find the classifier",
                             node.op)
        described = node.attrs.get("fn", node.attrs.get("rate"))
        arch = _remove(arch, node.id)
        changes.append({"adapt": "remove_output_layer", "node": node.id, "op": node.op, "was": described})
        node = arch.node(arch.output_id)
    if node.op != "Dense":
        raise AdaptError(node.id, "the model does not end in a Dense classifier (after its output activation); "
                         "cannot set its number of outputs", node.op)
    if node.attrs["units"] != outputs:
        changes.append({"adapt": "head_units", "node": node.id, "was": node.attrs["units"], "now": outputs})
        arch = _set_attrs(arch, node.id, units=outputs)
    return arch, changes


def _conv_flattens(arch: Arch) -> list[str]:
    return [n.id for n in arch.nodes if n.op == "Flatten" and has_conv_upstream(arch, n.inputs[0])]


def _add_channel_adapter(arch: Arch, channels: int) -> tuple[Arch, dict]:
    """A 1x1 conv from the data's channels to the `channels` the mined layers expect."""
    source = arch.input_node
    rank = len(source.attrs["shape"])
    adapter = Node(fresh_id(arch, "channel_adapter"), "Conv2D" if rank == 3 else "Conv1D", (source.id,),
                   Attrs(filters=channels, kernel_size=1))
    arch = insert_after(arch, source.id, [adapter], adapter.id)
    return arch, {"adapt": "channel_adapter", "node": adapter.id, "was": source.attrs["shape"][-1], "now": channels}


def _fit_shapes(arch: Arch, mined_channels: int | None) -> tuple[Arch, list[dict]]:
    """Neutralises the downsampling that no longer fits, one failing node at a time."""
    changes: list[dict] = []
    for _ in range(2 * len(arch.nodes) + 4):
        try:
            arch.shapes()
            return arch, changes
        except ShapeError as exc:
            node = arch.node(exc.node_id) if exc.node_id in arch else None
            if node is not None and node.op in POOLS:
                arch = _remove(arch, node.id)
                changes.append({"adapt": "remove_pooling", "node": node.id, "why": exc.reason})
            elif (node is not None and node.op in CONVS
                  and node.normalized_attrs().get("padding") == "valid" and "does not fit" in exc.reason):
                arch = _set_attrs(arch, node.id, padding="same")
                changes.append({"adapt": "same_padding", "node": node.id, "why": exc.reason})
            elif (mined_channels is not None and arch.input_node.attrs["shape"][-1] != mined_channels
                  and len(arch.input_node.attrs["shape"]) in (2, 3)
                  and not any(c["adapt"] == "channel_adapter" for c in changes)):
                arch, change = _add_channel_adapter(arch, mined_channels)
                changes.append(dict(change, why=f"node {exc.node_id!r}: {exc.reason}"))
            elif _conv_flattens(arch) and not any(c["adapt"] == "flatten_to_gap" for c in changes):
                arch, repaired = flatten_to_gap(arch)
                changes.extend({"adapt": "flatten_to_gap", "node": c["node"], "why": exc.reason} for c in repaired)
            else:
                raise AdaptError(exc.node_id, f"does not fit the new input shape {list(arch.input_node.attrs['shape'])}"
                                 f" and adaptation has no rule for it: {exc.reason}", exc.op) from None
    raise AdaptError(None, "shape adaptation did not converge")  # each round removes or fixes a node


def _flatten_widths(arch: Arch) -> dict[str, int]:
    """Features out of each conv body's Flatten, for the declared input ({} if unknown)."""
    if arch.input_node.attrs.get("shape") is None:
        return {}
    try:
        shapes = arch.shapes()
    except InvalidArchError:
        return {}
    return {i: math.prod(shapes[i]) for i in _conv_flattens(arch)}


def _shrink_flatten(arch: Arch, before: dict[str, int], growth: float) -> tuple[Arch, list[dict]]:
    """Flatten -> GlobalAvgPool when the new input widens a Flatten more than `growth` times."""
    after = _flatten_widths(arch)
    grown = {i: (before[i], after[i]) for i in after if i in before and after[i] > growth * before[i]}
    if not grown:
        return arch, []
    arch, repaired = flatten_to_gap(arch)
    widths = {i: f"{b} -> {a} features" for i, (b, a) in grown.items()}
    return arch, [{"adapt": "flatten_to_gap", "node": c["node"],
                   "why": widths.get(c["node"], "with the other Flatten layers")} for c in repaired]


def adapt(
    arch: Arch,
    input_shape: Sequence[int],
    outputs: int,
    *,
    flatten_growth: float = DEFAULT_FLATTEN_GROWTH,
) -> tuple[Arch, list[dict]]:
    """Rewrites a mined model for the user's input shape and number of outputs.

    Args:
      arch: the mined architecture (left unchanged).
      input_shape: the data's per-example shape, channels last
        (`Dataset.input_shape`).
      outputs: the head's width (`Dataset.num_outputs`: classes, or 1 for
        regression).
      flatten_growth: replace a conv body's Flatten by GlobalAvgPool when the
        new input makes it more than this many times wider than the mined
        input did (``math.inf``: only when shapes require it).
    Returns:
      ``(adapted, changes)``; `changes` lists one dict per edit (key
      ``adapt`` names the rule) and is empty when the model already fits.
    Raises:
      AdaptError: no classifier at the end, several outputs, or a shape
        problem no rule covers; other `nas.ir` errors if the mined graph is
        itself invalid.
    """
    if flatten_growth < 1:
        raise ValueError(f"flatten_growth must be at least 1, got {flatten_growth!r}")
    if isinstance(outputs, bool) or not isinstance(outputs, int) or outputs < 1:
        raise ValueError(f"outputs must be a positive integer, got {outputs!r}")
    mined_widths = _flatten_widths(arch)  # the mined model's own Flatten widths, where it has a shape
    mined_shape = arch.input_node.attrs.get("shape")
    arch, changes = _set_input_shape(arch, tuple(int(d) for d in input_shape))
    arch, head = _set_head(arch, outputs)
    arch, fitted = _fit_shapes(arch, None if mined_shape is None else mined_shape[-1])
    arch, flattened = _shrink_flatten(arch, mined_widths, flatten_growth)
    return arch.validate(), changes + head + fitted + flattened


def apply_manas_repairs(arch: Arch, repairs: Sequence[str] = MANAS_REPAIRS,
                        bn_momentum: float | None = None) -> tuple[Arch, list[dict]]:
    """Applies the named repairs (`REPAIRS`) in order; ``()`` is Original Manas.

    Args:
      arch: the (adapted) model.
      repairs: names from `REPAIRS`; the default `MANAS_REPAIRS` is what
        Manas applies before search (BatchNorm, GlobalAvgPool, ReLU), and
        `ABLATION_ARMS` names the RQ2 settings.
      bn_momentum: the inserted BatchNorm layers' momentum (None: the IR's).
    Returns:
      ``(repaired, changes)``, the changes of every repair in order.
    """
    unknown = [r for r in repairs if r not in REPAIRS]
    if unknown:
        raise ValueError(f"unknown repair(s) {unknown}; choose from {sorted(REPAIRS)}")
    changes: list[dict] = []
    for name in repairs:
        if name == "insert_batchnorm":
            arch, made = insert_batchnorm(arch, momentum=bn_momentum)
        else:
            arch, made = REPAIRS[name](arch)
        changes.extend(made)
    return arch.validate(), changes


def dropout_variant(arch: Arch, rule: str, *, conv_rate: float = 0.25,
                    dense_rate: float = 0.5) -> tuple[Arch, list[dict]]:
    """The model with one of s4.5's dropout rules applied (`DROPOUT_RULES`).

    ``both`` is `nas.morph.add_dropout` (Dropout(`conv_rate`) after each conv
    block's pooling, Dropout(`dense_rate`) after each hidden Dense layer's
    activation), ``conv`` and ``dense`` keep one kind of those sites, ``none``
    leaves the model as it is. Dropout layers the model already has stay. A
    Dropout has no weights, so the variant takes the model's variables as
    they are (at inference it computes the same function).

    Returns:
      ``(variant, changes)``: `add_dropout`'s changes for the Dropout layers kept.
    """
    if rule not in DROPOUT_RULES:
        raise ValueError(f"unknown dropout rule {rule!r}; choose from {sorted(DROPOUT_RULES)}")
    for name, rate in (("conv_rate", conv_rate), ("dense_rate", dense_rate)):
        if not 0.0 < rate < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {rate!r}")
    keep = DROPOUT_RULES[rule]
    if not keep:
        return arch, []
    variant, changes = add_dropout(arch, conv_rate=conv_rate, dense_rate=dense_rate)
    for change in changes:
        if change["where"] not in keep:
            variant = _remove(variant, change["node"])
    return variant.validate(), [c for c in changes if c["where"] in keep]
