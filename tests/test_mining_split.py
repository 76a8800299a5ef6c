"""The miner's three layers, each exercised alone.

`nas.mining.interpreter` interprets plain Python with no Keras at all;
`nas.mining.keras_semantics` turns already-evaluated Keras calls into layers,
tensors and models; `nas.mining.keras_graphs` turns model objects into graphs
and mined models; `nas.mining.source` drives them over a file.
"""

from __future__ import annotations

import ast

import pytest

from nas.mining import keras_graphs, keras_objects, keras_semantics, source
from nas.mining.interpreter import MAX_UNROLL, NOT_HANDLED, FileContext, Interpreter
from nas.mining.interp_objects import _NO_SITE, _Frame, _Module, _StopRun
from nas.mining.values import Unresolved


def _interpret(text: str, cls: type = Interpreter, forced: dict | None = None, ctx: FileContext | None = None):
    """Runs a module body with ``cls`` and returns the interpreter (its ``globals`` hold the results)."""
    ctx = ctx or FileContext(text, ast.parse(text), "<test>")
    run = cls(ctx, forced or {})
    run._exec_block(ctx.tree.body, _Frame(run.globals))
    return run


# ---------------------------------------------------------------- the interpreter alone
def test_interpreter_evaluates_plain_python_without_keras():
    run = _interpret(
        "def double(n):\n"
        "    return n * 2\n"
        "class Box:\n"
        "    def __init__(self, size):\n"
        "        self.size = size\n"
        "    def area(self):\n"
        "        return self.size ** 2\n"
        "total = 0\n"
        "for i in range(5):\n"
        "    if i % 2:\n"
        "        continue\n"
        "    total += double(i)\n"
        "n = 1\n"
        "while n < 100:\n"
        "    n *= 3\n"
        "squares = {k: k * k for k in range(4)}\n"
        "area = Box(3).area()\n"
        "name = f'{total}-{n}'\n"
        "a, *rest = [1, 2, 3]\n"
    )
    g = run.globals
    assert (g["total"], g["n"], g["squares"], g["area"], g["name"]) == (12, 243, {0: 0, 1: 1, 2: 4, 3: 9}, 9, "12-243")
    assert (g["a"], g["rest"]) == (1, [2, 3])
    assert run.notes == [] and not run.stopped


def test_interpreter_leaves_library_values_unresolved_without_a_semantics():
    run = _interpret("import keras\nfrom keras.layers import *\nlayer = keras.layers.Dense(4)\nx = Dense(3)\n")
    assert isinstance(run.globals["keras"], Unresolved)
    assert isinstance(run.globals["layer"], Unresolved)
    assert isinstance(run.globals["x"], Unresolved)


def test_interpreter_unknown_loop_forgets_what_it_changed_and_unknown_branch_is_traced():
    text = "import sys\ncount = 0\nfor arg in sys.argv:\n    count += 1\nif sys.argv:\n    k = 1\nelse:\n    k = 2\n"
    ctx = FileContext(text, ast.parse(text), None)
    run = _interpret(text, ctx=ctx)
    assert run.globals["count"] == Unresolved("count")
    assert run.globals["k"] == 1 and len(run.trace) == 1
    other = _interpret(text, ctx=ctx, forced={run.trace[0][0]: False})  # the driver's next variant
    assert other.globals["k"] == 2


def test_interpreter_unbounded_loop_is_noted():
    run = _interpret("n = 0\nwhile True:\n    n += 1\n")
    assert any("unbounded loop at line 2" in note for note in run.notes)
    assert run.globals["n"] == Unresolved("n")
    assert MAX_UNROLL == 256


def test_interpreter_step_budget_stops_the_run():
    ctx = FileContext("x = 1\n", ast.parse("x = 1\n"), None)
    ctx.steps_left = 3
    run = Interpreter(ctx, {})
    with pytest.raises(_StopRun):
        run._exec_block(ast.parse("a = 1 + 2 + 3 + 4\n").body, _Frame(run.globals))


def test_interpreter_hooks_are_where_a_semantics_plugs_in():
    """A toy semantics: every tracked import is a module reference, and calling one returns its path."""

    class Toy(Interpreter):
        def _module_value(self, path):
            return _Module(path)

        def _call_api(self, path, args, kwargs, site):
            return ".".join(path) + f"/{len(args)}"

        def _foreign_binop(self, op, left, right, node):
            return "joined" if isinstance(left, _Module) else NOT_HANDLED

    run = _interpret("import keras\nv = keras.layers.Dense(4, 5)\nw = keras + 1\nz = 2 + 3\n", cls=Toy)
    assert run.globals["v"] == "keras.layers.Dense/2"
    assert run.globals["w"] == "joined" and run.globals["z"] == 5


# ---------------------------------------------------------------- the Keras semantics alone
def _semantics() -> keras_semantics.KerasSemantics:
    ctx = FileContext("", ast.parse(""), "<test>")
    return keras_semantics.KerasSemantics(ctx, {})


def test_semantics_builds_a_layer_from_an_evaluated_call():
    sem = _semantics()
    layer = sem._call_api(("keras", "layers", "Dense"), [8], {"activation": "relu"}, _NO_SITE)
    assert isinstance(layer, keras_objects._Layer)
    assert layer.call.keras == "Dense" and layer.call.activation is not None
    optimizer = sem._call_api(("tensorflow", "keras", "optimizers", "Adam"), [], {"learning_rate": 0.01}, _NO_SITE)
    assert isinstance(optimizer, keras_objects._Optimizer) and optimizer.config


def test_semantics_functional_model_from_evaluated_calls():
    sem = _semantics()
    inputs = sem._call_api(("keras", "Input"), [], {"shape": (4,)}, _NO_SITE)
    dense = sem._call_api(("keras", "layers", "Dense"), [2], {}, _NO_SITE)
    out = sem._call_foreign(dense, [inputs], {}, _NO_SITE)
    model = sem._call_api(("keras", "Model"), [inputs, out], {}, _NO_SITE)
    assert isinstance(model, keras_objects._Functional)
    mined = sem._snapshot(model)
    assert [layer.keras for layer in mined.layers][-1] == "Dense"


# ---------------------------------------------------------------- model graphs alone
def test_graphs_of_a_sequential_model():
    sem = _semantics()
    seq = sem._new_sequential([], {}, _NO_SITE)
    sem._sequential_add(seq, sem._call_api(("keras", "layers", "Dense"), [4], {"input_shape": (3,)}, _NO_SITE),
                        _NO_SITE)
    sem._sequential_add(seq, sem._call_api(("keras", "layers", "Dense"), [1], {}, _NO_SITE), _NO_SITE)
    protos, inputs, outputs = sem._model_graph(seq)
    assert len(inputs) == 1 and len(outputs) == 1
    assert [p.call.keras for p in protos] == ["InputLayer", "Dense", "Dense"]
    assert isinstance(sem, keras_graphs.ModelGraphs)


# ---------------------------------------------------------------- the driver
def test_driver_keeps_public_api_and_budgets():
    result = source.mine_source("from tensorflow import keras\nm = keras.Sequential([keras.layers.Dense(2)])\n")
    assert result.status == "ok" and len(result.models) == 1
    assert source.MAX_CALL_DEPTH == 12 and source.MAX_UNROLL == MAX_UNROLL and source.MAX_SOURCE_CHARS == 1_000_000
