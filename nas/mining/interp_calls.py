"""Attributes, calls and classes: following the file's own functions, methods and classes.

A call binds its arguments in a fresh `_Frame` and interprets the body, to a
depth of `MAX_CALL_DEPTH`; a call nested deeper is not followed, and the
scope of the outermost call of the recursion (or of all calls) is marked cut
short. Builtins are computed on known values only, with size caps.
"""

from __future__ import annotations

import ast
from typing import Any, Callable

from nas.mining.interp_objects import (
    MAX_CALL_DEPTH, MAX_COLLECTION, NOT_HANDLED, _MAX_INT_BITS, _REQUIRED, _BoundMethod, _BreakSignal, _Builtin,
    _Class, _ContinueSignal, _flatten, _Frame, _Func, _Instance, _known, _Method, _Module, _RaiseSignal,
    _ReturnSignal, _Site, _Super,
)
from nas.mining.values import Unresolved


class Calls:
    """Attribute access, calls, instantiation and builtins (a mixin of `Interpreter`)."""

    # ------------------------------------------------------------ attributes
    def _getattr(self, obj: Any, attr: str, node: ast.AST) -> Any:
        unknown = Unresolved(self.text(node))
        if isinstance(obj, _Module):
            return _Module(obj.path + (attr,))
        if isinstance(obj, _Instance):
            return self._instance_attr(obj, attr, node)
        if isinstance(obj, _Class):
            value = self._class_attr(obj, attr)
            if isinstance(value, _Func) and value.kind == "classmethod":
                return _Method(value, obj)
            return unknown if value is None else value
        if isinstance(obj, _Super):
            return self._super_attr(obj, attr, node)
        foreign = self._foreign_attr(obj, attr, node)
        if foreign is not NOT_HANDLED:
            return foreign
        if isinstance(obj, list) and attr in ("append", "extend", "insert", "pop", "copy", "index", "count",
                                                "reverse"):
            return _BoundMethod(attr, obj)
        if isinstance(obj, dict) and attr in ("get", "items", "keys", "values", "update", "copy", "setdefault",
                                                "pop"):
            return _BoundMethod(attr, obj)
        if isinstance(obj, str) and attr in ("lower", "upper", "strip", "lstrip", "rstrip", "startswith",
                                               "endswith", "split", "replace", "join", "capitalize", "title"):
            return _BoundMethod(attr, obj)
        if isinstance(obj, tuple) and attr in ("index", "count"):
            return _BoundMethod(attr, obj)
        return unknown

    def _class_attr(self, cls: _Class, attr: str, seen: int = 0) -> Any:
        if attr in cls.ns:
            return cls.ns[attr]
        if seen > 20:
            return None
        for base in cls.bases:
            if isinstance(base, _Class):
                found = self._class_attr(base, attr, seen + 1)
                if found is not None:
                    return found
        return None

    def _instance_attr(self, inst: _Instance, attr: str, node: ast.AST | None) -> Any:
        if attr in inst.attrs:
            return inst.attrs[attr]
        value = self._class_attr(inst.cls, attr)
        if isinstance(value, _Func):
            if value.kind == "staticmethod":
                return value
            if value.kind == "classmethod":
                return _Method(value, inst.cls)
            if value.kind == "property":
                return self._invoke(value, [inst], {}, _Site(node))
            return _Method(value, inst)
        if value is not None:
            return value
        if inst.seq is not None:
            return self._model_attr(inst.seq, attr, node)
        if inst.model is not None:
            return self._model_attr(inst.model, attr, node, owner=inst)
        return Unresolved(self.text(node) if node is not None else attr)

    def _super_attr(self, sup: _Super, attr: str, node: ast.AST) -> Any:
        for base in sup.cls.bases:
            if isinstance(base, _Class):
                value = self._class_attr(base, attr)
                if isinstance(value, _Func):
                    return _Method(value, sup.inst) if value.kind != "staticmethod" else value
        if isinstance(sup.inst, _Instance):
            if sup.inst.seq is not None and attr != "__init__":
                return self._model_attr(sup.inst.seq, attr, node)
            if attr == "__init__":
                return _Builtin("__init__", lambda args, kwargs, site: None)
        return Unresolved(self.text(node))

    # ------------------------------------------------------------ calls
    def _call(self, func: Any, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        if isinstance(func, _Module):
            return self._call_api(func.path, args, kwargs, site)
        if isinstance(func, _Func):
            return self._invoke(func, args, kwargs, site)
        if isinstance(func, _Method):
            return self._invoke(func.func, [func.receiver] + args, kwargs, site)
        if isinstance(func, _Builtin):
            return func.fn(args, kwargs, site)
        if isinstance(func, _BoundMethod):
            return self._call_method(func, args, kwargs, site)
        if isinstance(func, _Class):
            return self._instantiate(func, args, kwargs, site)
        if isinstance(func, _Instance):
            return self._call_instance(func, args, kwargs, site)
        return self._call_foreign(func, args, kwargs, site)

    def _invoke(self, func: _Func, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        node = func.node
        self.called.add(id(node))
        if self.call_depth >= MAX_CALL_DEPTH:
            self._note(f"calls nested deeper than {MAX_CALL_DEPTH} were not followed")
            self._cut_call(func, site)
            return Unresolved(self.text(site.node) if site.node is not None else f"{func.name}(...)")
        if not isinstance(node, ast.Lambda) and self.ctx.is_generator(node):
            return Unresolved(self.text(site.node) if site.node is not None else f"{func.name}(...)")
        frame = _Frame({}, closure=func.closure, owner=func.owner)
        self._bind_params(func, list(args), dict(kwargs), frame)
        self.call_depth += 1
        owned = func.owner is not None
        if owned:
            self._owner_stack.append((func.owner, args[0] if args else None))
        scope = self._open_scope()
        self._calls.append((id(node), scope))
        try:
            if isinstance(node, ast.Lambda):
                return self.ev(node.body, frame)
            self._exec_block(node.body, frame)
            return None
        except _ReturnSignal as ret:
            return ret.value
        except _RaiseSignal:
            return Unresolved(self.text(site.node) if site.node is not None else f"{func.name}(...)")
        except (_BreakSignal, _ContinueSignal):
            return None
        finally:
            self._calls.pop()
            self._close_scope(scope)
            self.call_depth -= 1
            if owned:
                self._owner_stack.pop()

    def _cut_call(self, func: _Func, site: _Site) -> None:
        """A call too deep to follow: what the calls around it built may be missing its layers.

        For a recursive function, everything built since its outermost active
        call began is marked; otherwise everything since the outermost call.
        """
        if not self._calls:
            return
        line = site.line or getattr(func.node, "lineno", 0)
        outer = next((entry for entry in self._calls if entry[0] == id(func.node)), None)
        if outer is not None:
            marker = f"recursion of {func.name} cut off at depth {MAX_CALL_DEPTH} (line {line})"
        else:
            outer = self._calls[0]
            marker = f"call of {func.name} nested deeper than {MAX_CALL_DEPTH} calls not followed (line {line})"
        scope = outer[1]
        if scope.marker is None:
            scope.marker = marker

    def _bind_params(self, func: _Func, args: list[Any], kwargs: dict[str, Any], frame: _Frame) -> None:
        spec = func.node.args
        params = list(spec.posonlyargs) + list(spec.args)
        if func.kind == "staticmethod" and args and isinstance(args[0], (_Instance, _Class)) and \
                len(args) > len(params):
            args = args[1:]
        first_default = len(params) - len(func.defaults)
        for i, param in enumerate(params):
            if i < len(args):
                value = args[i]
                kwargs.pop(param.arg, None)
            elif param.arg in kwargs:
                value = kwargs.pop(param.arg)
            elif i >= first_default:
                value = func.defaults[i - first_default]
            else:
                value = Unresolved(param.arg)
            frame.locals[param.arg] = value
        if spec.vararg is not None:
            frame.locals[spec.vararg.arg] = tuple(args[len(params):])
        for param, default in zip(spec.kwonlyargs, func.kw_defaults):
            if param.arg in kwargs:
                frame.locals[param.arg] = kwargs.pop(param.arg)
            else:
                frame.locals[param.arg] = Unresolved(param.arg) if default is _REQUIRED else default
        if spec.kwarg is not None:
            frame.locals[spec.kwarg.arg] = dict(kwargs)

    def _call_method(self, method: _BoundMethod, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        target, name = method.target, method.name
        if not isinstance(target, (list, dict, str, tuple)):  # a method `_model_attr` handed out
            return self._model_method(target, name, args, kwargs, site)
        unknown = Unresolved(self.text(site.node))
        if isinstance(target, list) and name in ("append", "extend", "insert"):
            items = [args[0]] if name == "append" and args else self._iterate(args[0]) if args else None
            if name == "insert" and len(args) == 2 and isinstance(args[0], int):
                items = [args[1]]
            if items is None or len(target) + len(items) > MAX_COLLECTION:
                return unknown
            self._charge(items)
            if name == "insert":
                target.insert(args[0], items[0])
            else:
                target.extend(items)
            return None
        # Keys, indices and string arguments must be known; stored values may be anything.
        keys = args[:1] if isinstance(target, (list, dict)) and name in ("get", "setdefault", "pop") else args
        if isinstance(target, dict) and name == "update":
            keys = []
        if any(not _known(a) or self._unresolved(a) or isinstance(a, (list, dict, set)) and isinstance(target, dict)
               for a in keys):
            return unknown
        if not self._small([args, kwargs]):  # dict.update hashes the keys of what it is given
            return unknown
        if isinstance(target, str):
            lengths = [len(a) for a in _flatten(args) if isinstance(a, str)]
            if len(target) * (1 + sum(lengths)) + sum(lengths) > MAX_COLLECTION:
                return unknown
        try:
            result = getattr(target, name)(*args, **kwargs)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError):
            return unknown
        if isinstance(result, (type({}.items()), type({}.keys()), type({}.values()))):
            result = list(result)
        return self._charge(result)

    # ------------------------------------------------------------ classes
    def _instantiate(self, cls: _Class, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        self.instantiated.add(id(cls))
        inst = self._new_instance(cls, site)
        init = self._class_attr(cls, "__init__")
        if isinstance(init, _Func):
            self._invoke(init, [inst] + args, kwargs, site)
        return inst

    def _call_instance(self, inst: _Instance, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        method = self._class_attr(inst.cls, "__call__")
        if isinstance(method, _Func):
            return self._invoke(method, [inst] + args, kwargs, site)
        return self._call_instance_fallback(inst, args, kwargs, site)

    # ------------------------------------------------------------ builtins
    def _make_builtins(self) -> dict[str, _Builtin]:
        def pure(name: str, fn: Callable[..., Any], *, iterable_args: bool = False) -> _Builtin:
            def call(args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
                if any(not _known(a) or self._unresolved(a) for a in list(args) + list(kwargs.values())):
                    return Unresolved(self.text(site.node))
                try:
                    if iterable_args:
                        items = self._iterate(args[0]) if args else []
                        if items is None:
                            return Unresolved(self.text(site.node))
                        args = [items] + list(args[1:])
                    result = fn(*args, **kwargs)
                except (TypeError, ValueError, OverflowError, ArithmeticError, IndexError, KeyError):
                    return Unresolved(self.text(site.node))
                if isinstance(result, (list, tuple, str)) and len(result) > MAX_COLLECTION:
                    return Unresolved(self.text(site.node))
                if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > _MAX_INT_BITS:
                    return Unresolved(self.text(site.node))
                return self._charge(result)
            return _Builtin(name, call)

        def safe_range(*args: Any) -> range:
            if not all(isinstance(a, int) for a in args):
                raise TypeError("range")
            return range(*args)

        def safe_str(value: Any = "") -> str:
            if isinstance(value, (str, int, float, bool, type(None))) and (
                    not isinstance(value, int) or isinstance(value, bool) or value.bit_length() <= 64):
                return str(value)
            raise TypeError("str")

        def safe_int(value: Any = 0, *base: Any) -> int:
            if isinstance(value, str) and len(value) > 100:
                raise ValueError("int")  # CPython's digit limit aside, long literals are never shapes
            return int(value, *base)

        def sequence(value: Any) -> list[Any]:
            items = self._iterate(value)
            if items is None:  # ranges too long to walk, unknown iterables
                raise TypeError("not a short sequence")
            return items

        def extremum(fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                return fn(sequence(args[0]), **kwargs) if len(args) == 1 else fn(*args, **kwargs)
            return call

        def safe_zip(*seqs: Any) -> list[tuple[Any, ...]]:
            return list(zip(*[sequence(s) for s in seqs]))

        def safe_round(value: Any, ndigits: Any = None) -> Any:
            if ndigits is None:
                return round(value)
            if not isinstance(ndigits, int) or abs(ndigits) > 100:
                raise ValueError("round")  # round(n, -10**9) would build 10**(10**9)
            return round(value, ndigits)

        def print_(args: list[Any], kwargs: dict[str, Any], site: _Site) -> None:
            return None

        def super_(args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
            cls, inst = (args + [None, None])[:2] if args else (None, None)
            if cls is None and self._owner_stack:
                cls, inst = self._owner_stack[-1]
            if isinstance(cls, _Class):
                return _Super(cls, inst)
            return Unresolved("super()")

        builtins = {
            "range": pure("range", safe_range),
            "len": pure("len", len),
            "int": pure("int", safe_int),
            "float": pure("float", float),
            "str": pure("str", safe_str),
            "bool": pure("bool", bool),
            "abs": pure("abs", abs),
            "round": pure("round", safe_round),
            "min": pure("min", extremum(min)),
            "max": pure("max", extremum(max)),
            "sum": pure("sum", sum, iterable_args=True),
            "list": pure("list", list, iterable_args=True),
            "tuple": pure("tuple", tuple, iterable_args=True),
            "sorted": pure("sorted", sorted, iterable_args=True),
            "reversed": pure("reversed", lambda items: list(reversed(items)), iterable_args=True),
            "enumerate": pure("enumerate", lambda items, start=0: list(enumerate(items, start)),
                              iterable_args=True),
            "zip": pure("zip", safe_zip),
            "dict": pure("dict", dict),
            "divmod": pure("divmod", divmod),
            "print": _Builtin("print", print_),
            "super": _Builtin("super", super_),
            "True": True, "False": False, "None": None,
        }
        return builtins

