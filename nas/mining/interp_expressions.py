"""Expressions: constants, containers, operators, comparisons, comprehensions and call sites.

Every operation on values the file determines is computed; anything else is
`Unresolved`. Building long values, big integers and deep nesting are capped
(`MAX_COLLECTION`, `_MAX_INT_BITS`, `MAX_DEPTH`) and charged to the step budget.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Callable, Sequence

from nas.mining.interp_objects import (
    MAX_COLLECTION, MAX_DEPTH, NOT_HANDLED, _BINOPS, _COMPARES, _MAX_INT_BITS, _SEQUENCES, _Frame, _known, _Site,
)
from nas.mining.values import Unresolved


class Expressions:
    """Evaluates expressions over `_Frame`s (a mixin of `Interpreter`)."""

    # ------------------------------------------------------------ expressions
    def ev(self, node: ast.AST, frame: _Frame) -> Any:
        self._tick()
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                return Unresolved(self.text(node))
            handler = getattr(self, "_e_" + type(node).__name__, None)
            if handler is None:
                return Unresolved(self.text(node))
            return handler(node, frame)
        finally:
            self.depth -= 1

    def _e_Constant(self, node: ast.Constant, frame: _Frame) -> Any:
        return node.value

    def _e_Name(self, node: ast.Name, frame: _Frame) -> Any:
        return self._lookup(node.id, frame)

    def _e_Tuple(self, node: ast.Tuple, frame: _Frame) -> Any:
        items = self._elements(node.elts, frame)
        return Unresolved(self.text(node)) if items is None else tuple(items)

    def _e_List(self, node: ast.List, frame: _Frame) -> Any:
        items = self._elements(node.elts, frame)
        return Unresolved(self.text(node)) if items is None else items

    def _e_Set(self, node: ast.Set, frame: _Frame) -> Any:
        items = self._elements(node.elts, frame)
        try:
            return Unresolved(self.text(node)) if items is None or not self._small(items) else set(items)
        except TypeError:
            return Unresolved(self.text(node))

    def _elements(self, elts: Sequence[ast.AST], frame: _Frame) -> list[Any] | None:
        items: list[Any] = []
        for elt in elts:
            if isinstance(elt, ast.Starred):
                expanded = self._iterate(self.ev(elt.value, frame))
                if expanded is None:
                    return None
                items.extend(self._charge(expanded))
            else:
                items.append(self.ev(elt, frame))
            if len(items) > MAX_COLLECTION:
                return None
        return items

    def _e_Dict(self, node: ast.Dict, frame: _Frame) -> Any:
        out: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values):
            value = self.ev(value_node, frame)
            if key_node is None:
                if not isinstance(value, dict):
                    return Unresolved(self.text(node))
                out.update(self._charge(value))
                continue
            key = self.ev(key_node, frame)
            if not self._small(key):
                return Unresolved(self.text(node))
            try:
                out[key] = value
            except TypeError:
                return Unresolved(self.text(node))
        return out

    def _e_JoinedStr(self, node: ast.JoinedStr, frame: _Frame) -> Any:
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
                continue
            if not isinstance(value, ast.FormattedValue) or value.format_spec is not None:
                return Unresolved(self.text(node))
            inner = self.ev(value.value, frame)
            short_int = isinstance(inner, int) and inner.bit_length() <= 64
            if not (isinstance(inner, (str, float)) or short_int):
                return Unresolved(self.text(node))
            parts.append(repr(inner) if value.conversion == ord("r") else str(inner))
        text = "".join(parts)
        return self._charge(text) if len(text) <= MAX_COLLECTION else Unresolved(self.text(node))

    def _e_Attribute(self, node: ast.Attribute, frame: _Frame) -> Any:
        return self._getattr(self.ev(node.value, frame), node.attr, node)

    def _e_Subscript(self, node: ast.Subscript, frame: _Frame) -> Any:
        container = self.ev(node.value, frame)
        key = self.ev(node.slice, frame)
        foreign = self._foreign_subscript(container, node)
        if foreign is not NOT_HANDLED:
            return foreign
        key_known = isinstance(key, slice) or (
            _known(key) and not self._unresolved(key) and not isinstance(key, (list, dict, set)))
        if not _known(container) or not key_known:
            return Unresolved(self.text(node))
        try:
            value = container[key]
        except (TypeError, IndexError, KeyError, ValueError):
            return Unresolved(self.text(node))
        return self._charge(value) if isinstance(key, slice) else value  # a slice is a copy

    def _e_Slice(self, node: ast.Slice, frame: _Frame) -> Any:
        parts = [None if n is None else self.ev(n, frame) for n in (node.lower, node.upper, node.step)]
        if any(p is not None and (not isinstance(p, int) or isinstance(p, bool)) for p in parts):
            return Unresolved(self.text(node))
        return slice(*parts)

    def _e_Index(self, node: Any, frame: _Frame) -> Any:  # Python < 3.9 trees
        return self.ev(node.value, frame)

    def _e_UnaryOp(self, node: ast.UnaryOp, frame: _Frame) -> Any:
        value = self.ev(node.operand, frame)
        if isinstance(node.op, ast.Not):
            truth = self._truth(value)
            return Unresolved(self.text(node)) if truth is None else not truth
        if not isinstance(value, (int, float, complex)) or self._unresolved(value):
            return Unresolved(self.text(node))
        try:
            return {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}[type(node.op)](value)
        except (TypeError, KeyError):
            return Unresolved(self.text(node))

    def _e_BinOp(self, node: ast.BinOp, frame: _Frame) -> Any:
        return self._binop(node.op, self.ev(node.left, frame), self.ev(node.right, frame), node)

    def _binop(self, op: ast.operator, left: Any, right: Any, node: ast.AST) -> Any:
        foreign = self._foreign_binop(op, left, right, node)
        if foreign is not NOT_HANDLED:
            return foreign
        unknown = Unresolved(self.text(node))
        if not (_known(left) and _known(right)) or isinstance(left, (dict, set)) or isinstance(right, (dict, set)):
            return unknown
        try:
            if isinstance(op, ast.Mult):
                seq, count = (left, right) if isinstance(left, _SEQUENCES) else (right, left)
                if isinstance(seq, _SEQUENCES) and isinstance(count, int) and len(seq) * max(count, 0) > MAX_COLLECTION:
                    return unknown
            if isinstance(op, ast.Add) and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES) \
                    and len(left) + len(right) > MAX_COLLECTION:
                return unknown
            if isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and abs(left) > 1 and right * left.bit_length() > _MAX_INT_BITS:
                return unknown
            if isinstance(op, ast.LShift) and isinstance(right, int) and right > _MAX_INT_BITS:
                return unknown
            if isinstance(op, ast.Mod) and isinstance(left, (str, bytes)):
                return unknown  # %-formatting can build arbitrarily long strings
            if isinstance(op, ast.MatMult):
                return unknown
            result = _BINOPS[type(op)](left, right)
        except (ArithmeticError, TypeError, ValueError, KeyError):
            return unknown
        if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > _MAX_INT_BITS:
            return unknown
        if isinstance(result, complex):
            return unknown
        return self._charge(result)

    def _e_BoolOp(self, node: ast.BoolOp, frame: _Frame) -> Any:
        is_and = isinstance(node.op, ast.And)
        value = None
        for operand in node.values:
            value = self.ev(operand, frame)
            truth = self._truth(value)
            if truth is None:
                return Unresolved(self.text(node))
            if truth != is_and:
                return value
        return value

    def _e_Compare(self, node: ast.Compare, frame: _Frame) -> Any:
        left = self.ev(node.left, frame)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.ev(right_node, frame)
            if self._unresolved(left) or self._unresolved(right):
                return Unresolved(self.text(node))
            if isinstance(op, (ast.Is, ast.IsNot)):
                result = (left is right) if isinstance(op, ast.Is) else (left is not right)
            elif not (_known(left) and _known(right)):
                if isinstance(op, (ast.Eq, ast.NotEq)):
                    result = (left is right) == isinstance(op, ast.Eq)
                else:
                    return Unresolved(self.text(node))
            else:
                try:
                    result = _COMPARES[type(op)](left, right)
                except (TypeError, ValueError):
                    return Unresolved(self.text(node))
            if not isinstance(result, bool):
                return Unresolved(self.text(node))
            if not result:
                return False
            left = right
        return True

    def _e_IfExp(self, node: ast.IfExp, frame: _Frame) -> Any:
        truth = self._truth(self.ev(node.test, frame))
        if truth is None:
            truth = self._decide(node, True, True)
        return self.ev(node.body if truth else node.orelse, frame)

    def _e_NamedExpr(self, node: ast.NamedExpr, frame: _Frame) -> Any:
        value = self.ev(node.value, frame)
        self._assign(node.target, value, frame)
        return value

    def _e_Lambda(self, node: ast.Lambda, frame: _Frame) -> Any:
        return self._make_func(node, frame, "<lambda>")

    def _e_Await(self, node: ast.Await, frame: _Frame) -> Any:
        return self.ev(node.value, frame)

    def _e_Starred(self, node: ast.Starred, frame: _Frame) -> Any:
        return self.ev(node.value, frame)

    def _e_ListComp(self, node: ast.ListComp, frame: _Frame) -> Any:
        items = self._comprehension(node, frame, lambda f: [self.ev(node.elt, f)])
        return Unresolved(self.text(node)) if items is None else items

    def _e_GeneratorExp(self, node: ast.GeneratorExp, frame: _Frame) -> Any:
        return self._e_ListComp(node, frame)

    def _e_SetComp(self, node: ast.SetComp, frame: _Frame) -> Any:
        items = self._comprehension(node, frame, lambda f: [self.ev(node.elt, f)])
        try:
            return Unresolved(self.text(node)) if items is None or not self._small(items) else set(items)
        except TypeError:
            return Unresolved(self.text(node))

    def _e_DictComp(self, node: ast.DictComp, frame: _Frame) -> Any:
        pairs = self._comprehension(node, frame, lambda f: [(self.ev(node.key, f), self.ev(node.value, f))])
        try:
            return Unresolved(self.text(node)) if pairs is None or not self._small([k for k, _ in pairs]) \
                else dict(pairs)
        except TypeError:
            return Unresolved(self.text(node))

    def _comprehension(self, node: Any, frame: _Frame, element: Callable[[_Frame], list[Any]]) -> list[Any] | None:
        inner = _Frame({}, closure=frame)
        out: list[Any] = []

        def loop(index: int) -> bool:
            if index == len(node.generators):
                out.extend(element(inner))
                return len(out) <= MAX_COLLECTION
            gen = node.generators[index]
            items = self._iterate(self.ev(gen.iter, frame if index == 0 else inner))
            if items is None:
                return False
            for item in items:
                self._assign(gen.target, item, inner)
                truths = [self._truth(self.ev(cond, inner)) for cond in gen.ifs]
                if any(t is None for t in truths):
                    return False
                if all(truths) and not loop(index + 1):
                    return False
            return True

        return out if loop(0) else None

    def _e_Call(self, node: ast.Call, frame: _Frame) -> Any:
        func = self.ev(node.func, frame)
        args: list[Any] = []
        arg_nodes: list[ast.AST] = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                expanded = self._iterate(self.ev(arg.value, frame))
                if expanded is None:
                    args.append(Unresolved(self.text(arg)))
                    arg_nodes.append(arg)
                else:
                    args.extend(expanded)
                    arg_nodes.extend([arg] * len(expanded))
            else:
                args.append(self.ev(arg, frame))
                arg_nodes.append(arg)
        kwargs: dict[str, Any] = {}
        kw_nodes: list[tuple[str, ast.AST]] = []
        for kw in node.keywords:
            value = self.ev(kw.value, frame)
            if kw.arg is None:
                if isinstance(value, dict):
                    for key, item in value.items():
                        if isinstance(key, str):
                            kwargs[key] = item
                            kw_nodes.append((key, kw.value))
            else:
                kwargs[kw.arg] = value
                kw_nodes.append((kw.arg, kw.value))
        return self._call(func, args, kwargs, _Site(node, tuple(arg_nodes), tuple(kw_nodes)))

    # ------------------------------------------------------------ truth and iteration
    @staticmethod
    def _truth(value: Any) -> bool | None:
        if isinstance(value, Unresolved):
            return None
        if _known(value):
            try:
                return bool(value)
            except (TypeError, ValueError, OverflowError):
                return None
        return True

    @staticmethod
    def _iterate(value: Any) -> list[Any] | None:
        if isinstance(value, (tuple, list)):
            return list(value)
        if isinstance(value, range):
            return list(value) if len(value) <= MAX_COLLECTION else None
        if isinstance(value, (str, bytes)):
            return list(value) if len(value) <= MAX_COLLECTION else None
        if isinstance(value, dict):
            return list(value)
        if isinstance(value, (set, frozenset)):
            try:
                return sorted(value)
            except TypeError:
                return None
        return None

