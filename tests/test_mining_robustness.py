"""The miner on inputs that used to hang it, exhaust memory or pass a truncated model as complete.

Files a corpus may hold that are not source (a FIFO named ``x.py``, a link to
``/dev/zero``), builder code whose trip count the miner cannot know
(``while True:``, ``range(10**9)``, a recursive builder, models nested in
models level after level), and output paths that cannot be written: each
ends in a bounded time with an outcome that says what happened, and no
model cut short by a limit of the miner is counted complete.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

from nas.mining import NOT_TEXT, OK, TOO_LARGE, SourceFile, mine_file, mine_source
from nas.mining.cli import main as nas_mine
from nas.mining.corpus import read_regular_file
from nas.mining.errors import FileTooLargeError, NotRegularFileError
from nas.mining.source import MAX_CALL_DEPTH, MAX_UNROLL

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "keras"
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                reason="FIFOs and /dev/zero are POSIX")

_HEAD = """\
from keras.models import Sequential
from keras.layers import Conv2D, Dense, Flatten, Activation
model = Sequential()
model.add(Conv2D(8, 3, input_shape=(28, 28, 1)))
model.add(Activation('relu'))
model.add(Flatten())
"""  # lines 1-6; the body under test starts at line 7


def _builder(body: str) -> str:
    return _HEAD + textwrap.dedent(body) + "model.add(Dense(10))\n"


def _only_model(source: str):
    result = mine_source(source, "builder.py")
    assert result.status == OK, result.reason
    (model,) = result.models
    return result, model


# --------------------------------------------------------------------------- files that are not source
@posix_only
def test_fifos_and_devices_are_skipped_with_a_reason_and_links_to_files_are_read(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    os.mkfifo(repo / "x.py")
    (repo / "zero.py").symlink_to("/dev/zero")
    shutil.copy(FIXTURES / "sequential_add.py", tmp_path / "model.py")
    (repo / "link.py").symlink_to(tmp_path / "model.py")
    db, meta = tmp_path / "zoo.sqlite", tmp_path / "meta.json"
    # A subprocess with a timeout: a regression that reads the FIFO fails here instead of hanging the suite.
    done = subprocess.run([sys.executable, "-m", "nas.mining.cli", str(repo), "--repo-root", "--db", str(db),
                           "--meta", str(meta)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(meta.read_text())["statuses"] == {NOT_TEXT: 2, OK: 1}
    fifo = mine_file(SourceFile(str(repo / "x.py"), "x.py"))
    zero = mine_file(SourceFile(str(repo / "zero.py"), "zero.py"))
    link = mine_file(SourceFile(str(repo / "link.py"), "link.py"))
    assert (fifo.status, fifo.reason) == (NOT_TEXT, "a FIFO (named pipe), not a regular file; not read")
    assert (zero.status, zero.reason) == (NOT_TEXT, "a character device, not a regular file; not read")
    assert link.status == OK and link.models[0].complete


@posix_only
def test_reading_stops_after_the_limit_whatever_the_size_says(tmp_path):
    os.mkfifo(tmp_path / "pipe.py")
    with pytest.raises(NotRegularFileError, match="FIFO"):
        read_regular_file(str(tmp_path / "pipe.py"), 100)
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * 101)
    with pytest.raises(FileTooLargeError, match="over 100 bytes"):
        read_regular_file(str(big), 100)
    assert read_regular_file(str(big), 101) == b"#" * 101
    # /proc files report size 0 and hold more: only limit + 1 bytes are read, then the file is refused.
    if os.path.exists("/proc/self/status"):
        with pytest.raises(FileTooLargeError):
            read_regular_file("/proc/self/status", 10)
    (tmp_path / "huge.py").write_bytes(b"x = 1\n" * 1_000_000)
    assert mine_file(SourceFile(str(tmp_path / "huge.py"), "huge.py")).status == TOO_LARGE


# --------------------------------------------------------------------------- loops of unknown length
@pytest.mark.parametrize("head, what", [
    ("while True:", "unbounded loop at line 7: while True"),
    ("while 1:", "unbounded loop at line 7: while 1"),
    ("i = 0\nwhile i < 10**9:", f"loop still running after {MAX_UNROLL} iterations at line 8: while i < 10**9"),
])
def test_an_endless_while_loop_never_yields_a_complete_model(head, what):
    result, model = _only_model(_builder(head + "\n    model.add(Dense(4))\n    i = 1\n"))
    # The loop was unrolled MAX_UNROLL times (the 518-node model of the defect) but the model says so.
    assert sum(layer.keras == "Dense" for layer in model.layers) == MAX_UNROLL + 1
    assert not model.complete and model.arch is None
    assert what in model.unresolved
    marked = [layer for layer in model.layers if ("repeat", what) in layer.unresolved]
    add_line = 8 + head.count("\n")
    assert len(marked) == MAX_UNROLL and {(layer.keras, layer.line) for layer in marked} == {("Dense", add_line)}
    assert any(what.split(":")[0] in note for note in result.notes)


def test_a_while_true_loop_that_breaks_is_unrolled_exactly():
    _, model = _only_model(_builder("""\
        n = 0
        while True:
            model.add(Dense(4))
            n += 1
            if n == 3:
                break
        """))
    assert model.complete and [layer.attrs.get("units") for layer in model.layers if layer.keras == "Dense"] == \
        [4, 4, 4, 10]


def test_a_huge_range_loop_is_not_unrolled_and_not_complete():
    start = time.perf_counter()
    _, model = _only_model(_builder("for i in range(10**9):\n    model.add(Dense(4))\n"))
    # Unrolling 10**9 times would take hours; the loop body runs once, marked (measured well under 1 s).
    assert time.perf_counter() - start < 30
    assert not model.complete and "range(10**9)" in model.unresolved


def test_values_a_loop_of_unknown_length_computes_are_unresolved_after_it():
    # 256 iterations of `n += 1` is not n's value after `while n < 1000`, nor 8 after an unknown loop.
    for body in ("n = 0\nwhile n < 1000:\n    n += 1\n", "import sys\nn = 4\nfor a in sys.argv:\n    n *= 2\n"):
        _, model = _only_model(_HEAD + body + "model.add(Dense(n))\n")
        assert not model.complete and "n" in model.unresolved
    # `units` is 64 on the first iteration only: the loop rebinds `first`, which `units` reads.
    _, model = _only_model(_HEAD + "import sys\nfirst = True\nfor a in sys.argv:\n    units = 64 if first else 32\n"
                           "    first = False\nmodel.add(Dense(units))\n")
    assert not model.complete and "units" in model.unresolved
    # A loop that sets a name to the value it already had, or to one value every time, leaves it known.
    _, model = _only_model(_HEAD + "import sys\nn = 4\nfor a in sys.argv:\n    n = 4\n    k = 2\n"
                           "model.add(Dense(n * k))\n")
    assert model.complete and model.layers[-1].attrs["units"] == 8


def test_layers_created_in_a_loop_of_unknown_length_are_marked_where_they_are_used():
    source = _HEAD + "import sys\nlayers = []\nfor a in sys.argv:\n    layers.append(Dense(4))\n" \
        "for layer in layers:\n    model.add(layer)\nmodel.add(Dense(10))\n"
    _, model = _only_model(source)
    assert not model.complete and "sys.argv" in model.unresolved


def test_the_step_budget_marks_a_sequential_model_it_cut_short():
    _, model = _only_model(_builder("""\
        for i in range(250):
            for j in range(250):
                for k in range(250):
                    model.add(Dense(4))
        """))
    assert not model.complete
    assert any("interpretation cut short (step budget" in text for text in model.unresolved)


# --------------------------------------------------------------------------- recursion and nesting
def test_a_recursive_builder_is_cut_off_and_not_complete():
    result, model = _only_model(_builder("""\
        def grow(m, n):
            m.add(Dense(4))
            grow(m, n - 1)
        grow(model, 1000)
        """))
    assert sum(layer.keras == "Dense" for layer in model.layers) == MAX_CALL_DEPTH + 1
    assert not model.complete
    assert any(f"recursion of grow cut off at depth {MAX_CALL_DEPTH}" in text for text in model.unresolved)


def test_a_recursive_builder_whose_layers_come_after_the_cut_is_not_complete():
    _, model = _only_model(_builder("""\
        def grow(m, n):
            if n > 0:
                grow(m, n - 1)
            m.add(Dense(4))
        grow(model, 1000)
        """))
    assert not model.complete


def test_a_recursive_builder_that_ends_in_time_is_complete():
    _, model = _only_model(_builder("""\
        def grow(m, n):
            if n == 0:
                return
            m.add(Dense(4))
            grow(m, n - 1)
        grow(model, 3)
        """))
    assert model.complete and sum(layer.keras == "Dense" for layer in model.layers) == 4


def test_models_nested_in_models_end_at_the_graph_budget():
    # Each level holds the one before twice: 2**40 layers if nothing stopped it.
    source = """\
from keras.models import Sequential
from keras.layers import Dense
m = Sequential()
m.add(Dense(4, input_shape=(8,)))
for i in range(40):
    outer = Sequential()
    outer.add(m)
    outer.add(m)
    m = outer
"""
    start = time.perf_counter()
    result = mine_source(source, "nested.py")
    assert time.perf_counter() - start < 60  # about 2 s on a 2-core machine
    assert any("graph budget" in note for note in result.notes)
    assert not any(model.complete for model in result.models)


def test_values_that_share_sublists_neither_hang_nor_fill_memory():
    # `a = (a, a)` 256 times unfolds to 2**256 nodes: hashing, comparing or converting it never ended.
    source = """\
from keras.models import Sequential
from keras.layers import Dense
a = (1,)
for i in range(256):
    a = (a, a)
s = {a}
d = {a: 1}
same = a == (a, a)
model = Sequential([Dense(4, input_shape=a)])
"""
    code = ("import sys; from nas.mining import mine_source; r = mine_source(sys.stdin.read(), 'dag.py'); "
            "print(r.status, [m.complete for m in r.models])")
    done = subprocess.run([sys.executable, "-c", code], input=source, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "[False]"]


def test_long_lists_are_charged_to_the_step_budget():
    # Each `[0] * 10000` was one step: the loops below held 2 x 9984 of them, 1.6 GB, within the budget.
    source = """\
from keras.models import Sequential
bigs = []
for k in range(2):
    big = []
    bigs.append(big)
    for i in range(256):
        for j in range(39):
            big.append([0] * 10000)
"""
    tracemalloc.start()
    try:
        result = mine_source(source, "bomb.py")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert any("step budget" in note for note in result.notes)
    assert peak < 300 * 2**20  # measured: 48 MB (1.5 GB before the charge)


# --------------------------------------------------------------------------- output paths
def test_an_output_in_a_missing_folder_fails_before_mining(tmp_path, capsys):
    shutil.copytree(FIXTURES, tmp_path / "corpus")
    for option in ("--db", "--jsonl", "--meta"):
        target = tmp_path / "missing" / "out.file"
        argv = [str(tmp_path / "corpus"), "--repo-root", "--db", str(tmp_path / "zoo.sqlite"), option, str(target)]
        assert nas_mine(argv) == 2
        captured = capsys.readouterr()
        assert f"{option} {target}: the folder {target.parent} does not exist" in captured.err
        assert captured.out == "" and not (tmp_path / "zoo.sqlite").exists()
    # The outputs are checked first: a missing corpus directory is not even looked at.
    assert nas_mine([str(tmp_path / "no_corpus"), "--db", str(tmp_path / "missing" / "zoo.sqlite")]) == 2
    assert "--db" in capsys.readouterr().err
    (tmp_path / "a_dir").mkdir()
    assert nas_mine([str(tmp_path / "corpus"), "--db", str(tmp_path / "a_dir")]) == 2
    assert "is not a regular file" in capsys.readouterr().err
