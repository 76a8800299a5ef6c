"""Static mining of Keras models from Python source: a small abstract interpreter over `ast`.

Manas (section 4.1) extracts models with a control-flow analysis that follows
helper calls, branches and loops of known trip count. This module does the
same by interpreting the module's AST over abstract values, without ever
importing or executing the mined code:

* Python constants, tuples, lists, dicts and ranges evaluate as themselves,
  so module-level and local constants propagate (``num_filters * 2``);
  anything that depends on data, files, the command line or code outside
  the file is an `Unresolved` marker carrying its source text. The one
  exception: given a `nas.mining.sibling_modules.ModuleReader` (`nas-mine`
  passes one), plain constants imported from a module of the file's own
  repository (``from config import NUM_CLASSES``) are read from its
  top-level assignments, without running it.
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

Layout: the generic abstract interpreter is `nas.mining.interpreter` (with
`interp_objects`, `interp_context`, `interp_statements`, `interp_expressions`
and `interp_calls`: values, budgets, statements, expressions, calls); what Keras calls mean is
`nas.mining.keras_semantics` (with `nas.mining.keras_objects` and
`nas.mining.keras_graphs`); this module is the file-level driver: decoding and
parsing, one `_Run` per branch variant, and the de-duplication of models.
"""

from __future__ import annotations

import ast
import collections
import io
import json
import re
import tokenize
import warnings
from typing import Any, Callable

from nas.mining import keras_api
from nas.mining.interp_context import FileContext, _method_references
from nas.mining.interp_objects import (
    MAX_CALL_DEPTH, MAX_COLLECTION, MAX_DEPTH, MAX_GRAPH_NODES, MAX_STEPS, MAX_UNROLL, _NO_SITE, _BreakSignal,
    _Class, _ContinueSignal, _Frame, _Func, _RaiseSignal, _ReturnSignal, _Site, _StopRun, _with_marker,
)
from nas.mining.keras_semantics import KerasSemantics
from nas.mining.model import (
    BINARY, INTERNAL_ERROR, NO_MODEL, NOT_KERAS, NOT_TEXT, OK, PYTHON2, SYNTAX_ERROR, TOO_LARGE, MinedModel,
    MineResult,
)
from nas.mining.sibling_modules import ModuleReader

MAX_SOURCE_CHARS = 1_000_000
MAX_VARIANTS = 16

# The budgets are part of this module's contract (its docstring names them); they live with the interpreter.
__all__ = [
    "MAX_CALL_DEPTH", "MAX_COLLECTION", "MAX_DEPTH", "MAX_GRAPH_NODES", "MAX_SOURCE_CHARS", "MAX_STEPS", "MAX_UNROLL",
    "MAX_VARIANTS", "mine_source",
]


# ---------------------------------------------------------------- one variant
class _Run(KerasSemantics):
    """One interpretation of a file, with the arms of unknown branches fixed by ``forced``."""

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


# ---------------------------------------------------------------- entry point
def _model_key(model: MinedModel) -> tuple:
    return (model.provenance, model.layers, json.dumps(model.optimizer, sort_keys=True, default=str), model.loss)


def mine_source(text: str | bytes, path: str | None = None, modules: ModuleReader | None = None) -> MineResult:
    """Finds the Keras models a Python source file builds, without running it.

    Args:
      text: the file's text (bytes are decoded as UTF-8, bad bytes replaced).
      path: where the text came from, recorded in each model's provenance.
      modules: finds the modules of the file's repository it imports names
        from (`nas.mining.sibling_modules.module_reader`); their top-level
        constants are then known (``from config import NUM_CLASSES``). None:
        such names are unresolved.
    Returns:
      A `MineResult`; it never raises. ``models`` holds one `MinedModel` per
      distinct model built (per branch variant when the variants differ).
    """
    try:
        return _mine(text, path, modules)
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


def _mine(text: Any, path: Any, modules: ModuleReader | None = None) -> MineResult:
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
    return _explore(FileContext(text, tree, path, modules))


def _explore(ctx: FileContext) -> MineResult:
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
