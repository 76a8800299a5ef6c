"""The layering of `nas`, pinned: no import against the flow, no import cycle between packages.

Data flows data -> ir -> compile -> train -> search -> store (mining -> ir).
As imports that reads: each stage uses the stages before it, except the
store, which the search writes into: it is the search's service, so it sits
below the search and knows nothing of it. The layers below are that flow as
imports, bottom first, with the top-level modules and `nas.morph` placed:

0. `nas` (the version), `atomic_io`, `config_dir` (where conf/ is), `status` (a trial's status vocabulary),
   `tracking` and `store` (the trial
   store: a leaf service the search writes into, so readers and exporters
   start without JAX): standard library only, usable anywhere.
1. `ir` and `data`: the two inputs, independent of each other.
2. `compile` (ir -> Flax), `mining` (source text -> ir, and nothing else) and
   `lde` (the lifelong database of experiments: IR, dataset fingerprints, numbers).
3. `train`, `checkpoint` (a trained model on disk) and `morph` (weight
   transforms on ir, keyed as `compile` lays the weights out): what a trial
   needs to train, save and change a model.
4. `search`: strategies, evaluator and engine (and `trial_records`, the
   conversion between its records and the store's), and `tapas` (the DCN
   probe and the train-less accuracy predictor, which the search's prefilter
   uses and which never imports the search).
5. `api`: the Python API (`nas.search(x, y)`, `nas.load`, `Model`): every
   package's work as one call.
6. `cli` and the `hydra_plugins` sweeper: entry points, thin over `api`.

The package's front door, ``nas/__init__.py``, offers the API
(``nas.search(...)``, ``nas.load``) lazily: its imports of `nas.api` sit
inside functions, so importing `nas` (and the store, which reads its
version) loads nothing else; `FRONT_DOOR_IMPORTS` allows exactly those, and
a test checks that they stay lazy.

A module may import its own layer or a lower one, never a higher one, and
the graph between packages (every directory with an ``__init__.py``, and the
top-level modules) has no cycle. Imports are read with `ast`, never run:
those inside functions count (a lazy import is still a dependency), and so do
those under ``if TYPE_CHECKING:``. The latter create no runtime cycle, but a
type named in a signature is design coupling all the same: a store whose
types come from the search cannot be read, tested or reused without it.

``pytest tests/test_layering.py -s`` prints the graph between packages.
"""

from __future__ import annotations

import ast
import collections
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAS = ROOT / "nas"
PLUGINS = ROOT / "hydra_plugins"

LAYERS: tuple[frozenset[str], ...] = (
    # The store is a leaf service: the search writes into it (nas.search.trial_records converts), and
    # it imports nothing of nas but the version, so readers and exporters start without JAX.
    frozenset({"nas", "atomic_io", "config_dir", "status", "tracking", "store"}),
    frozenset({"ir", "data"}),
    frozenset({"compile", "mining", "lde"}),
    frozenset({"train", "checkpoint", "morph"}),
    frozenset({"search", "tapas"}),
    frozenset({"api"}),
    frozenset({"cli", "hydra_plugins"}),
)
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}

# Imports against the flow that are known and scheduled to go: (importer, imported) top-level packages.
# Delete an entry once its import is gone (test_every_known_exception_is_still_needed says when).
KNOWN_UPWARD_IMPORTS: frozenset[tuple[str, str]] = frozenset()

# The front door's lazy offers of the Python API (see the module docstring): not a dependency of the version.
FRONT_DOOR_IMPORTS: frozenset[tuple[str, str]] = frozenset({("nas", "api")})

# What the miner may import besides itself and the standard library: it produces IR and nothing else.
MINING_MAY_IMPORT = frozenset({"nas.ir", "numpy"})


# ---------------------------------------------------------------------------- reading imports
def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """Whether a dotted name under the repository is a module or package (not a name inside one)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: pathlib.Path, module: str | None = None) -> set[str]:
    """Every module a file imports, anywhere in it (functions and TYPE_CHECKING blocks too).

    ``from package import name`` counts as importing ``package.name`` where
    that is a module, else as importing ``package``; relative imports are
    resolved against the file's package (`module`: the file's dotted name,
    by default read off its path).
    """
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if alias.name != "*" and _is_module(candidate) else base)
    return found


def _files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def top_level(name: str) -> str | None:
    """The layering unit of a module: ``nas.search.manas.strategy`` -> ``search``; None outside nas."""
    parts = name.split(".")
    if parts[0] == "hydra_plugins":
        return "hydra_plugins"
    if parts[0] != "nas":
        return None
    return parts[1] if len(parts) > 1 else "nas"


def package_of(module: str) -> str:
    """The package a module belongs to (a top-level module of nas is its own unit)."""
    if _is_module(module) and (ROOT.joinpath(*module.split(".")) / "__init__.py").is_file():
        return module
    parent = module.rpartition(".")[0]
    return module if parent == "nas" else parent


def module_imports() -> dict[str, set[str]]:
    """Every module of nas and hydra_plugins -> the nas modules it imports."""
    graph = {}
    for path in _files(NAS) + _files(PLUGINS):
        graph[_module_name(path)] = {m for m in imports_of(path) if top_level(m) is not None}
    return graph


def package_graph(unit=top_level) -> dict[str, set[str]]:
    """Importer -> imported, between units (`top_level` or `package_of`), self-imports left out."""
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for module, imported in module_imports().items():
        source = unit(module)
        graph[source]  # every unit appears, importing something or not
        for target in imported:
            if unit(target) != source:
                graph[source].add(unit(target))
    return dict(graph)


def import_table() -> str:
    """The import graph between nas's top-level packages, one row per package, bottom layer first."""
    graph = package_graph()
    rows = [("layer", "package", "imports (* = known exception against the flow)")]
    for name in sorted(graph, key=lambda n: (LAYER_OF.get(n, len(LAYERS)), n)):
        targets = sorted(graph[name], key=lambda t: (LAYER_OF.get(t, len(LAYERS)), t))
        marked = [t + ("*" if (name, t) in KNOWN_UPWARD_IMPORTS else "") for t in targets]
        rows.append((str(LAYER_OF.get(name, "?")), name, ", ".join(marked) or "-"))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}" for r in rows)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _without_known_exceptions(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def top(unit: str) -> str | None:  # a unit of either graph -> its top-level package
        return unit if unit in LAYER_OF else top_level(unit)

    allowed = KNOWN_UPWARD_IMPORTS | FRONT_DOOR_IMPORTS
    return {a: {b for b in targets if (top(a), top(b)) not in allowed} for a, targets in graph.items()}


# ---------------------------------------------------------------------------- the tests
def test_the_import_graph_between_packages():
    table = import_table()
    print("\n" + table)  # shown with -s
    assert {row.split()[1] for row in table.splitlines()[1:]} == set(package_graph())


def test_every_package_has_a_layer():
    units = set(package_graph())
    unplaced = sorted(units - set(LAYER_OF))
    assert not unplaced, f"place {unplaced} in LAYERS (tests/test_layering.py) where the flow puts them"


def test_no_import_runs_against_the_flow():
    against = []
    for module, imported in sorted(module_imports().items()):
        source = top_level(module)
        for target in sorted(imported):
            to = top_level(target)
            if to is None or to == source or (source, to) in KNOWN_UPWARD_IMPORTS | FRONT_DOOR_IMPORTS:
                continue
            if LAYER_OF[to] > LAYER_OF[source]:
                against.append(f"{module} imports {target} ({source}, layer {LAYER_OF[source]} -> {to}, "
                               f"layer {LAYER_OF[to]})")
    assert not against, "imports against the flow:\n  " + "\n  ".join(against)


def test_nothing_imports_the_hydra_plugins_and_they_import_only_downward():
    plugin_imports = {m: t for m, t in module_imports().items() if m.startswith("hydra_plugins")}
    assert plugin_imports, "no hydra_plugins modules found"
    reaching_up = [f"{m} imports {t}" for m, targets in module_imports().items() if not m.startswith("hydra_plugins")
                   for t in targets if t.startswith("hydra_plugins")]
    assert not reaching_up
    nas_targets = {top_level(t) for targets in plugin_imports.values() for t in targets} - {"hydra_plugins"}
    assert nas_targets and all(LAYER_OF[t] < LAYER_OF["hydra_plugins"] for t in nas_targets), nas_targets


@pytest.mark.parametrize("unit", [top_level, package_of], ids=["top-level", "subpackages"])
def test_no_import_cycle_between_packages(unit):
    cycles = _cycles(_without_known_exceptions(package_graph(unit)))
    assert not cycles, f"import cycles between packages: {cycles}"


def test_the_miner_imports_only_the_ir_and_the_standard_library():
    outside = []
    for path in _files(NAS / "mining"):
        for target in sorted(imports_of(path)):
            root = target.split(".")[0]
            if target.startswith("nas.mining") or root in sys.stdlib_module_names or root == "__future__":
                continue
            if not any(target == ok or target.startswith(ok + ".") for ok in MINING_MAY_IMPORT):
                outside.append(f"{_module_name(path)} imports {target}")
    assert not outside, "nas.mining may import only " + ", ".join(sorted(MINING_MAY_IMPORT)) + ":\n  " + \
        "\n  ".join(outside)


def test_the_front_door_imports_the_api_only_lazily():
    tree = ast.parse((NAS / "__init__.py").read_text(encoding="utf-8"))
    at_module_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    named = {alias.name for node in at_module_level for alias in node.names} | {
        node.module for node in at_module_level if isinstance(node, ast.ImportFrom) and node.module}
    assert all(name.split(".")[0] in sys.stdlib_module_names | {"__future__"} for name in named), named
    lazy = {top_level(m) for m in imports_of(NAS / "__init__.py")} - {None, "nas"}
    assert lazy <= {b for _, b in FRONT_DOOR_IMPORTS}, lazy


def test_every_known_exception_is_still_needed():
    graph = package_graph()
    stale = sorted(pair for pair in KNOWN_UPWARD_IMPORTS if pair[1] not in graph.get(pair[0], set()))
    assert not stale, f"{stale} no longer import(s) against the flow: delete from KNOWN_UPWARD_IMPORTS"


def test_the_reader_sees_every_kind_of_import(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from nas import atomic_io\n"
        "from . import records\n"
        "from .records import Trial\n"
        "from .. import ir\n"
        "if TYPE_CHECKING:\n"
        "    from nas.search.strategy import Candidate\n"
        "def lazy():\n"
        "    import nas.train.loop\n")
    assert imports_of(source, "nas.store.example") == {
        "typing", "nas.atomic_io", "nas.store.records", "nas.ir", "nas.search.strategy", "nas.train.loop"}
