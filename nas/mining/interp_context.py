"""What every interpretation of one file shares: its tree, lines, analysis caches and budgets.

Also the static questions the interpreter asks of the tree without running
it: which names a loop changes, whether an ``if`` arm exits, whether a
function is a generator.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Sequence

from nas.mining.interp_objects import _EXIT_CALLS, _INERT_CALL_ROOTS, MAX_GRAPH_NODES, MAX_STEPS

_TEXT_LIMIT = 80
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


# ---------------------------------------------------------------- per-file context
class FileContext:
    """What every variant of one file shares: the tree, source text, caches and the step budget."""

    def __init__(self, text: str, tree: ast.Module, path: str | None, modules: Any = None):
        self.tree = tree
        self.path = path
        # A `nas.mining.sibling_modules.ModuleReader` (or None): the repository's modules the file imports from.
        self.modules = modules
        self.module_constants: dict[str, dict[str, Any]] = {}  # file key -> its top-level constants
        # Split where the tokenizer does (str.splitlines also splits at \f, \x1c, \u2028, ...), so that
        # ast's line numbers index these lines.
        self.lines = [line.encode("utf-8", "surrogatepass") for line in _LINES.findall(text)]
        self.steps_left = MAX_STEPS
        self.graph_left = MAX_GRAPH_NODES
        self._branch: dict[int, tuple[bool, bool]] = {}
        self._generators: dict[int, bool] = {}
        self._loop_names: dict[int, tuple[frozenset[str], frozenset[str], _Assigns]] = {}
        self.references = self._module_references(tree)

    def text(self, node: ast.AST | None) -> str:
        """The source text of a node, whitespace collapsed, at most 80 characters."""
        try:
            first, last = node.lineno - 1, node.end_lineno - 1
            if first == last:
                raw = self.lines[first][node.col_offset:node.end_col_offset]
            elif last - first > 20:  # a marker needs the start of a long expression only
                raw = self.lines[first][node.col_offset:] + b" ..."
            else:
                raw = (self.lines[first][node.col_offset:] + b"".join(self.lines[first + 1:last])
                       + self.lines[last][:node.end_col_offset])
            text = raw.decode("utf-8", "replace")
        except (AttributeError, TypeError, IndexError):
            text = type(node).__name__
        text = " ".join(text.split())
        return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT - 3] + "..."

    def branch(self, node: ast.If) -> tuple[bool, bool]:
        """(default arm is 'then', worth exploring both arms) for an ``if`` with an unknown condition."""
        key = id(node)
        if key not in self._branch:
            raises_then, raises_else = _exits(node.body), _exits(node.orelse)
            default = not (raises_then and not raises_else)
            split = not (raises_then or raises_else) and not (_inert(node.body) and _inert(node.orelse))
            self._branch[key] = (default, split)
        return self._branch[key]

    def loop_names(self, loop: ast.For | ast.While) -> tuple[frozenset[str], frozenset[str], _Assigns]:
        """(names a loop binds, those whose value may differ from one iteration to the next, its assignments).

        Variant: the loop's targets, names updated in place (``n += 1``,
        ``sizes.append(...)``, ``d[k] = v``), and, to a fixpoint over the
        assignments (targets, names read), names assigned from an expression
        that reads a variant name or the name itself (``units = n * 16``).
        ``units = 64`` in the body is invariant: every iteration gives it the
        same value. Nested functions, classes and comprehensions bind nothing here.
        """
        key = id(loop)
        if key not in self._loop_names:
            bound: set[str] = set()
            variant: set[str] = set()
            assigns: list[tuple[set[str], set[str]]] = []
            if isinstance(loop, (ast.For, ast.AsyncFor)):
                variant |= _stored(loop.target)
            stack: list[ast.AST] = list(loop.body)
            while stack:
                node = stack.pop()
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    bound.add(node.name)
                    continue
                if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                    continue
                if isinstance(node, (ast.For, ast.AsyncFor)):
                    variant |= _stored(node.target)
                elif isinstance(node, ast.AugAssign):
                    variant |= _stored(node.target) | _receiver(node.target)
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        variant |= _receiver(target)  # d[k] = v, obj.attr = v change d, obj
                    assigns.append((set().union(*(_stored(t) for t in targets)), _loaded(node.value)))
                elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                    variant |= _stored(node.optional_vars)
                elif isinstance(node, ast.ExceptHandler) and node.name:
                    variant.add(node.name)
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr in _MUTATORS:
                    variant |= _receiver(node.func)
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    bound.add(node.id)
                stack.extend(ast.iter_child_nodes(node))
            frozen = tuple((frozenset(targets), frozenset(reads)) for targets, reads in assigns)
            self._loop_names[key] = (frozenset(bound | variant), _variant_closure(variant, frozen), frozen)
        return self._loop_names[key]

    def is_generator(self, node: ast.AST) -> bool:
        key = id(node)
        if key not in self._generators:
            self._generators[key] = any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(node))
        return self._generators[key]

    @staticmethod
    def _module_references(tree: ast.Module) -> dict[int, set[str]]:
        """Names each top-level def or class mentions (to call uncalled ones callers-first)."""
        refs: dict[int, set[str]] = {}
        for top in tree.body:
            if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = set()
                for n in ast.walk(top):
                    if isinstance(n, ast.Name):
                        names.add(n.id)
                    elif isinstance(n, ast.Attribute):
                        names.add(n.attr)
                refs[id(top)] = names
        return refs


def _own_nodes(func: ast.AST):
    """Nodes of a function body, not descending into nested functions and classes."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def _call_name(call: ast.Call) -> str:
    parts = []
    node = call.func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _exits(body: Sequence[ast.stmt]) -> bool:
    if not body:
        return False
    last = body[-1]
    return isinstance(last, ast.Raise) or (
        isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) and _call_name(last.value) in _EXIT_CALLS)


def _inert(body: Sequence[ast.stmt]) -> bool:
    for stmt in body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr):
            if isinstance(stmt.value, ast.Constant):
                continue
            if isinstance(stmt.value, ast.Call) and _call_name(stmt.value).split(".")[0] in _INERT_CALL_ROOTS:
                continue
        return False
    return True


def _method_references(node: ast.AST) -> set[str]:
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _as_load(target: ast.AST) -> ast.AST | None:
    if isinstance(target, ast.Name):
        return ast.copy_location(ast.Name(target.id, ast.Load()), target)
    if isinstance(target, ast.Attribute):
        return ast.copy_location(ast.Attribute(target.value, target.attr, ast.Load()), target)
    if isinstance(target, ast.Subscript):
        return ast.copy_location(ast.Subscript(target.value, target.slice, ast.Load()), target)
    return None


_Assigns = tuple[tuple[frozenset[str], frozenset[str]], ...]  # (names bound, names read) per assignment


def _variant_closure(variant: set[str] | frozenset[str], assigns: _Assigns) -> frozenset[str]:
    """``variant`` and every name assigned from one it holds (or from itself), to a fixpoint."""
    out = set(variant)
    changed = True
    while changed:
        changed = False
        for targets, reads in assigns:
            if not targets <= out and reads & (out | targets):
                out |= targets
                changed = True
    return frozenset(out)


_MUTATORS = frozenset({"append", "extend", "insert", "update", "setdefault", "pop", "popitem", "add", "remove",
                       "discard", "clear", "sort", "reverse"})



def _stored(target: ast.AST) -> set[str]:
    """Names an assignment target binds (``a``, ``a, (b, *c)``)."""
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _loaded(expr: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(expr) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _receiver(node: ast.AST) -> set[str]:
    """The name an attribute or item access starts from (``d`` in ``d[k].x``); none for a bare name."""
    if not isinstance(node, (ast.Attribute, ast.Subscript)):
        return set()
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return {node.id} if isinstance(node, ast.Name) else set()


