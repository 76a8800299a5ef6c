"""Statements: assignment, ``if`` (a branch point when its condition is unknown), loops, ``try``, defs.

A loop of known trip count is unrolled (to `MAX_UNROLL` iterations); one of
unknown count runs its body once and asks the semantics to mark what it built
(`_mark_collected`, `_mark_built_since`); the plain values it changes are
forgotten afterwards (`Interpreter._forget_loop_values`).
"""

from __future__ import annotations

import ast
from typing import Any, Callable, Sequence

from nas.mining.interp_context import _as_load
from nas.mining.interp_objects import (
    MAX_DEPTH, MAX_UNROLL, _REQUIRED, _BreakSignal, _Class, _ContinueSignal, _Frame, _Func, _Instance, _known,
    _RaiseSignal, _ReturnSignal,
)
from nas.mining.values import Unresolved


class Statements:
    """Executes statements over `_Frame`s (a mixin of `Interpreter`)."""

    # ------------------------------------------------------------ statements
    def _exec_block(self, body: Sequence[ast.stmt], frame: _Frame) -> None:
        for stmt in body:
            self._exec(stmt, frame)

    def _exec(self, stmt: ast.stmt, frame: _Frame) -> None:
        self._tick()
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                return
            handler = getattr(self, "_s_" + type(stmt).__name__, None)
            if handler is not None:
                handler(stmt, frame)
        finally:
            self.depth -= 1

    def _s_Expr(self, stmt: ast.Expr, frame: _Frame) -> None:
        self.ev(stmt.value, frame)

    def _s_Assign(self, stmt: ast.Assign, frame: _Frame) -> None:
        value = self.ev(stmt.value, frame)
        for target in stmt.targets:
            self._assign(target, value, frame)

    def _s_AnnAssign(self, stmt: ast.AnnAssign, frame: _Frame) -> None:
        if stmt.value is not None:
            self._assign(stmt.target, self.ev(stmt.value, frame), frame)

    def _s_AugAssign(self, stmt: ast.AugAssign, frame: _Frame) -> None:
        load = _as_load(stmt.target)
        current = self.ev(load, frame) if load is not None else Unresolved(self.text(stmt.target))
        value = self._binop(stmt.op, current, self.ev(stmt.value, frame), stmt)
        self._assign(stmt.target, value, frame)

    def _s_Delete(self, stmt: ast.Delete, frame: _Frame) -> None:
        for target in stmt.targets:
            if isinstance(target, ast.Name):
                frame.locals.pop(target.id, None)

    def _s_Global(self, stmt: ast.Global, frame: _Frame) -> None:
        frame.global_names.update(stmt.names)

    def _s_Return(self, stmt: ast.Return, frame: _Frame) -> None:
        raise _ReturnSignal(None if stmt.value is None else self.ev(stmt.value, frame))

    def _s_Break(self, stmt: ast.Break, frame: _Frame) -> None:
        raise _BreakSignal()

    def _s_Continue(self, stmt: ast.Continue, frame: _Frame) -> None:
        raise _ContinueSignal()

    def _s_Raise(self, stmt: ast.Raise, frame: _Frame) -> None:
        raise _RaiseSignal()

    def _s_If(self, stmt: ast.If, frame: _Frame) -> None:
        truth = self._truth(self.ev(stmt.test, frame))
        if truth is None:
            truth = self._decide(stmt, *self.ctx.branch(stmt))
        self._exec_block(stmt.body if truth else stmt.orelse, frame)

    def _s_For(self, stmt: ast.For, frame: _Frame) -> None:
        # A range too long to list (range(10**9)) is an unknown iterable: run once, marked.
        items = self._iterate(self.ev(stmt.iter, frame))
        if items is None or len(items) > MAX_UNROLL:
            self._unknown_loop(stmt, self.text(stmt.iter), frame,
                               lambda: self._assign(stmt.target, Unresolved(self.text(stmt.target)), frame))
            return
        for item in items:
            self._assign(stmt.target, item, frame)
            try:
                self._exec_block(stmt.body, frame)
            except _BreakSignal:
                return
            except _ContinueSignal:
                continue
        self._exec_block(stmt.orelse, frame)

    _s_AsyncFor = _s_For

    def _s_While(self, stmt: ast.While, frame: _Frame) -> None:
        scope = self._open_scope()
        before = self._loop_values(stmt, frame)
        try:
            for count in range(MAX_UNROLL + 1):
                truth = self._truth(self.ev(stmt.test, frame))
                if truth is False:
                    self._exec_block(stmt.orelse, frame)
                    return
                if truth is None and count == 0:
                    self._unknown_loop(stmt, self.text(stmt.test), frame, lambda: None)
                    return
                if truth is None:
                    # Known for some iterations, then unknown: how many more run is unknown.
                    scope.marker = self.text(stmt.test)
                elif count == MAX_UNROLL:
                    # `while True:` with no reachable break never ends, and a loop past the unroll
                    # budget ends who knows when: either way the unrolled prefix is not the model.
                    what = "unbounded loop" if isinstance(stmt.test, ast.Constant) else \
                        f"loop still running after {MAX_UNROLL} iterations"
                    scope.marker = f"{what} at line {stmt.lineno}: while {self.text(stmt.test)}"
                    self._note(f"{what} at line {stmt.lineno}; the layers it added are marked")
                if scope.marker is not None:
                    self._forget_loop_values(stmt, frame, before)
                    return
                try:
                    self._exec_block(stmt.body, frame)
                except _BreakSignal:
                    return
                except _ContinueSignal:
                    continue
        finally:
            self._close_scope(scope)

    def _unknown_loop(self, stmt: ast.For | ast.While, expr: str, frame: _Frame, bind: Callable[[], None]) -> None:
        """Runs the body once; layers added meanwhile carry a ``repeat`` marker (Manas: not extractable)."""
        before = self._loop_values(stmt, frame)
        start = self._uid
        self.loops.append(expr)
        try:
            bind()
            self._exec_block(stmt.body, frame)
        except (_BreakSignal, _ContinueSignal):
            pass
        finally:
            self.loops.pop()
        self._mark_collected(stmt, frame, start, expr)
        self._forget_loop_values(stmt, frame, before)

    def _s_Try(self, stmt: ast.Try, frame: _Frame) -> None:
        try:
            try:
                self._exec_block(stmt.body, frame)
            except _RaiseSignal:
                if not stmt.handlers:
                    raise
                handler = stmt.handlers[0]
                if handler.name:
                    frame.locals[handler.name] = Unresolved(handler.name)
                self._exec_block(handler.body, frame)
            else:
                self._exec_block(stmt.orelse, frame)
        finally:
            if stmt.finalbody:
                self._exec_block(stmt.finalbody, frame)

    _s_TryStar = _s_Try

    def _s_With(self, stmt: ast.With, frame: _Frame) -> None:
        for item in stmt.items:
            self.ev(item.context_expr, frame)
            if item.optional_vars is not None:
                self._assign(item.optional_vars, Unresolved(self.text(item.optional_vars)), frame)
        self._exec_block(stmt.body, frame)

    _s_AsyncWith = _s_With

    def _s_Import(self, stmt: ast.Import, frame: _Frame) -> None:
        for alias in stmt.names:
            path = tuple(alias.name.split("."))
            if alias.asname:
                self._bind(alias.asname, self._module_value(path), frame)
            else:
                self._bind(path[0], self._module_value(path[:1]), frame)

    def _s_ImportFrom(self, stmt: ast.ImportFrom, frame: _Frame) -> None:
        base = tuple(stmt.module.split(".")) if stmt.module and not stmt.level else None
        for alias in stmt.names:
            if alias.name == "*":
                if base is not None:
                    self._star_import(base)
                continue
            name = alias.asname or alias.name
            value = self._module_value(base + (alias.name,)) if base is not None else Unresolved(alias.name)
            if isinstance(value, Unresolved) and stmt.module:
                # Not a tracked library: perhaps a module of the file's own repository (`from config import N`).
                value = self._sibling_constant(tuple(stmt.module.split(".")), stmt.level, alias.name, value)
            self._bind(name, value, frame)

    def _s_FunctionDef(self, stmt: ast.FunctionDef, frame: _Frame) -> None:
        kind = "function"
        for deco in stmt.decorator_list:
            name = deco.id if isinstance(deco, ast.Name) else getattr(deco, "attr", "")
            if name in ("staticmethod", "classmethod", "property"):
                kind = name
        func = self._make_func(stmt, frame, stmt.name, kind)
        self._bind(stmt.name, func, frame)
        if frame.locals is self.globals:
            self.definitions.append(func)

    _s_AsyncFunctionDef = _s_FunctionDef

    def _make_func(self, node: ast.AST, frame: _Frame, name: str, kind: str = "function") -> _Func:
        args = node.args
        defaults = [self.ev(d, frame) for d in args.defaults]
        kw_defaults = [None if d is None else self.ev(d, frame) for d in args.kw_defaults]
        kw_required = [d is None for d in args.kw_defaults]
        kw_defaults = [_REQUIRED if req else val for val, req in zip(kw_defaults, kw_required)]
        # Methods see the module, not the class body (Python's scoping).
        closure = frame.closure if frame.is_class else (None if frame.locals is self.globals else frame)
        return _Func(node, closure, defaults, kw_defaults, name, kind)

    def _s_ClassDef(self, stmt: ast.ClassDef, frame: _Frame) -> None:
        bases = [self.ev(b, frame) for b in stmt.bases]
        cls = _Class(stmt, stmt.name, {}, bases)
        body = _Frame(cls.ns, closure=frame, is_class=True)
        self._exec_block(stmt.body, body)
        for value in cls.ns.values():
            if isinstance(value, _Func):
                value.owner = cls
        self._bind(stmt.name, cls, frame)
        if frame.locals is self.globals:
            self.definitions.append(cls)

    # ------------------------------------------------------------ names and assignment
    def _bind(self, name: str, value: Any, frame: _Frame) -> None:
        if name in frame.global_names:
            self.globals[name] = value
        else:
            frame.locals[name] = value

    def _lookup(self, name: str, frame: _Frame) -> Any:
        f = frame
        while f is not None:
            if name in f.locals:
                return self._named(name, f.locals[name])
            f = f.closure
        if name in self.globals:
            return self._named(name, self.globals[name])
        if name in self._builtins:
            return self._builtins[name]
        return self._unbound_name(name)

    @staticmethod
    def _named(name: str, value: Any) -> Any:
        # A marker read through a name reports the name (num_classes, not len(set(y))).
        return Unresolved(name) if isinstance(value, Unresolved) else value

    def _assign(self, target: ast.AST, value: Any, frame: _Frame) -> None:
        if isinstance(target, ast.Name):
            self._bind(target.id, value, frame)
        elif isinstance(target, (ast.Tuple, ast.List)):
            self._unpack(target, value, frame)
        elif isinstance(target, ast.Attribute):
            obj = self.ev(target.value, frame)
            if isinstance(obj, _Instance):
                obj.attrs[target.attr] = value
        elif isinstance(target, ast.Subscript):
            obj = self.ev(target.value, frame)
            key = self.ev(target.slice, frame)
            if isinstance(obj, (list, dict)) and _known(key) and not self._unresolved(key):
                try:
                    obj[key] = value
                except (TypeError, IndexError, KeyError, ValueError):
                    pass
        elif isinstance(target, ast.Starred):
            self._assign(target.value, value, frame)

    def _unpack(self, target: ast.Tuple | ast.List, value: Any, frame: _Frame) -> None:
        items = self._iterate(value)
        elts = target.elts
        star = next((i for i, e in enumerate(elts) if isinstance(e, ast.Starred)), None)
        if items is not None and (len(items) == len(elts) if star is None else len(items) >= len(elts) - 1):
            if star is None:
                for elt, item in zip(elts, items):
                    self._assign(elt, item, frame)
            else:
                after = len(elts) - star - 1
                for elt, item in zip(elts[:star], items[:star]):
                    self._assign(elt, item, frame)
                self._assign(elts[star], list(items[star:len(items) - after]), frame)
                for elt, item in zip(elts[star + 1:], items[len(items) - after:]):
                    self._assign(elt, item, frame)
            return
        for elt in elts:
            self._assign(elt, Unresolved(self.text(elt.value if isinstance(elt, ast.Starred) else elt)), frame)

