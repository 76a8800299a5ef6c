"""Model graphs: the nodes of a Keras model object, and the `MinedModel` assembled from them.

A Sequential model's items become a chain (an Input first where its first
layer names a shape or the model was built with one); a functional model is
the ancestors of its outputs; a subclassed model, and a custom Layer
subclass added to a Sequential one, is traced through ``call`` on a fresh
Input. A model used as a layer of another is copied in, its
inputs replaced. Every node built or walked is charged to `MAX_GRAPH_NODES`.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any, Sequence

from nas.mining.assemble import Proto, assemble
from nas.mining.interp_objects import _NO_SITE, _Func, _Instance, _Site, _flatten
from nas.mining.keras_layers import INPUT, OTHER, LayerCall, opaque_call, translate_layer
from nas.mining.keras_objects import _App, _Functional, _ModelState, _Sequential, _Tensor
from nas.mining.model import MinedModel, Provenance
from nas.mining.values import Unresolved


class ModelGraphs:
    """Graphs of model objects and their snapshots as mined models (a mixin of `KerasSemantics`)."""

    def _apply_model(self, model: Any, inputs: Any, site: _Site) -> Any:
        """A model used as a layer: its graph copied in, its inputs replaced by ``inputs``."""
        graph = self._model_graph(model)
        if isinstance(model, _ModelState):
            model.consumed = True
        elif isinstance(model, _Instance) and model.model is not None:
            model.model.consumed = True
        if graph is None:
            tensors = [v.uid for v in _flatten([inputs]) if isinstance(v, _Tensor)]
            return self._opaque("model", tensors, site) if tensors else Unresolved(self.text(site.node))
        protos, ins, outs = graph
        sources = self._input_uids(inputs, site)
        mapping = dict(zip(ins, sources))
        for p in protos:
            self._graph_tick()
            if p.uid in mapping:
                continue
            if p.call.op == "Input" and not p.inputs:
                mapping[p.uid] = self._add_node(p.call, (), p.line, p.layer)
                continue
            mapping[p.uid] = self._add_node(p.call, tuple(mapping[i] for i in p.inputs), p.line, p.layer,
                                            site.line)
        results = [_Tensor(mapping[o]) for o in outs if o in mapping]
        return results[0] if len(results) == 1 else results

    def _model_graph(self, model: Any) -> tuple[list[Proto], list[int], list[int]] | None:
        """(protos, input uids, output uids) of a model object, or None when it has no graph."""
        if isinstance(model, _Sequential):
            return self._sequential_graph(model)
        if isinstance(model, _Functional):
            protos = self._ancestors(model.outputs)
            return protos, list(model.inputs), list(model.outputs)
        if isinstance(model, _App):
            return list(model.protos), [model.input_uid], [model.output_uid]
        if isinstance(model, _Instance):
            if model.seq is not None:
                return self._sequential_graph(model.seq)
            if (model.model is not None or model.keras == "layer") and not self.stopped:
                return self._subclass_graph(model)
        return None

    def _ancestors(self, outputs: Sequence[int]) -> list[Proto]:
        seen: set[int] = set()
        stack = list(outputs)
        while stack:
            uid = stack.pop()
            if uid in seen or uid not in self.nodes:
                continue
            self._graph_tick()
            seen.add(uid)
            stack.extend(self.nodes[uid].inputs)
        return [self.nodes[uid] for uid in sorted(seen)]

    def _sequential_graph(self, seq: _Sequential) -> tuple[list[Proto], list[int], list[int]] | None:
        protos: list[Proto] = []
        inputs: list[int] = []
        prev: int | None = None

        def add(call: LayerCall, ins: tuple[int, ...], line: int, layer: int | None, loops: tuple[str, ...],
                applied: int = 0) -> int:
            self._graph_tick()
            uid = self._next_uid()
            protos.append(Proto(uid, call, ins, line, layer, loops, applied if applied != line else 0))
            return uid

        def start(call: LayerCall | None, line: int) -> int:
            shape = call.input_shape if call is not None else None
            if shape is None and seq.build_shape is not None:
                shape = translate_layer("Input", (), {"batch_shape": seq.build_shape}).input_shape
            cf = call.channels_first if call is not None else None
            uid = add(LayerCall("InputLayer", "Input", INPUT, input_shape=shape, channels_first=cf), (), line, None,
                      ())
            inputs.append(uid)
            return uid

        for kind, payload, line, loops, _ in seq.items:
            if kind == "layer":
                call = payload.call
                if call.op == "Input" and call.kind == INPUT:
                    if prev is None:
                        prev = add(call, (), payload.line, None, loops)
                        inputs.append(prev)
                    continue
                if prev is None:
                    prev = start(call, payload.line)
                prev = add(call.without_activation(), (prev,), payload.line, payload.uid, loops, line)
                if call.activation is not None:
                    prev = add(call.activation, (prev,), payload.line, None, loops, line)
            elif kind == "tensor":
                if prev is None and payload in self.nodes:
                    node = self.nodes[payload]
                    prev = add(node.call, (), node.line, None, loops)
                    inputs.append(prev)
            elif kind == "model":
                graph = self._model_graph(payload)
                if graph is None:
                    if prev is None:
                        prev = start(None, line)
                    prev = add(opaque_call("model"), (prev,), line, None, loops)
                    continue
                sub, sub_ins, sub_outs = graph
                mapping: dict[int, int] = {}
                for p in sub:
                    if p.uid in sub_ins and prev is not None:
                        mapping[p.uid] = prev
                    else:
                        mapping[p.uid] = add(p.call, tuple(mapping[i] for i in p.inputs if i in mapping),
                                             p.line, p.layer, p.loops + loops, p.applied)
                        if not p.inputs and prev is None:
                            inputs.append(mapping[p.uid])
                if sub_outs and sub_outs[0] in mapping:
                    prev = mapping[sub_outs[0]]
            else:  # an unresolved item
                if prev is None:
                    prev = start(None, line)
                prev = add(dataclasses.replace(opaque_call(payload), kind=OTHER,
                                               unresolved=(("layer", payload),)), (prev,), line, None, loops)
        if prev is None or len(protos) <= len(inputs):
            return None
        return protos, inputs, [prev]

    def _subclass_graph(self, inst: _Instance) -> tuple[list[Proto], list[int], list[int]] | None:
        """Traces ``call`` of a Keras Model (or custom Layer) subclass on a fresh Input.

        The Input's shape is the one ``model.build(shape)`` gave, else the one
        ``@tf.function(input_signature=[tf.TensorSpec(shape)])`` on ``call``
        declares; the class's own ``build`` runs first, as Keras runs it.
        """
        state = inst.model
        call = self._class_attr(inst.cls, "call")
        if not isinstance(call, _Func):
            return None
        shape = state.build_shape if state is not None else None
        if shape is None:
            shape = signature_shape(call.node)
        kwargs = {} if shape is None else {"batch_shape": shape}
        line = state.line if state is not None else getattr(inst.cls.node, "lineno", 0)
        input_uid = self._add_node(translate_layer("Input", (), kwargs, channels_first=self.channels_first), (),
                                   line, None)
        self._build_before_call(inst, Unresolved("input_shape") if shape is None else shape)
        out = self._invoke(call, [inst, _Tensor(input_uid)], {}, _NO_SITE)
        outs = [v.uid for v in _flatten([out]) if isinstance(v, _Tensor)]
        if not outs:
            return None
        return self._ancestors(outs), [input_uid], outs

    # ------------------------------------------------------------ end of a variant
    def _trace_subclassed(self) -> None:
        for obj in self.models:
            if isinstance(obj, _Instance) and obj.model is not None and not obj.model.consumed:
                self.traced[id(obj)] = self._subclass_graph(obj)

    def _snapshot(self, obj: Any) -> MinedModel | None:
        state = obj.model if isinstance(obj, _Instance) else obj
        # A model used as a layer of another is mined as part of it, unless it is
        # also compiled on its own (a GAN's discriminator).
        if state is None or state.consumed and not state.compiled:
            return None
        if isinstance(obj, _Instance):
            graph = self.traced.get(id(obj))
        else:
            graph = self._model_graph(obj)
        if graph is None:
            return None
        protos, _, outputs = graph
        if not any(p.call.op != "Input" for p in protos):
            return None
        provenance = Provenance(self.ctx.path, state.line, state.line)
        return assemble(protos, outputs, provenance=provenance, optimizer=state.optimizer, loss=state.loss)

    # ------------------------------------------------------------ Keras's build-before-call
    def _invoke(self, func: _Func, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        """Notes a subclass's own ``build`` run by the program (``model.build(shape)``), so tracing runs it once."""
        receiver = args[0] if args else None
        if (func.name == "build" and func.owner is not None and isinstance(receiver, _Instance)
                and receiver.keras in ("model", "layer")):
            self._built.add(receiver)
            given = args[1] if len(args) > 1 else kwargs.get("input_shape")
            if receiver.model is not None and receiver.model.build_shape is None and given is not None:
                receiver.model.build_shape = self._plain(given, None)
        return super()._invoke(func, args, kwargs, site)

    def _build_before_call(self, inst: _Instance, shape: Any) -> None:
        """Runs a custom layer's or model's own ``build(input_shape)`` once, before its first ``call``.

        Keras does so on the first call; layers made there
        (``self.dense = Dense(input_shape[-1])``) exist only afterwards.
        """
        build = self._class_attr(inst.cls, "build")
        if isinstance(build, _Func) and inst not in self._built:
            self._invoke(build, [inst, shape], {}, _NO_SITE)

    def _tensor_batch_shape(self, value: Any) -> Any:
        """``(None, *shape)`` of a tensor straight from an Input with a known shape, else an `Unresolved`."""
        node = self.nodes.get(value.uid) if isinstance(value, _Tensor) else None
        if node is not None and node.call.op == "Input" and isinstance(node.call.input_shape, tuple):
            return (None,) + node.call.input_shape
        return Unresolved("input_shape")


def signature_shape(func: ast.AST) -> tuple | None:
    """The batch shape of ``@tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], ...)])``, or None."""
    for deco in getattr(func, "decorator_list", ()):
        if not (isinstance(deco, ast.Call) and _dotted_tail(deco.func) == "function"):
            continue
        signature = next((k.value for k in deco.keywords if k.arg == "input_signature"), None)
        if not (isinstance(signature, (ast.List, ast.Tuple)) and signature.elts):
            continue
        spec = signature.elts[0]
        if not (isinstance(spec, ast.Call) and _dotted_tail(spec.func) == "TensorSpec"):
            continue
        shape = spec.args[0] if spec.args else next((k.value for k in spec.keywords if k.arg == "shape"), None)
        try:
            value = ast.literal_eval(shape) if shape is not None else None
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
        if isinstance(value, (list, tuple)) and len(value) <= 8:
            return tuple(value)
    return None


def _dotted_tail(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None
