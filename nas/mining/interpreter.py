"""The miner's abstract interpreter: plain Python over `ast`, never importing or running the code.

`Interpreter` holds the state of one interpretation, its budgets and its
scopes, and evaluates plain Python through three mixins, one module each:
`nas.mining.interp_statements`, `nas.mining.interp_expressions` and
`nas.mining.interp_calls`; its values, frames and budgets are
`nas.mining.interp_objects`, and what every variant of a file shares is
`nas.mining.interp_context.FileContext`. It knows nothing of Keras. Where a
value comes from a library it tracks (an import), or where a value made by
that library is called, indexed or read, it calls a hook; the defaults below
make such values `Unresolved`, so an `Interpreter` alone interprets plain
Python. `nas.mining.keras_semantics.KerasSemantics` overrides the hooks.
These modules import the standard library and `nas.mining.values` only.
"""

from __future__ import annotations

import ast
from typing import Any

from nas.mining.interp_calls import Calls
from nas.mining.interp_context import FileContext, _variant_closure
from nas.mining.interp_expressions import Expressions
from nas.mining.interp_objects import (
    MAX_CALL_DEPTH, MAX_COLLECTION, MAX_DEPTH, MAX_GRAPH_NODES, MAX_STEPS, MAX_UNROLL, NOT_HANDLED, _PLAIN_TYPES,
    _UNBOUND, _Class, _Frame, _GraphBudgetSpent, _Instance, _is_data, _Scope, _Site, _StopRun,
)
from nas.mining.interp_statements import Statements
from nas.mining.values import MAX_VISITS, Unresolved, node_count, unresolved_in

__all__ = [
    "FileContext", "Interpreter", "MAX_CALL_DEPTH", "MAX_COLLECTION", "MAX_DEPTH", "MAX_GRAPH_NODES", "MAX_STEPS",
    "MAX_UNROLL", "NOT_HANDLED",
]


class Interpreter(Statements, Expressions, Calls):
    """One interpretation of a file, with the arms of unknown branches fixed by ``forced``."""

    def __init__(self, ctx: FileContext, forced: dict[int, bool]):
        self.ctx = ctx
        self.forced = forced
        self.decided: dict[int, bool] = {}
        self.trace: list[tuple[int, bool, bool]] = []
        self.globals: dict[str, Any] = {"__name__": "__main__", "__file__": Unresolved("__file__")}
        self.definitions: list[Any] = []
        self.called: set[int] = set()
        self.instantiated: set[int] = set()
        self.loops: list[str] = []  # the expressions of the unknown-count loops being interpreted
        self.call_depth = 0
        self.depth = 0
        self._owner_stack: list[tuple[_Class, Any]] = []
        self.notes: list[str] = []
        self.stopped = False
        self._uid = 0    # object ids, in creation order (a scope marks what was made after it began)
        self._stamp = 0  # the semantics' own creation counter, recorded by scopes alongside
        self._calls: list[tuple[int, _Scope]] = []  # (function node id, scope) of the active calls
        self._builtins = self._make_builtins()

    # ------------------------------------------------------------ budgets
    def _tick(self) -> None:
        self.ctx.steps_left -= 1
        if self.ctx.steps_left < 0:
            raise _StopRun()

    def _small(self, value: Any) -> bool:
        """Whether a value unfolds to at most `MAX_VISITS` nodes, so hashing, comparing or copying it is cheap.

        The walk is charged to the step budget (a step per 16 nodes), so a loop
        that walks a large value again and again ends like any other long loop.
        """
        if not isinstance(value, (list, tuple, dict, set, frozenset)):
            return True
        count = node_count(value, MAX_VISITS)
        self.ctx.steps_left -= (MAX_VISITS if count is None else count) // 16
        if self.ctx.steps_left < 0:
            raise _StopRun()
        return count is not None

    def _charge(self, value: Any) -> Any:
        """Charges building a long list, tuple, dict or string to the step budget (a step per 16 items).

        ``[0] * 10000`` is one expression; without the charge a loop of them could
        fill memory within the step budget.
        """
        if isinstance(value, (list, tuple, str, bytes, dict, set)) and len(value) > 16:
            self.ctx.steps_left -= len(value) // 16
            if self.ctx.steps_left < 0:
                raise _StopRun()
        return value

    def _unresolved(self, value: Any) -> list[Unresolved]:
        """`unresolved_in`, its walk charged to the step budget like `_small`'s."""
        self._small(value)
        return unresolved_in(value)

    def _graph_tick(self, count: int = 1) -> None:
        """Counts graph nodes built or walked against the file's `MAX_GRAPH_NODES` budget."""
        self.ctx.graph_left -= count
        if self.ctx.graph_left < 0:
            raise _GraphBudgetSpent()

    # ------------------------------------------------------------ loops and calls cut short
    def _open_scope(self) -> _Scope:
        return _Scope(self._uid, self._stamp)

    def _close_scope(self, scope: _Scope) -> None:
        """Marks what the scope built when it was cut short (``scope.marker`` set)."""
        if scope.marker is None:
            return
        self._mark_built_since(scope, scope.marker)

    def _loop_values(self, loop: ast.For | ast.While, frame: _Frame) -> dict[str, Any]:
        """The values the names a loop assigns have before it runs (those bound at all)."""
        out = {}
        for name in self.ctx.loop_names(loop)[0]:
            scope = self.globals if name in frame.global_names else frame.locals
            if name in scope:
                out[name] = scope[name]
        return out

    def _forget_loop_values(self, loop: ast.For | ast.While, frame: _Frame, before: dict[str, Any]) -> None:
        """After a loop run an unknown number of times, the plain values it changed are unknown too.

        ``n += 1`` or ``filters *= 2`` interpreted once (or `MAX_UNROLL` times) is
        not their value after the loop, nor is a list it appends to; neither is a
        name bound before the loop and set to another value in it (the loop may
        run no time at all). A name first bound in the loop to the same value
        every iteration (``units = 64``) keeps it. Tensors, layers and models,
        and lists of them, keep their value: their layers carry the loop's
        ``repeat`` marker.
        """
        names, variant, assigns = self.ctx.loop_names(loop)

        def scope_of(name: str) -> dict[str, Any]:
            return self.globals if name in frame.global_names else frame.locals

        # A name the loop rebinds to another value than it had is variant too: the first
        # iteration reads the old value (`units = 64 if first else 32` after `first = False`).
        rebound = set()
        for name, old in before.items():
            new = scope_of(name).get(name, _UNBOUND)
            if not (new is old or isinstance(old, _PLAIN_TYPES) and type(old) is type(new) and old == new):
                rebound.add(name)
        variant = _variant_closure(variant | rebound, assigns)
        for name in names & variant:
            scope = scope_of(name)
            if name in scope and _is_data(scope[name]):
                scope[name] = Unresolved(name)

    def _next_uid(self) -> int:
        self._uid += 1
        return self._uid

    def text(self, node: ast.AST | None) -> str:
        return self.ctx.text(node)

    # ------------------------------------------------------------ branches
    def _decide(self, node: ast.AST, default: bool, split: bool) -> bool:
        key = id(node)
        if key in self.decided:
            return self.decided[key]
        choice = self.forced.get(key, default)
        self.decided[key] = choice
        self.trace.append((key, choice, split))
        return choice

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    # ------------------------------------------------------------ modules of the file's repository
    def _sibling_constant(self, parts: tuple[str, ...], level: int, name: str, default: Any) -> Any:
        """``name`` from a module of the mined file's repository, when it is a constant there; else ``default``.

        The module (found by ``ctx.modules``, a `nas.mining.sibling_modules.ModuleReader`)
        is never run: only its top-level assignments are interpreted, by a
        plain `Interpreter` that follows none of its imports, definitions or
        calls of its own code, and only plain data (numbers, strings, tuples,
        lists, dicts of them) is taken from it.
        """
        if self.ctx.modules is None:
            return default
        found = self.ctx.modules(parts, level)
        if found is None:
            return default
        key, text = found
        if key not in self.ctx.module_constants:
            self.ctx.module_constants[key] = {}  # a module importing the file back finds nothing, not a loop
            self.ctx.module_constants[key] = self._module_constants(text, key)
        value = self.ctx.module_constants[key].get(name, _UNBOUND)
        return default if value is _UNBOUND else value

    def _module_constants(self, text: str, key: str) -> dict[str, Any]:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return {}
        ctx = FileContext(text, tree, key)
        # The module's interpretation is charged to this file's budget, at most a tenth of it.
        ctx.steps_left = max(0, min(self.ctx.steps_left, MAX_STEPS // 10))
        before = ctx.steps_left
        module = Interpreter(ctx, {})
        frame = _Frame(module.globals)
        for stmt in tree.body:
            if not isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                continue
            try:
                module._exec_block([stmt], frame)
            except _StopRun:
                break
            except Exception:  # noqa: BLE001  (a signal or an odd statement: skip it, keep the others)
                continue
        self.ctx.steps_left -= before - max(ctx.steps_left, 0)
        return {k: v for k, v in module.globals.items()
                if not k.startswith("__") and not isinstance(v, Unresolved) and _is_data(v)}

    # ------------------------------------------------------------ hooks (a semantics overrides these)
    def _module_value(self, path: tuple[str, ...]) -> Any:
        """What ``import a.b`` binds: a reference into a tracked library, or a marker."""
        return Unresolved(".".join(path))

    def _star_import(self, base: tuple[str, ...]) -> None:
        """``from base import *``: the semantics may resolve the names it brings later (`_unbound_name`)."""

    def _unbound_name(self, name: str) -> Any:
        """A name bound nowhere the interpreter can see."""
        return Unresolved(name)

    def _call_api(self, path: tuple[str, ...], args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        """A call of a reference into a tracked library (``keras.layers.Dense(4)``)."""
        return Unresolved(self.text(site.node))

    def _call_foreign(self, func: Any, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        """A call of a value the interpreter does not model (a library object, a marker)."""
        return Unresolved(self.text(site.node))

    def _call_instance_fallback(self, inst: _Instance, args: list[Any], kwargs: dict[str, Any],
                                site: _Site) -> Any:
        """A call of an instance whose class defines no ``__call__``."""
        return Unresolved(self.text(site.node))

    def _new_instance(self, cls: _Class, site: _Site) -> _Instance:
        """A fresh instance of ``cls``, before its ``__init__`` runs."""
        return _Instance(cls, {})

    def _model_attr(self, model: Any, attr: str, node: ast.AST | None, owner: Any = None) -> Any:
        """An attribute of the library state an instance carries (``_Instance.seq``/``model``)."""
        return Unresolved(self.text(node) if node is not None else attr)

    def _model_method(self, target: Any, name: str, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        """A call of a method `_model_attr` handed out."""
        return Unresolved(self.text(site.node))

    def _foreign_attr(self, obj: Any, attr: str, node: ast.AST) -> Any:
        """An attribute of a value the interpreter does not model, or `NOT_HANDLED`."""
        return NOT_HANDLED

    def _foreign_subscript(self, container: Any, node: ast.Subscript) -> Any:
        """``container[key]`` for a value the interpreter does not model, or `NOT_HANDLED`."""
        return NOT_HANDLED

    def _foreign_binop(self, op: ast.operator, left: Any, right: Any, node: ast.AST) -> Any:
        """``left <op> right`` for values the interpreter does not model, or `NOT_HANDLED`."""
        return NOT_HANDLED

    def _mark_built_since(self, scope: _Scope, marker: str) -> None:
        """Marks what the semantics built since ``scope`` began (a loop or call cut short)."""

    def _mark_collected(self, loop: ast.For | ast.While, frame: _Frame, start: int, marker: str) -> None:
        """Marks what a loop of unknown count made and collected in a value it grows."""
