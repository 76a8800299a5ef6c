"""The interpreter's values, frames, control-flow signals and budgets.

Plain Python values (numbers, strings, tuples, lists, dicts, ranges) stand for
themselves; `nas.mining.values.Unresolved` stands for anything the file does
not determine. The classes here are what the interpreter makes of the rest:
functions, classes, instances, methods, builtins, and references into a
library the semantics tracks (`_Module`). Nothing here knows about Keras; the
Keras objects (layers, tensors, models) are in `nas.mining.keras_objects`.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
from typing import Any, Callable, Sequence

from nas.mining.values import KerasObject, Unresolved, walk

MAX_STEPS = 400_000
MAX_CALL_DEPTH = 12
MAX_UNROLL = 256
MAX_GRAPH_NODES = 500_000  # graph nodes copied or walked per file (nested models can double per level)
MAX_DEPTH = 150          # nested statements + expressions + calls, under Python's own recursion limit
MAX_COLLECTION = 10_000  # longest list, tuple or string the interpreter builds
_MAX_INT_BITS = 4096
NOT_HANDLED = NotImplemented  # a hook's answer: "not a value of mine", the interpreter goes on


# ---------------------------------------------------------------- abstract values
class _Module:
    """A reference into a library the semantics tracks (Keras, TensorFlow): a module, class or function, by path."""

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
    """An instance of a class of the file; the last three fields are the semantics' (`_new_instance`)."""

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



def _is_data(value: Any) -> bool:
    """A plain value, or a container of plain values only (no layer, tensor or model inside).

    Only the first `MAX_VISITS` nodes are looked at (`nas.mining.values.walk`).
    """
    containers = (dict, list, tuple, set, frozenset)
    plain = _PLAIN_TYPES + (range, Unresolved, KerasObject)
    return all(isinstance(item, containers) or isinstance(item, plain) for item in walk(value))


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
