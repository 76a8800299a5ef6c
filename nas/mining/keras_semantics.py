"""Keras semantics: what calls into Keras mean to the interpreter (layers, tensors, models, compile).

`KerasSemantics` fills the hooks of `nas.mining.interpreter.Interpreter`:
names imported from Keras (every spelling: ``keras``, ``tensorflow.keras``,
``tf.keras``, aliases, star imports) are API references (`_Module`); calling
one makes a layer object, a tensor, a model or an optimizer, as
`nas.mining.keras_api` classifies it and `nas.mining.keras_layers` /
`nas.mining.optimizers` translate its arguments. Applied layers become graph
nodes (`Proto`, numbered by the interpreter's uids); a Sequential model keeps
its items in order, a functional one its input and output nodes. Turning
these into graphs and mined models is the mixin `nas.mining.keras_graphs.ModelGraphs`.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any, Sequence

from nas.mining import keras_api
from nas.mining.assemble import Proto
from nas.mining.interpreter import NOT_HANDLED, Interpreter
from nas.mining.interp_objects import (
    _PLAIN_TYPES, _BoundMethod, _Class, _flatten, _Frame, _Func, _Instance, _Module, _Scope, _Site, _with_marker,
)
from nas.mining.keras_graphs import ModelGraphs
from nas.mining.keras_layers import (
    OTHER, LayerCall, activation_call, opaque_call, translate_layer, translate_merge_function, unresolved_source,
)
from nas.mining.keras_objects import _App, _Functional, _Layer, _ModelState, _Optimizer, _Sequential, _Tensor
from nas.mining.optimizers import optimizer_from_value, translate_optimizer
from nas.mining.values import MAX_VISITS, KerasObject, Unresolved, render


# ---------------------------------------------------------------- the hooks and the API
class KerasSemantics(ModelGraphs, Interpreter):
    """An `Interpreter` that knows what Keras calls build."""

    def __init__(self, ctx: Any, forced: dict[int, bool]):
        super().__init__(ctx, forced)
        self.nodes: dict[int, Proto] = {}
        self.models: list[Any] = []
        self.stars: list[tuple[str, ...]] = []
        self.channels_first = False
        self.traced: dict[int, Any] = {}
        self._seqs: list[_Sequential] = []      # every Sequential of the run, to mark cut-short ones
        self._appended: list[_Sequential] = []  # the Sequential of each item added, by stamp - 1
        self._layers: list[_Layer] = []          # every layer object, in uid order
        self._built: set[_Instance] = set()      # subclass instances whose own build() has run

    # ------------------------------------------------------------ names
    def _module_value(self, path: tuple[str, ...]) -> Any:
        return _Module(path) if path[0] in keras_api.TRACKED_ROOTS else Unresolved(".".join(path))

    def _star_import(self, base: tuple[str, ...]) -> None:
        if base[0] in keras_api.TRACKED_ROOTS:
            self.stars.append(base)

    def _unbound_name(self, name: str) -> Any:
        if name in keras_api.STAR_NAMES:
            for base in reversed(self.stars):
                if keras_api.classify(base + (name,)).category != keras_api.OTHER:
                    return _Module(base + (name,))
        return Unresolved(name)

    # ------------------------------------------------------------ Keras objects as Python values
    def _call_foreign(self, func: Any, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        if isinstance(func, _Layer):
            inputs = args[0] if args else kwargs.get("inputs")
            return self._apply_call(func.call, self._input_uids(inputs, site), site, func.uid, func.line,
                                    func.loops)
        if isinstance(func, (_ModelState, _App)):
            if isinstance(func, _ModelState) and not self._holds_tensor(args, kwargs):
                return Unresolved(self.text(site.node))  # inference on data (see _call_instance_fallback)
            return self._apply_model(func, args[0] if args else kwargs.get("inputs"), site)
        tensors = [v.uid for v in _flatten(args + list(kwargs.values())) if isinstance(v, _Tensor)]
        if tensors:
            return self._opaque(self.text(getattr(site.node, "func", None)), tensors, site)
        return Unresolved(self.text(site.node))

    def _call_instance_fallback(self, inst: _Instance, args: list[Any], kwargs: dict[str, Any],
                                site: _Site) -> Any:
        if (inst.seq is not None or inst.model is not None) and not self._holds_tensor(args, kwargs):
            # `predictions = model(images, training=True)` in a training loop: inference on data,
            # not the model used as a layer of another, so the model stays a model of its own.
            return Unresolved(self.text(site.node))
        if inst.seq is not None:
            return self._apply_model(inst.seq, args[0] if args else kwargs.get("inputs"), site)
        if inst.keras in ("model", "layer"):
            call = self._class_attr(inst.cls, "call")
            if inst.model is not None:
                inst.model.consumed = True
            if isinstance(call, _Func):
                self._build_before_call(inst, self._tensor_batch_shape(args[0] if args else kwargs.get("inputs")))
                return self._invoke(call, [inst] + args, kwargs, site)
        tensors = [v.uid for v in _flatten(args) if isinstance(v, _Tensor)]
        if tensors:
            return self._opaque(inst.cls.name, tensors, site)
        return Unresolved(self.text(site.node))

    @staticmethod
    def _holds_tensor(args: list[Any], kwargs: dict[str, Any]) -> bool:
        return any(isinstance(v, _Tensor) for v in _flatten(list(args) + list(kwargs.values())))

    def _new_instance(self, cls: _Class, site: _Site) -> _Instance:
        inst = _Instance(cls, {}, self._keras_base(cls))
        if inst.keras == "sequential":
            inst.seq = self._register(_Sequential(self._next_uid(), site.line))
            self.models.append(inst.seq)
        elif inst.keras == "model":
            inst.model = _ModelState(self._next_uid(), site.line)
            self.models.append(inst)
        return inst

    def _keras_base(self, cls: _Class, seen: int = 0) -> str | None:
        for base in cls.bases:
            if isinstance(base, _Module):
                api = keras_api.classify(base.path)
                if api.category == keras_api.SEQUENTIAL:
                    return "sequential"
                if api.category == keras_api.MODEL:
                    return "model"
                if api.name == "Layer" and keras_api.keras_path(base.path) is not None:
                    return "layer"
            elif isinstance(base, _Class) and seen < 20:
                found = self._keras_base(base, seen + 1)
                if found:
                    return found
        return None

    def _foreign_attr(self, obj: Any, attr: str, node: ast.AST) -> Any:
        if isinstance(obj, _ModelState):
            return self._model_attr(obj, attr, node)
        if isinstance(obj, _App):
            if attr in ("input", "inputs"):
                return _Tensor(obj.input_uid)
            if attr in ("output", "outputs"):
                return _Tensor(obj.output_uid)
            return Unresolved(self.text(node))
        return NOT_HANDLED

    def _model_attr(self, model: _ModelState, attr: str, node: ast.AST | None, owner: Any = None) -> Any:
        if attr in ("compile", "add", "pop", "build", "summary", "fit", "fit_generator", "evaluate", "predict",
                    "save", "save_weights", "load_weights", "count_params"):
            return _BoundMethod(attr, model if owner is None else owner)
        if isinstance(model, _Functional):
            if attr in ("input", "inputs") and model.inputs:
                return _Tensor(model.inputs[0]) if attr == "input" else [_Tensor(u) for u in model.inputs]
            if attr in ("output", "outputs") and model.outputs:
                return _Tensor(model.outputs[0]) if attr == "output" else [_Tensor(u) for u in model.outputs]
        return Unresolved(self.text(node) if node is not None else attr)

    def _foreign_subscript(self, container: Any, node: ast.Subscript) -> Any:
        if isinstance(container, _Tensor):
            return self._opaque("getitem", [container.uid], _Site(node))
        return NOT_HANDLED

    def _foreign_binop(self, op: ast.operator, left: Any, right: Any, node: ast.AST) -> Any:
        if isinstance(op, ast.Add) and isinstance(left, _Tensor) and isinstance(right, _Tensor):
            # `x + shortcut` on Keras tensors is an Add layer in tf.keras.
            return self._apply_call(translate_layer("Add"), [left.uid, right.uid], _Site(node), None)
        return NOT_HANDLED

    # ------------------------------------------------------------ loops and calls cut short
    def _mark_built_since(self, scope: _Scope, marker: str) -> None:
        """Marks the graph nodes, layers and Sequential items made since ``scope`` began."""
        built = []
        for uid in reversed(self.nodes):  # uids grow, so the nodes built in the scope come last
            if uid <= scope.uid:
                break
            built.append(uid)
        for uid in built:
            self.nodes[uid] = dataclasses.replace(self.nodes[uid], loops=_with_marker(self.nodes[uid].loops, marker))
        for layer in reversed(self._layers):
            if layer.uid <= scope.uid:
                break
            layer.loops = _with_marker(layer.loops, marker)
        for seq in {id(seq): seq for seq in self._appended[scope.stamp:]}.values():
            for index in range(len(seq.items) - 1, -1, -1):
                kind, payload, line, loops, stamp = seq.items[index]
                if stamp <= scope.stamp:
                    break
                seq.items[index] = (kind, payload, line, _with_marker(loops, marker), stamp)

    def _mark_collected(self, loop: ast.For | ast.While, frame: _Frame, start: int, marker: str) -> None:
        """Marks the layers a loop of unknown count made and collected in a list it grows.

        ``layers.append(Dense(4))`` (or ``layers = layers + [...]``) interpreted once
        holds one layer where the program holds one per iteration. A layer
        bound afresh each iteration (``block = [Conv2D(...)]``, ``self.conv = ...``)
        is not collected and stays unmarked.
        """
        for name in self.ctx.loop_names(loop)[1]:
            scope = self.globals if name in frame.global_names else frame.locals
            stack, seen = [scope.get(name)], 0
            while stack and seen < MAX_VISITS:
                item = stack.pop()
                seen += 1
                if isinstance(item, dict):
                    stack.extend(item.values())
                elif isinstance(item, (list, tuple)):
                    stack.extend(item)
                elif isinstance(item, _Layer) and item.uid > start:
                    item.loops = _with_marker(item.loops, marker)

    # ------------------------------------------------------------ the Keras API
    def _plain(self, value: Any, node: ast.AST | None, depth: int = 0) -> Any:
        """An argument as the layer and optimizer tables read it."""
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if depth == 0 and isinstance(value, (tuple, list)) and not self._small(value):
            # A list holding one list twice, level after level, would unfold to 2**levels tuples.
            return Unresolved(self.text(node) if node is not None else f"<{type(value).__name__}, too large>")
        if isinstance(value, (tuple, list)) and depth < 16:
            return tuple(self._plain(v, node, depth + 1) for v in value)
        if isinstance(value, (Unresolved, KerasObject)):
            return value
        if isinstance(value, _Layer):
            return value.call
        if isinstance(value, _Module):
            name = value.path[-1]
            if keras_api.classify(value.path).category == keras_api.ACTIVATION_FUNCTION:
                return name
        if node is not None:
            return Unresolved(self.text(node))
        if isinstance(value, _PLAIN_TYPES + (dict, set, frozenset, range)):
            return Unresolved(render(value))
        # The interpreter's own objects: their reprs hold whole frames and classes.
        return Unresolved(f"<{type(value).__name__.lstrip('_')}>")

    def _plain_args(self, args: list[Any], kwargs: dict[str, Any], site: _Site) -> tuple[list, dict]:
        return ([self._plain(v, site.arg_node(i)) for i, v in enumerate(args)],
                {k: self._plain(v, site.kw_node(k)) for k, v in kwargs.items()})

    def _call_api(self, path: tuple[str, ...], args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        api = keras_api.classify(path)
        category = api.category
        if category == keras_api.SEQUENTIAL:
            return self._new_sequential(args, kwargs, site)
        if category == keras_api.MODEL:
            return self._new_functional(args, kwargs, site)
        if category == keras_api.INPUT:
            pargs, pkwargs = self._plain_args(args, kwargs, site)
            call = translate_layer("Input", pargs, pkwargs, flavour=api.flavour, channels_first=self.channels_first)
            return _Tensor(self._add_node(call, (), site.line, None))
        if category == keras_api.LAYER:
            pargs, pkwargs = self._plain_args(args, kwargs, site)
            call = translate_layer(api.name, pargs, pkwargs, flavour=api.flavour,
                                   channels_first=self.channels_first)
            layer = _Layer(self._next_uid(), call, site.line)
            self._layers.append(layer)
            return layer
        if category == keras_api.MERGE_FUNCTION:
            kwargs = dict(kwargs)
            inputs = args[0] if args else kwargs.pop("inputs", kwargs.pop("layers", None))
            kwargs.pop("inputs", None)
            _, pkwargs = self._plain_args([], kwargs, site)
            call = translate_merge_function(api.name, pkwargs)
            return self._apply_call(call, self._input_uids(inputs, site), site, None)
        if category == keras_api.OPTIMIZER:
            pargs, pkwargs = self._plain_args(args, kwargs, site)
            return _Optimizer(translate_optimizer(api.name, pargs, pkwargs, flavour=api.flavour))
        if category == keras_api.APPLICATION:
            return self._new_app(api.name, args, kwargs, site)
        if category == keras_api.BACKEND_CONFIG:
            return self._backend_config(api.name, args, kwargs)
        tensors = [v.uid for v in _flatten(args) if isinstance(v, _Tensor)]
        if category == keras_api.ACTIVATION_FUNCTION and tensors:
            return self._apply_call(activation_call(api.name, inline=False), tensors[:1], site, None)
        if category == keras_api.CONCAT_FUNCTION and args:
            axis = args[1] if len(args) > 1 else kwargs.get("axis", -1)
            call = translate_layer("Concatenate", (), {"axis": self._plain(axis, site.arg_node(1))})
            return self._apply_call(call, self._input_uids(args[0], site), site, None)
        if category == keras_api.ADD_FUNCTION and len(tensors) >= 2:
            return self._apply_call(translate_layer("Add"), tensors, site, None)
        if category == keras_api.LOADED_MODEL:
            return Unresolved(self.text(site.node))
        if tensors:
            return self._opaque(".".join(path[-2:]), tensors, site)
        pargs, pkwargs = self._plain_args(args, kwargs, site)
        normal = keras_api.keras_path(path)
        return KerasObject(normal[0] if normal else path, tuple(pargs), tuple(pkwargs.items()),
                           self.text(site.node))

    def _backend_config(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if name == "image_data_format":
            return "channels_first" if self.channels_first else "channels_last"
        if name == "image_dim_ordering":
            return "th" if self.channels_first else "tf"
        value = args[0] if args else next(iter(kwargs.values()), None)
        if value in ("channels_first", "th"):
            self.channels_first = True
        elif value in ("channels_last", "tf"):
            self.channels_first = False
        return None

    def _add_node(self, call: LayerCall, inputs: Sequence[int], line: int, layer: int | None,
                  applied: int = 0, loops: tuple[str, ...] = ()) -> int:
        uid = self._next_uid()
        self.nodes[uid] = Proto(uid, call, tuple(inputs), line, layer, _with_marker(tuple(self.loops), *loops),
                                applied if applied != line else 0)
        return uid

    def _apply_call(self, call: LayerCall, inputs: Sequence[int], site: _Site, layer: int | None,
                    defined: int | None = None, loops: tuple[str, ...] = ()) -> _Tensor:
        """A layer applied to tensors: its node, then its separate activation node.

        ``defined`` is the line of the layer's constructor when it was built
        apart from its application (``self.conv = Conv2D(...)`` ... ``self.conv(x)``);
        ``loops`` the markers of unknown-count loops it was created in.
        """
        line = site.line if defined is None else defined
        uid = self._add_node(call.without_activation(), inputs, line, layer, site.line, loops)
        if call.activation is not None:
            uid = self._add_node(call.activation, (uid,), line, None, site.line, loops)
        return _Tensor(uid)

    def _input_uids(self, value: Any, site: _Site) -> list[int]:
        if value is None:
            return []
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        uids = []
        for item in items:
            if isinstance(item, _Tensor):
                uids.append(item.uid)
            else:
                expr = item.expr if isinstance(item, Unresolved) else self.text(site.arg_node(0))
                uids.append(self._add_node(unresolved_source(expr), (), site.line, None))
        return uids

    def _opaque(self, name: str, inputs: Sequence[int], site: _Site) -> _Tensor:
        return _Tensor(self._add_node(opaque_call(name), inputs, site.line, None))

    def _register(self, seq: _Sequential) -> _Sequential:
        self._seqs.append(seq)
        return seq

    def _seq_append(self, seq: _Sequential, kind: str, payload: Any, line: int, loops: tuple[str, ...]) -> None:
        self._stamp += 1
        self._appended.append(seq)
        seq.items.append((kind, payload, line, loops, self._stamp))

    def _new_sequential(self, args: list[Any], kwargs: dict[str, Any], site: _Site) -> _Sequential:
        seq = self._register(_Sequential(self._next_uid(), site.line))
        self.models.append(seq)
        layers = args[0] if args else kwargs.get("layers")
        if layers is not None:
            items = self._iterate(layers)
            if items is None:
                expr = layers.expr if isinstance(layers, Unresolved) else self.text(site.arg_node(0))
                self._seq_append(seq, "unresolved", expr, site.line, tuple(self.loops))
            else:
                for item in items:
                    self._sequential_add(seq, item, site)
        return seq

    def _sequential_add(self, seq: _Sequential, item: Any, site: _Site) -> None:
        loops = tuple(self.loops)
        if isinstance(item, _Layer):
            self._seq_append(seq, "layer", item, site.line, _with_marker(loops, *item.loops))
        elif isinstance(item, _Tensor):
            self._seq_append(seq, "tensor", item.uid, site.line, loops)
        elif isinstance(item, _Instance) and (item.seq is not None or item.model is not None):
            for state in (item.seq, item.model):
                if state is not None:
                    state.consumed = True
            self._seq_append(seq, "model", item.seq if item.seq is not None else item, site.line, loops)
        elif isinstance(item, _Instance) and item.keras == "layer":
            # A custom Layer subclass (a ResNet BasicBlock): traced through its `call` where the model is built.
            self._seq_append(seq, "model", item, site.line, loops)
        elif isinstance(item, (_ModelState, _App)):
            if isinstance(item, _ModelState):
                item.consumed = True
            self._seq_append(seq, "model", item, site.line, loops)
        else:
            expr = item.expr if isinstance(item, Unresolved) else self.text(site.arg_node(0))
            self._seq_append(seq, "unresolved", expr, site.line, loops)

    def _new_functional(self, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        inputs = args[0] if args else kwargs.get("inputs", kwargs.get("input"))
        outputs = args[1] if len(args) > 1 else kwargs.get("outputs", kwargs.get("output"))
        outs = [v.uid for v in _flatten([outputs]) if isinstance(v, _Tensor)]
        if not outs:
            return Unresolved(self.text(site.node))
        ins = tuple(v.uid for v in _flatten([inputs]) if isinstance(v, _Tensor))
        model = _Functional(self._next_uid(), site.line, inputs=ins, outputs=tuple(outs))
        self.models.append(model)
        return model

    def _new_app(self, name: str, args: list[Any], kwargs: dict[str, Any], site: _Site) -> _App:
        given = kwargs.get("input_tensor")
        if isinstance(given, _Tensor):
            input_uid = given.uid
        else:
            shape = kwargs.get("input_shape")
            call = translate_layer("Input", (), {} if shape is None else {"shape": self._plain(shape, None)})
            input_uid = self._add_node(call, (), site.line, None)
        app = LayerCall(name, None, OTHER, note=f"{name} is a pretrained Keras application")
        output_uid = self._add_node(app, (input_uid,), site.line, self._next_uid())
        return _App(name, input_uid, output_uid, (self.nodes[input_uid], self.nodes[output_uid]))

    def _model_method(self, target: Any, name: str, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        state = target
        if isinstance(target, _Instance):
            state = target.seq if target.seq is not None else target.model
        if state is None:
            return Unresolved(self.text(site.node))
        if name == "add" and isinstance(state, _Sequential) and args:
            self._sequential_add(state, args[0], site)
            return None
        if name == "pop" and isinstance(state, _Sequential) and state.items:
            state.items.pop()
            return None
        if name == "compile":
            self._compile(state, args, kwargs, site)
            return None
        if name == "build" and (args or "input_shape" in kwargs):
            state.build_shape = self._plain(args[0] if args else kwargs["input_shape"], site.arg_node(0))
            return None
        return Unresolved(self.text(site.node))

    def _compile(self, state: _ModelState, args: list[Any], kwargs: dict[str, Any], site: _Site) -> None:
        if args or "optimizer" in kwargs:
            value = args[0] if args else kwargs["optimizer"]
            node = site.arg_node(0) if args else site.kw_node("optimizer")
            if isinstance(value, _Optimizer):
                state.optimizer = dict(value.config)
            elif isinstance(value, (str, Unresolved)) or value is None:
                state.optimizer = optimizer_from_value(value)
            else:
                state.optimizer = {"unresolved": self.text(node)}
        state.compiled = True
        loss = args[1] if len(args) > 1 else kwargs.get("loss")
        if isinstance(loss, _Module):
            loss = loss.path[-1]  # keras.losses.categorical_crossentropy
        elif isinstance(loss, KerasObject):
            loss = re.sub(r"(?<!^)(?=[A-Z])", "_", loss.name).lower()  # CategoricalCrossentropy()
        state.loss = loss if isinstance(loss, str) else None

