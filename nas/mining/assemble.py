"""From a mined layer graph to a `MinedModel`: node ids, IR nodes, support, completeness.

The rule for ``arch`` (the decision the miner documents):

* Every model keeps its layers in ``MinedModel.layers``, IR op or not.
* ``arch`` is an IR `Arch` exactly when every layer maps to an IR op
  (``supported``), no layer attribute is unresolved, and the graph passes
  `Arch.validate` (with shapes, when the input shape is known). Otherwise it
  is None and ``issues`` says why. No placeholder values are ever written:
  a Dense whose units are ``num_classes`` computed from data has no IR form.
* An unresolved *input shape* does not block the arch: the IR's Input node
  may lack a shape, which is what the source says. The model is then not
  ``complete`` (Manas requires the input layer to carry a shape) and the
  marker is listed in ``unresolved``.
* ``complete`` is Manas's test (conv, activation and linear layers, an input
  shape) and, beyond it, no unresolved marker on any layer: a model with a
  ``repeat`` of unknown count or a Dense of unknown units is not the model
  its source builds. An unresolved *optimizer* argument does not make a
  model incomplete; the architecture is still the one written.
* Data format: the IR is channels-last. A model whose layers say
  channels-first (``data_format='channels_first'``, ``dim_ordering='th'``,
  or the file's ``set_image_data_format``) has its input shape transposed.
  When a model says nothing and its declared input shape fails shape
  inference read channels-last but passes read channels-first (Keras 1 code
  written for Theano's default), the channels-first reading is kept and
  recorded in ``issues``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Sequence

from nas.ir import Arch, Attrs, IRError, Node, ShapeError
from nas.mining.keras_layers import ACTIVATION, CONV, INPUT, LINEAR, LayerCall
from nas.mining.model import MinedLayer, MinedModel, Provenance
from nas.mining.values import Unresolved

_PREFIX = {
    "Input": "input", "Conv2D": "conv", "Conv1D": "conv", "SeparableConv2D": "sepconv",
    "DepthwiseConv2D": "dwconv", "Dense": "dense", "Embedding": "embed", "BatchNorm": "bn",
    "Activation": "act", "MaxPool2D": "maxpool", "AvgPool2D": "avgpool", "MaxPool1D": "maxpool",
    "AvgPool1D": "avgpool", "GlobalAvgPool": "gap", "GlobalMaxPool": "gmp", "Flatten": "flatten",
    "Dropout": "dropout", "Add": "add", "Concat": "concat", "Identity": "identity", "ZeroPadding2D": "pad",
    "Rescaling": "rescale", "ReLU": "relu", "Reshape": "reshape", "UpSampling2D": "upsample",
}
# A Keras Reshape lays out elements in the data's own order; the IR's channels-last
# order differs from a channels-first model's, so its target shape has no IR reading.
_LAYOUT_BOUND = ("Reshape",)


@dataclasses.dataclass(frozen=True)
class Proto:
    """A node of a mined graph before ids are given.

    Attributes:
      uid: creation number; inputs always have smaller uids.
      call: the translated layer call (its inline activation is a separate Proto).
      inputs: uids of the nodes it reads.
      line: source line of the layer's constructor call.
      layer: identity of the Keras layer object; two Protos with one ``layer``
        are one layer applied twice (shared weights).
      loops: source text of the iterables of enclosing loops whose trip count
        is unknown.
      applied: source line where the layer was applied (``model.add(...)``,
        ``layer(x)``), when it differs from ``line``.
    """

    uid: int
    call: LayerCall
    inputs: tuple[int, ...] = ()
    line: int = 0
    layer: int | None = None
    loops: tuple[str, ...] = ()
    applied: int = 0


def _prefix(call: LayerCall) -> str:
    if call.op is not None:
        return _PREFIX.get(call.op, call.op.lower())
    return re.sub(r"[^a-z0-9]+", "", call.keras.lower())[:24] or "unresolved"


def _ids(protos: Sequence[Proto]) -> dict[int, str]:
    counts: dict[str, int] = {}
    ids: dict[int, str] = {}
    taken: set[str] = set()
    inputs = sum(1 for p in protos if p.call.op == "Input")
    for p in protos:
        prefix = _prefix(p.call)
        counts[prefix] = counts.get(prefix, 0) + 1
        name = "input" if p.call.op == "Input" and inputs == 1 else f"{prefix}{counts[prefix]}"
        while name in taken:
            name += "_"
        taken.add(name)
        ids[p.uid] = name
    return ids


def _concat_axis(keras_axis: int, channels_first: bool) -> int | None:
    """Keras's axis counts the batch; the IR's is per example. None: not expressible."""
    if channels_first:
        return {1: -1, 2: 0, 3: 1}.get(keras_axis)
    return keras_axis - 1 if keras_axis > 0 else keras_axis


def _unsupported(layer: MinedLayer, note: str) -> MinedLayer:
    return dataclasses.replace(layer, op=None, note=note)


def _layers(protos: Sequence[Proto], ids: dict[int, str],
            channels_first: bool) -> tuple[list[MinedLayer], dict[str, int], list[str]]:
    """MinedLayers, BatchNorm axes to check against shapes (id -> Keras axis), notes."""
    layers: list[MinedLayer] = []
    pending: dict[str, int] = {}
    issues: list[str] = []
    owner: dict[int, str] = {}
    for p in protos:
        call = p.call
        attrs = dict(call.attrs)
        unresolved = list(call.unresolved)
        note, op = call.note, call.op
        if op == "Input":
            shape = call.input_shape
            if isinstance(shape, Unresolved):
                unresolved.append(("input_shape", shape.expr))
            elif isinstance(shape, tuple):
                if channels_first and len(shape) == 3:
                    issues.append(f"input shape {list(shape)} is channels-first; "
                                  f"stored channels-last as {[shape[1], shape[2], shape[0]]}")
                    shape = (shape[1], shape[2], shape[0])
                attrs["shape"] = shape
        if op == "Concat" and call.keras_axis is not None:
            axis = _concat_axis(call.keras_axis, channels_first)
            if axis is None:
                op, note = None, f"Concatenate axis={call.keras_axis} with channels-first data"
            elif axis != -1:
                attrs["axis"] = axis
        if op in _LAYOUT_BOUND and channels_first:
            op, note = None, f"{call.keras} with channels-first data (the IR is channels-last)"
        if op == "BatchNorm" and call.keras_axis not in (None, -1):
            if not (channels_first and call.keras_axis == 1 or not channels_first and call.keras_axis == 3):
                pending[ids[p.uid]] = call.keras_axis
        unresolved.extend(("repeat", loop) for loop in p.loops)
        shares = owner.get(p.layer) if p.layer is not None else None
        if p.layer is not None and shares is None:
            owner[p.layer] = ids[p.uid]
        layers.append(MinedLayer(
            id=ids[p.uid], keras=call.keras, op=op, kind=call.kind,
            attrs=Attrs(attrs) if op is not None else call.attrs,
            inputs=tuple(ids[i] for i in p.inputs), line=p.line, unresolved=tuple(unresolved),
            dropped=call.dropped, note=note, shares=shares))
    return layers, pending, issues


def _build(layers: Sequence[MinedLayer], outputs: Sequence[str], name: str = "") -> Arch:
    nodes = tuple(Node(layer.id, layer.op, layer.inputs, layer.attrs) for layer in layers)
    inputs = tuple(layer.id for layer in layers if layer.op == "Input")
    return Arch(nodes, inputs, tuple(outputs), name)


def _transposed(layers: Sequence[MinedLayer]) -> list[MinedLayer]:
    out = []
    for layer in layers:
        shape = layer.attrs.get("shape") if layer.op == "Input" else None
        if shape is not None and len(shape) == 3:
            layer = dataclasses.replace(layer, attrs=layer.attrs.replace(shape=(shape[1], shape[2], shape[0])))
        out.append(layer)
    return out


def _check_with_shapes(arch: Arch, layers: list[MinedLayer], pending: dict[str, int],
                       channels_first: bool) -> list[MinedLayer]:
    """BatchNorm axes against input ranks; a positive Concat axis that is the last one becomes the default."""
    shapes = arch.shapes()
    out = []
    for layer in layers:
        if layer.id in pending:
            keras_axis = pending.pop(layer.id)
            rank = len(shapes[layer.inputs[0]])
            if not (keras_axis == rank or channels_first and keras_axis == 1 and rank == 3):
                layer = _unsupported(layer, f"BatchNormalization axis={keras_axis} is not the channel axis")
        elif layer.op == "Concat" and layer.attrs.get("axis", -1) >= 0:
            rank = len(shapes[layer.inputs[0]])
            if layer.attrs["axis"] == rank - 1:
                layer = dataclasses.replace(layer, attrs=Attrs({k: v for k, v in layer.attrs.items() if k != "axis"}))
        out.append(layer)
    return out


def _optimizer_markers(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        if set(value) == {"unresolved"}:
            yield str(value["unresolved"])
        else:
            for v in value.values():
                yield from _optimizer_markers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _optimizer_markers(v)


def assemble(protos: Sequence[Proto], outputs: Sequence[int], *, provenance: Provenance,
             optimizer: dict[str, Any] | None = None, loss: str | None = None) -> MinedModel:
    """Gives ids, builds and validates the IR, and judges support and completeness.

    Args:
      protos: the model's nodes, inputs before the nodes that read them.
      outputs: uids of the output nodes.
      provenance: where the model was built; its line span is widened to the protos' lines.
      optimizer: the compiled optimizer dict, if any.
      loss: the compiled loss, if a string.
    Returns:
      The `MinedModel` (see the module docstring for when ``arch`` is set).
    """
    protos = sorted(protos, key=lambda p: p.uid)
    ids = _ids(protos)
    channels_first = any(p.call.channels_first for p in protos)
    layers, pending, issues = _layers(protos, ids, channels_first)
    output_ids = [ids[o] for o in outputs if o in ids]

    lines = [n for p in protos for n in (p.line, p.applied) if n]
    lines += [n for n in (provenance.first_line, provenance.last_line) if n]
    if lines:
        provenance = dataclasses.replace(provenance, first_line=min(lines), last_line=max(lines))

    sources = [layer for layer in layers if not layer.inputs]
    structural: list[str] = []
    if len(sources) != 1 or sources[0].op != "Input":
        structural.append(f"the IR holds one Input; the model has {len(sources)} source node(s)"
                          + ("" if all(s.op == "Input" for s in sources) else ", not all of them Input layers"))
    if not output_ids:
        structural.append("the model has no output")

    arch = None
    blocking = [layer for layer in layers
                if [u for u in layer.unresolved if not (layer.op == "Input" and u[0] == "input_shape")]]
    if all(layer.supported for layer in layers) and not structural and not blocking:
        arch, layers, more = _validated(layers, output_ids, pending, channels_first)
        issues.extend(more)
        if arch is not None and provenance.path:
            # The name plays no part in the hash; it labels summaries with the model's origin.
            arch = dataclasses.replace(arch, name=f"{provenance.path}:{provenance.first_line}")
    # BatchNorm axes no shape could confirm are not taken to be the channel axis.
    layers = [_unsupported(layer, f"BatchNormalization axis={pending[layer.id]} could not be checked "
                                  "against the input rank") if layer.id in pending else layer for layer in layers]
    if pending:
        arch = None
    for layer in layers:
        if layer.op is None:
            issues.append(f"{layer.id}: {layer.note or 'no IR op'}")
        elif layer.shares is not None:
            issues.append(f"{layer.id}: reuses the weights of {layer.shares}; the IR has no weight sharing")
        for arg, expr in layer.unresolved:
            if layer.op == "Input" and arg == "input_shape":
                issues.append(f"{layer.id}: input shape unresolved ({expr})")
            elif arg == "repeat":
                issues.append(f"{layer.id}: inside a loop with an unknown trip count ({expr})")
            else:
                issues.append(f"{layer.id}: {arg} unresolved ({expr})")
    issues.extend(structural)

    supported = not structural and all(layer.supported for layer in layers)
    kinds = {layer.kind for layer in layers}
    first_input = next((layer for layer in layers if layer.op == "Input"), None)
    # A layer with an unresolved attribute or an unknown repeat count is not
    # the model the source builds, so the model is not complete (Manas 4.1).
    complete = ({CONV, ACTIVATION, LINEAR} <= kinds and first_input is not None
                and first_input.attrs.get("shape") is not None and not any(layer.unresolved for layer in layers))
    unresolved = [expr for layer in layers for _, expr in layer.unresolved]
    unresolved.extend(_optimizer_markers(optimizer))
    return MinedModel(tuple(layers), arch, optimizer, loss, provenance, complete, supported,
                      tuple(dict.fromkeys(unresolved)), tuple(dict.fromkeys(issues)))


def _validated(layers: list[MinedLayer], outputs: Sequence[str], pending: dict[str, int],
               channels_first: bool) -> tuple[Arch | None, list[MinedLayer], list[str]]:
    """Validates the IR, with the channels-first retry and the shape-dependent checks.

    ``pending`` loses the BatchNorm axes the shapes settle.
    """
    has_shape = any(layer.op == "Input" and "shape" in layer.attrs for layer in layers)
    notes: list[str] = []
    arch = _build(layers, outputs)
    try:
        arch.validate()
    except ShapeError as exc:
        if channels_first or any(layer.op in _LAYOUT_BOUND for layer in layers):
            return None, layers, [f"invalid IR: {exc}"]
        flipped = _transposed(layers)
        try:
            arch = _build(flipped, outputs).validate()
        except IRError:
            return None, layers, [f"invalid IR: {exc}"]
        shape = next(layer.attrs["shape"] for layer in layers if layer.op == "Input")
        layers, channels_first = flipped, True
        notes.append(f"input shape {list(shape)} read channels-first (read channels-last it fails shape "
                     f"inference: {exc})")
    except IRError as exc:
        return None, layers, [f"invalid IR: {exc}"]
    if not has_shape:
        return arch, layers, notes
    checked = _check_with_shapes(arch, layers, pending, channels_first)
    if any(layer.op is None for layer in checked):
        return None, checked, notes
    if checked != layers:
        arch = _build(checked, outputs)
    return arch, checked, notes
