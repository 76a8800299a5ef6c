"""Static mining of Keras models from Python source: a small abstract interpreter over `ast`.

Manas (section 4.1) extracts models with a control-flow analysis that follows
helper calls, branches and loops of known trip count. This module does the
same by interpreting the module's AST over abstract values, without ever
importing or executing the mined code:

* Python constants, tuples, lists, dicts and ranges evaluate as themselves,
  so module-level and local constants propagate (``num_filters * 2``);
  anything that depends on data, files, the command line or code outside
  the file is an `Unresolved` marker carrying its source text.
* Names imported from Keras (every spelling: ``keras``, ``tensorflow.keras``,
  ``tf.keras``, aliases, star imports) are API references; calling one makes
  a layer object, a tensor, a model or an optimizer (`nas.mining.keras_api`,
  `nas.mining.keras_layers`, `nas.mining.optimizers`).
* Module-level functions, classes and methods are followed with their
  arguments bound (to a depth of `MAX_CALL_DEPTH`). Functions and classes the
  module never calls are called afterwards with their defaults (parameters
  without one are unresolved), callers first, so model builders in library
  files are mined too. Keras ``Model`` subclasses are traced through ``call``.
* ``for`` over a known sequence and ``while`` with a known condition are
  unrolled (up to `MAX_UNROLL` iterations). A loop whose trip count is
  unknown runs its body once, and every layer it adds (or creates and
  collects in a list it grows) carries a ``repeat`` marker, so its model is
  not mistaken for a complete one. A ``while`` loop still running after
  `MAX_UNROLL` iterations (``while True:`` without a reachable ``break``)
  is not finished: every layer it added is marked (``unbounded loop at line
  N``). After a loop whose trip count was not known, the plain values it
  changes (counters, lists of numbers) are unresolved, not the value after
  the one (or `MAX_UNROLL`) iterations interpreted.
* A call nested deeper than `MAX_CALL_DEPTH` (a recursive builder) is not
  followed; every layer built since the outermost call of the recursive
  function began is marked, so a cut-off recursion never passes for a
  complete model.
* An ``if`` whose condition is unknown is a branch point. The file is
  interpreted once per combination of arms (up to `MAX_VARIANTS` variants,
  breadth-first, one decision per ``if`` statement per variant); a model
  built differently on the two arms is mined once per variant. Arms that
  end in ``raise``/``exit`` are not taken, and branches whose arms only
  print or log are not split.
* Every variant shares one budget of `MAX_STEPS` evaluation steps, and one
  of `MAX_GRAPH_NODES` graph nodes built or walked while models are copied
  into one another or assembled, so huge or adversarial inputs end with a
  note instead of running long. Building a long list or string, and walking
  a nested value (to hash, compare or convert it), costs a step per 16
  items, and a value that unfolds past `nas.mining.values.MAX_VISITS` nodes
  (``a = [a, a]`` in a loop) is never hashed, compared or converted whole.
  A Sequential model a spent budget may have cut short is marked, so it is
  not counted complete.

`mine_source` never raises: malformed input ends in a `MineResult` whose
``status`` and ``reason`` say what happened.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import io
import json
import operator
import re
import tokenize
import warnings
from typing import Any, Callable, Sequence

from nas.mining import keras_api
from nas.mining.assemble import Proto, assemble
from nas.mining.keras_layers import (
    INPUT, OTHER, LayerCall, activation_call, opaque_call, translate_layer,
    translate_merge_function, unresolved_source,
)
from nas.mining.model import (
    BINARY, INTERNAL_ERROR, NO_MODEL, NOT_KERAS, NOT_TEXT, OK, PYTHON2, SYNTAX_ERROR, TOO_LARGE, MinedModel,
    MineResult, Provenance,
)
from nas.mining.optimizers import optimizer_from_value, translate_optimizer
from nas.mining.values import MAX_VISITS, KerasObject, Unresolved, node_count, render, unresolved_in

MAX_SOURCE_CHARS = 1_000_000
MAX_VARIANTS = 16
MAX_STEPS = 400_000
MAX_CALL_DEPTH = 12
MAX_UNROLL = 256
MAX_GRAPH_NODES = 500_000  # graph nodes copied or walked per file (nested models can double per level)
MAX_DEPTH = 150          # nested statements + expressions + calls, under Python's own recursion limit
MAX_COLLECTION = 10_000  # longest list, tuple or string the interpreter builds
_MAX_INT_BITS = 4096
_TEXT_LIMIT = 80
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


# ---------------------------------------------------------------- abstract values
class _Module:
    """A reference into Keras or TensorFlow (a module, class or function), by dotted path."""

    __slots__ = ("path",)

    def __init__(self, path: tuple[str, ...]):
        self.path = path


@dataclasses.dataclass(eq=False)
class _Func:
    node: ast.AST  # FunctionDef, AsyncFunctionDef or Lambda
    closure: "_Frame | None"
    defaults: list[Any]
    kw_defaults: list[Any]
    name: str
    kind: str = "function"  # "function" | "staticmethod" | "classmethod" | "property"
    owner: "_Class | None" = None


@dataclasses.dataclass(eq=False)
class _Class:
    node: ast.ClassDef
    name: str
    ns: dict[str, Any]
    bases: list[Any]


@dataclasses.dataclass(eq=False)
class _Instance:
    cls: _Class
    attrs: dict[str, Any]
    keras: str | None = None           # "sequential" | "model" | "layer" | None
    seq: "_Sequential | None" = None   # the layers of a Sequential subclass
    model: "_ModelState | None" = None  # compile/build state of a Model subclass


@dataclasses.dataclass(eq=False)
class _Method:
    func: _Func
    receiver: Any


@dataclasses.dataclass(eq=False)
class _Builtin:
    name: str
    fn: Callable[[list[Any], dict[str, Any], "_Site"], Any]


@dataclasses.dataclass(eq=False)
class _Super:
    cls: _Class
    inst: Any


@dataclasses.dataclass(eq=False)
class _Layer:
    """A Keras layer object, not yet applied.

    ``loops`` are markers it carries wherever it is applied: a layer made in a
    loop of unknown count and collected in a list the loop grows
    (``layers.append(Dense(4))``, then ``Sequential(layers)``) is repeated an
    unknown number of times too.
    """

    uid: int
    call: LayerCall
    line: int
    loops: tuple[str, ...] = ()


@dataclasses.dataclass(eq=False)
class _Tensor:
    uid: int


@dataclasses.dataclass(eq=False)
class _ModelState:
    uid: int
    line: int
    optimizer: dict[str, Any] | None = None
    loss: str | None = None
    consumed: bool = False
    compiled: bool = False
    build_shape: Any = None


@dataclasses.dataclass(eq=False)
class _Sequential(_ModelState):
    # (kind, payload, line, loop markers, stamp); the stamp orders items across all models of a run.
    items: list[tuple[str, Any, int, tuple[str, ...], int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class _Functional(_ModelState):
    inputs: tuple[int, ...] = ()
    outputs: tuple[int, ...] = ()


@dataclasses.dataclass(eq=False)
class _App:
    """A pretrained Keras application (VGG16, ResNet50...): an opaque layer with an input."""

    name: str
    input_uid: int
    output_uid: int
    protos: tuple[Proto, ...]


@dataclasses.dataclass(eq=False)
class _Optimizer:
    config: dict[str, Any]


@dataclasses.dataclass(eq=False)
class _BoundMethod:
    """A method of a value the interpreter models natively (a list, a Sequential...)."""

    name: str
    target: Any


@dataclasses.dataclass(frozen=True)
class _Site:
    """A call site: the Call node and the nodes of its arguments (for marker text)."""

    node: ast.AST | None
    arg_nodes: tuple[ast.AST, ...] = ()
    kw_nodes: tuple[tuple[str, ast.AST], ...] = ()

    @property
    def line(self) -> int:
        return getattr(self.node, "lineno", 0)

    def arg_node(self, index: int) -> ast.AST | None:
        return self.arg_nodes[index] if index < len(self.arg_nodes) else None

    def kw_node(self, name: str) -> ast.AST | None:
        return dict(self.kw_nodes).get(name)


_NO_SITE = _Site(None)


class _Frame:
    __slots__ = ("locals", "closure", "global_names", "owner", "is_class")

    def __init__(self, local_vars: dict[str, Any], closure: "_Frame | None" = None,
                 owner: _Class | None = None, is_class: bool = False):
        self.locals = local_vars
        self.closure = closure
        self.global_names: set[str] = set()
        self.owner = owner
        self.is_class = is_class


# Control flow of the interpreted program, as Python exceptions of the interpreter.
class _ReturnSignal(Exception):
    def __init__(self, value: Any):
        super().__init__()
        self.value = value


class _BreakSignal(Exception):
    pass


class _ContinueSignal(Exception):
    pass


class _RaiseSignal(Exception):
    """The interpreted program raised; the enclosing call evaluates to Unresolved."""


class _StopRun(Exception):
    """The step budget is spent."""

    note = f"step budget of {MAX_STEPS} spent; later code was not interpreted"


class _GraphBudgetSpent(_StopRun):
    """The graph-node budget is spent (models nested in models, copied again and again)."""

    note = f"graph budget of {MAX_GRAPH_NODES} nodes spent; later code and larger models were not built"


class _Scope:
    """A loop or call being interpreted: where the run's counters stood when it began.

    When the loop or call turns out to be cut short (``marker`` set), everything
    built since ``uid``/``stamp`` gets ``marker`` as a ``repeat`` marker when it closes.
    """

    __slots__ = ("uid", "stamp", "marker")

    def __init__(self, uid: int, stamp: int):
        self.uid = uid
        self.stamp = stamp
        self.marker: str | None = None


_PLAIN_TYPES = (bool, int, float, complex, str, bytes, type(None))
_SEQUENCES = (tuple, list, str, bytes)
_INERT_CALL_ROOTS = frozenset({"print", "logging", "logger", "log", "warnings", "plt", "tqdm", "pprint"})
_EXIT_CALLS = frozenset({"exit", "quit", "sys.exit", "os._exit"})


def _known(value: Any) -> bool:
    return isinstance(value, _PLAIN_TYPES + (tuple, list, dict, range, set, frozenset))


# ---------------------------------------------------------------- per-file context
class _FileContext:
    """What every variant of one file shares: the tree, source text, caches and the step budget."""

    def __init__(self, text: str, tree: ast.Module, path: str | None):
        self.tree = tree
        self.path = path
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


# ---------------------------------------------------------------- one variant
class _Run:
    """One interpretation of a file, with the arms of unknown branches fixed by ``forced``."""

    def __init__(self, ctx: _FileContext, forced: dict[int, bool]):
        self.ctx = ctx
        self.forced = forced
        self.decided: dict[int, bool] = {}
        self.trace: list[tuple[int, bool, bool]] = []
        self.nodes: dict[int, Proto] = {}
        self.models: list[Any] = []
        self.globals: dict[str, Any] = {"__name__": "__main__", "__file__": Unresolved("__file__")}
        self.stars: list[tuple[str, ...]] = []
        self.definitions: list[Any] = []
        self.called: set[int] = set()
        self.instantiated: set[int] = set()
        self.loops: list[str] = []
        self.channels_first = False
        self.call_depth = 0
        self.depth = 0
        self._owner_stack: list[tuple[_Class, Any]] = []
        self.traced: dict[int, Any] = {}
        self.notes: list[str] = []
        self.stopped = False
        self._uid = 0
        self._stamp = 0
        self._seqs: list[_Sequential] = []      # every Sequential of the run, to mark cut-short ones
        self._appended: list[_Sequential] = []  # the Sequential of each item added, by stamp - 1
        self._layers: list[_Layer] = []          # every layer object, in uid order
        self._calls: list[tuple[int, _Scope]] = []  # (function node id, scope) of the active calls
        self._builtins = self._make_builtins()

    # ------------------------------------------------------------ driver
    def execute(self) -> list[MinedModel]:
        module = _Frame(self.globals)
        self._guarded(lambda: self._exec_block(self.ctx.tree.body, module))
        if not self.stopped:
            self._guarded(self._call_uncalled)
        if not self.stopped:
            self._guarded(self._trace_subclassed)
        models = []
        for obj in self.models:
            try:
                model = self._snapshot(obj)
            except _StopRun as stop:
                self._note(stop.note)
                continue
            if model is not None:
                models.append(model)
        return models

    def _guarded(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except (_RaiseSignal, _ReturnSignal, _BreakSignal, _ContinueSignal):
            pass
        except _StopRun as stop:
            self._cut_short(stop.note)
        except RecursionError:
            self._cut_short("Python's recursion limit was reached; later code was not interpreted")

    def _cut_short(self, note: str) -> None:
        """Ends the run early: a Sequential model may be missing layers later code would have added.

        A functional model is fixed once ``Model(...)`` is called and a subclassed
        one is not traced after a stop, so only Sequential models are marked.
        """
        self.stopped = True
        self._note(note)
        marker = f"interpretation cut short ({note.split(';')[0]})"
        for seq in self._seqs:
            seq.items[:] = [(kind, payload, line, _with_marker(loops, marker), stamp)
                            for kind, payload, line, loops, stamp in seq.items]

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
        marker = scope.marker
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
        self._mark_collected_layers(stmt, frame, start, expr)
        self._forget_loop_values(stmt, frame, before)

    def _mark_collected_layers(self, loop: ast.For | ast.While, frame: _Frame, start: int, marker: str) -> None:
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
                if base is not None and base[0] in keras_api.TRACKED_ROOTS:
                    self.stars.append(base)
                continue
            name = alias.asname or alias.name
            value = self._module_value(base + (alias.name,)) if base is not None else Unresolved(alias.name)
            self._bind(name, value, frame)

    def _module_value(self, path: tuple[str, ...]) -> Any:
        return _Module(path) if path[0] in keras_api.TRACKED_ROOTS else Unresolved(".".join(path))

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
        if name in keras_api.STAR_NAMES:
            for base in reversed(self.stars):
                if keras_api.classify(base + (name,)).category != keras_api.OTHER:
                    return _Module(base + (name,))
        return Unresolved(name)

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
        if isinstance(container, _Tensor):
            return self._opaque("getitem", [container.uid], _Site(node))
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
        if isinstance(op, ast.Add) and isinstance(left, _Tensor) and isinstance(right, _Tensor):
            # `x + shortcut` on Keras tensors is an Add layer in tf.keras.
            return self._apply_call(translate_layer("Add"), [left.uid, right.uid], _Site(node), None)
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
        if isinstance(obj, _ModelState):
            return self._model_attr(obj, attr, node)
        if isinstance(obj, _App):
            if attr in ("input", "inputs"):
                return _Tensor(obj.input_uid)
            if attr in ("output", "outputs"):
                return _Tensor(obj.output_uid)
            return unknown
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
        if isinstance(func, _Layer):
            inputs = args[0] if args else kwargs.get("inputs")
            return self._apply_call(func.call, self._input_uids(inputs, site), site, func.uid, func.line,
                                    func.loops)
        if isinstance(func, (_ModelState, _App)):
            return self._apply_model(func, args[0] if args else kwargs.get("inputs"), site)
        if isinstance(func, _Instance):
            return self._call_instance(func, args, kwargs, site)
        tensors = [v.uid for v in _flatten(args + list(kwargs.values())) if isinstance(v, _Tensor)]
        if tensors:
            return self._opaque(self.text(getattr(site.node, "func", None)), tensors, site)
        return Unresolved(self.text(site.node))

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

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    # ------------------------------------------------------------ classes
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

    def _instantiate(self, cls: _Class, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        self.instantiated.add(id(cls))
        inst = _Instance(cls, {}, self._keras_base(cls))
        if inst.keras == "sequential":
            inst.seq = self._register(_Sequential(self._next_uid(), site.line))
            self.models.append(inst.seq)
        elif inst.keras == "model":
            inst.model = _ModelState(self._next_uid(), site.line)
            self.models.append(inst)
        init = self._class_attr(cls, "__init__")
        if isinstance(init, _Func):
            self._invoke(init, [inst] + args, kwargs, site)
        return inst

    def _call_instance(self, inst: _Instance, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        method = self._class_attr(inst.cls, "__call__")
        if isinstance(method, _Func):
            return self._invoke(method, [inst] + args, kwargs, site)
        if inst.seq is not None:
            return self._apply_model(inst.seq, args[0] if args else kwargs.get("inputs"), site)
        if inst.keras in ("model", "layer"):
            call = self._class_attr(inst.cls, "call")
            if inst.model is not None:
                inst.model.consumed = True
            if isinstance(call, _Func):
                return self._invoke(call, [inst] + args, kwargs, site)
        tensors = [v.uid for v in _flatten(args) if isinstance(v, _Tensor)]
        if tensors:
            return self._opaque(inst.cls.name, tensors, site)
        return Unresolved(self.text(site.node))

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

    def _call_method(self, method: _BoundMethod, args: list[Any], kwargs: dict[str, Any], site: _Site) -> Any:
        target, name = method.target, method.name
        if isinstance(target, (_ModelState, _Instance)):
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

    # ------------------------------------------------------------ model graphs
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
            if model.model is not None and not self.stopped:
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
        """Traces ``call`` of a Keras Model subclass on a fresh Input."""
        state = inst.model
        call = self._class_attr(inst.cls, "call")
        if not isinstance(call, _Func):
            return None
        kwargs = {} if state.build_shape is None else {"batch_shape": state.build_shape}
        input_uid = self._add_node(translate_layer("Input", (), kwargs, channels_first=self.channels_first), (),
                                   state.line, None)
        out = self._invoke(call, [inst, _Tensor(input_uid)], {}, _NO_SITE)
        outs = [v.uid for v in _flatten([out]) if isinstance(v, _Tensor)]
        if not outs:
            return None
        return self._ancestors(outs), [input_uid], outs

    # ------------------------------------------------------------ end of a variant
    def _call_uncalled(self) -> None:
        """Calls module-level functions and classes the module never called, callers first."""
        refs = self.ctx.references
        # A def run again (in a loop) is one definition, its first binding; comparing every pair of
        # definitions was quadratic, hours for a def inside nested `while True:` loops.
        first: dict[int, Any] = {}
        for d in self.definitions:
            first.setdefault(id(d.node), d)
        defs = list(first.values())
        defined = {d.name for d in defs}
        referrers = collections.Counter(name for d in defs for name in refs.get(id(d.node), set()) & defined)

        def referenced(d: Any) -> bool:  # named in the body of another definition
            return referrers[d.name] - (d.name in refs.get(id(d.node), ())) > 0

        for d in sorted(defs, key=referenced):  # stable: roots first, then definition order
            if isinstance(d, _Func):
                if id(d.node) not in self.called and d.kind == "function":
                    self._invoke(d, [], {}, _NO_SITE)
            elif isinstance(d, _Class):
                self._call_class(d)

    def _call_class(self, cls: _Class) -> None:
        kind = self._keras_base(cls)
        if kind == "layer":
            return
        methods = [f for name, f in cls.ns.items() if isinstance(f, _Func) and not name.startswith("__")
                   and f.kind != "property"]
        uncalled = [f for f in methods if id(f.node) not in self.called]
        if kind in ("model", "sequential"):
            if id(cls) not in self.instantiated:
                self._instantiate(cls, [], {}, _Site(cls.node))
            return
        if not uncalled:
            return
        inst = self._instantiate(cls, [], {}, _Site(cls.node))
        # Methods other methods call (self.build_block) are reached through their callers.
        inner = {name for f in methods for name in _method_references(f.node)}
        for f in sorted(uncalled, key=lambda f: f.name in inner):
            if id(f.node) not in self.called:
                receiver = inst if f.kind != "classmethod" else cls
                self._invoke(f, [] if f.kind == "staticmethod" else [receiver], {}, _NO_SITE)

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


def _is_data(value: Any) -> bool:
    """A plain value, or a container of plain values only (no layer, tensor or model inside)."""
    stack, seen = [value], 0
    while stack and seen < MAX_VISITS:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif not isinstance(item, _PLAIN_TYPES + (range, Unresolved, KerasObject)):
            return False
    return True


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


def _with_marker(loops: tuple[str, ...], *markers: str) -> tuple[str, ...]:
    """``loops`` with ``markers`` appended, each at most once."""
    return tuple(dict.fromkeys(loops + markers)) if markers else loops


def _flatten(values: Sequence[Any], depth: int = 0) -> list[Any]:
    """The leaves of nested lists and tuples (tensors passed as ``[a, [b, c]]``), to a bounded depth.

    At most `MAX_COLLECTION` items are visited: lists that share sublists would
    otherwise unfold to exponentially many leaves.
    """
    out: list[Any] = []
    left = [MAX_COLLECTION]

    def walk(items: Sequence[Any], level: int) -> None:
        for value in items:
            left[0] -= 1
            if left[0] < 0:
                return
            if isinstance(value, (list, tuple)):
                if level < 16:
                    walk(value, level + 1)
            else:
                out.append(value)

    walk(values, depth)
    return out


_REQUIRED = object()
_UNBOUND = object()  # no binding (a name the loop deleted)

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_,
    ast.BitXor: operator.xor, ast.BitAnd: operator.and_,
}
_COMPARES = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


# ---------------------------------------------------------------- entry point
def _model_key(model: MinedModel) -> tuple:
    return (model.provenance, model.layers, json.dumps(model.optimizer, sort_keys=True, default=str), model.loss)


def mine_source(text: str | bytes, path: str | None = None) -> MineResult:
    """Finds the Keras models a Python source file builds, without running it.

    Args:
      text: the file's text (bytes are decoded as UTF-8, bad bytes replaced).
      path: where the text came from, recorded in each model's provenance.
    Returns:
      A `MineResult`; it never raises. ``models`` holds one `MinedModel` per
      distinct model built (per branch variant when the variants differ).
    """
    try:
        return _mine(text, path)
    except Exception as exc:  # last resort: a miner bug must not stop mining a corpus
        return MineResult(reason=f"internal error: {type(exc).__name__}: {exc}"[:300], status=INTERNAL_ERROR,
                          path=path if isinstance(path, str) else None)


# A file whose bytes are this share or more undecodable is data, not source.
_BINARY_SHARE = 0.05
_PY2_PATTERNS = (
    (re.compile(r"^[ \t]*print[ \t]+(?![ \t]*[(=.\[,)]|[ \t]*$)", re.M), "a print statement"),
    (re.compile(r"^[ \t]*exec[ \t]+[\"'\w]", re.M), "an exec statement"),
    (re.compile(r"^[ \t]*except[ \t]+[\w.]+[ \t]*,[ \t]*\w+[ \t]*:", re.M), "'except E, name:'"),
    (re.compile(r"^[ \t]*raise[ \t]+[\w.]+[ \t]*,", re.M), "'raise E, message'"),
    (re.compile(r"<>"), "the <> operator"),
    (re.compile(r"`[^`\n]+`"), "backquotes"),
    (re.compile(r"(?<![\w.])0\d+(?![\w.])"), "an old-style octal literal"),
    (re.compile(r"(?<![\w.])\d+[lL](?!\w)"), "a long integer literal"),
    (re.compile(r"\bur[\"']", re.I), "a ur'' string"),
)


def _decode(data: bytes) -> str | None:
    """Source bytes as text (PEP 263 coding cookie or BOM honoured), or None for binary data."""
    if b"\x00" in data:
        return None
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        pass
    text = data.decode("utf-8", "replace")
    if text.count("\ufffd") >= max(1, _BINARY_SHARE * len(text)):
        return None
    return text


def _python2_hint(text: str, exc: SyntaxError) -> str | None:
    """What marks a text Python 3 cannot parse as Python 2, or None."""
    if "Missing parentheses in call to 'print'" in (exc.msg or ""):
        return f"a print statement at line {exc.lineno}"
    if "Missing parentheses in call to 'exec'" in (exc.msg or ""):
        return f"an exec statement at line {exc.lineno}"
    lines = text.splitlines()
    line = lines[exc.lineno - 1] if exc.lineno and 0 < exc.lineno <= len(lines) else ""
    for pattern, what in _PY2_PATTERNS:
        if pattern.search(line):
            return f"{what} at line {exc.lineno}"
    return None


def _mine(text: Any, path: Any) -> MineResult:
    path = None if path is None else str(path)
    if isinstance(text, (bytes, bytearray)):
        decoded = _decode(bytes(text))
        if decoded is None:
            return MineResult(reason=f"binary data, not source text ({len(text)} bytes)", status=BINARY, path=path)
        text = decoded
    if not isinstance(text, str):
        return MineResult(reason=f"expected source text, got {type(text).__name__}", status=NOT_TEXT, path=path)
    if "\x00" in text:
        return MineResult(reason="binary data, not source text (NUL characters)", status=BINARY, path=path)
    text = text.removeprefix("\ufeff")
    if len(text) > MAX_SOURCE_CHARS:
        return MineResult(reason=f"{len(text)} characters; the miner reads files of at most {MAX_SOURCE_CHARS}",
                          status=TOO_LARGE, path=path,
                          imports_keras=keras_api.mentions_keras_import(text[:MAX_SOURCE_CHARS]))
    try:
        with warnings.catch_warnings():  # invalid escapes etc. are the mined file's business, not ours
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except SyntaxError as exc:
        hint = _python2_hint(text, exc)
        if hint is not None:
            return MineResult(reason=f"Python 2 source ({hint}); the miner reads Python 3", status=PYTHON2,
                              path=path, imports_keras=keras_api.mentions_keras_import(text))
        return MineResult(reason=f"syntax error at line {exc.lineno}: {exc.msg}", status=SYNTAX_ERROR, path=path,
                          imports_keras=keras_api.mentions_keras_import(text))
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, lone surrogates, absurd nesting
        return MineResult(reason=f"cannot parse: {type(exc).__name__}: {exc}"[:200], status=SYNTAX_ERROR,
                          path=path, imports_keras=keras_api.mentions_keras_import(text))
    try:
        keras = keras_api.imports_keras(tree)
    except RecursionError:
        keras = keras_api.mentions_keras_import(text)
    if not keras:
        return MineResult(reason="no keras import", status=NOT_KERAS, path=path)
    return _explore(_FileContext(text, tree, path))


def _explore(ctx: _FileContext) -> MineResult:
    """Runs variants breadth-first over the arms of unknown branches."""
    queue: collections.deque[dict[int, bool]] = collections.deque([{}])
    seen: set[frozenset] = {frozenset()}
    models: dict[tuple, MinedModel] = {}
    notes: list[str] = []
    variants = 0
    while queue and variants < MAX_VARIANTS and ctx.steps_left > 0 and ctx.graph_left > 0:
        forced = queue.popleft()
        run = _Run(ctx, forced)
        found = run.execute()
        variants += 1
        for model in found:
            models.setdefault(_model_key(model), model)
        notes.extend(n for n in run.notes if n not in notes)
        prefix: dict[int, bool] = {}
        for key, choice, split in run.trace:
            if split and key not in forced:
                alternative = dict(prefix)
                alternative[key] = not choice
                frozen = frozenset(alternative.items())
                if frozen not in seen:
                    seen.add(frozen)
                    queue.append(alternative)
            prefix[key] = choice
    if queue:
        notes.append(f"{len(queue)} branch variant(s) left unexplored after {variants}")
    found_models = tuple(models.values())
    return MineResult(models=found_models, reason="" if found_models else "no model built",
                      status=OK if found_models else NO_MODEL, path=ctx.path, imports_keras=True,
                      notes=tuple(notes), variants=variants)
