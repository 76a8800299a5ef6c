"""NCEvolve (NeuNetS s4.1.1): evolution of identical neuro-cells by function-preserving mutations.

A network is the template of Figure 5: a stem conv, `cells` neuro-cells
separated by 2x max pooling, global average pooling, a hidden Dense layer
and the Dense head. A cell starts as one 3x3 conv + ReLU; every node of cell
i has an id starting with ``c<i>_`` (``c1_conv1``, ``c2_conv1``, ...).

The search starts from `population_size` fresh templates (widths cycling
through `widths`). Then each proposal picks a parent by tournament selection
(a fraction `tournament` of the population, sampled by a generator seeded
by (seed, trial); the lowest objective wins, ties the oldest), applies one
random mutation of `mutations` and trains the child `epochs` epochs from the
morphed weights (``start="inherit"``). Proposals come `children` at a time
(the paper trains two in parallel); each trained child joins the
population. With `max_population` set, the worst member (ties: the oldest)
leaves when the population outgrows it.

"Applied to all cells such that they remain identical": a mutation is
chosen once, with its site as an id *local* to a cell (``conv1``, ``act1``,
``conv1_a``...), and the same `nas.morph` function with the same key runs at
``c<i>_<local>`` in every cell in turn. The morphisms name their new nodes
after the node they touch (`nas.morph.graph.fresh_id`: ``<site>_deep``,
``<site>_a``/``_b``, ``<from>_to_<to>_skip``), so cell i's new nodes carry
its prefix and the same local ids as cell 1's; `cell_structure` checks that
every cell has the same structure afterwards. Mutations outside the cells
(widening the stem conv or the hidden Dense layer) apply once.

The mutation set (NeuNetS s4.1.1, "Mutations"):

- ``insert_conv``: an identity 3x3 conv (or separable conv) + ReLU after a
  ReLU tensor of the cell.
- ``branch_insert``: a cell conv split in two (`nas.morph.branch`), a linear
  identity 3x3 conv inserted on one branch (Figure 4).
- ``insert_skip``: an identity conv + ReLU after a ReLU tensor of the cell,
  with the tensor summed into its output through a zero-initialised 1x1
  conv (`nas.morph.add_skip`), the paper's eq. 8 with a learned projection.
- ``widen_filters``: a cell conv (or the stem) widened by a factor in
  [1.2, 2] (Net2WiderNet).
- ``widen_dense``: the hidden Dense layer widened by a factor in [1.2, 2].
- ``grow_kernel``: a cell conv's kernel grown by 2 (zero padding), up to
  `max_kernel_size`.

The state keeps every population member's trained weights (host arrays),
told by the engine (`Strategy.needs_weights`); every proposal is a function
of (seed, asks, tells), so a killed run resumes by replay.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import numpy as np

from nas.ir import Arch, Attrs, Node
from nas.morph import MorphError, add_skip, branch, deepen, tensor_activation, widen, widen_kernel
from nas.search.problem import Posed, Problem
from nas.search.strategy import FRESH, INHERIT, Candidate, Strategy, TrialResult, seed_of
from nas.search.trained import Trained

MUTATIONS = ("insert_conv", "branch_insert", "insert_skip", "widen_filters", "widen_dense", "grow_kernel")
_MAX_SITES = 8  # sites tried per mutation before the next mutation


@dataclasses.dataclass(frozen=True)
class NcEvolveSpace:
    """The template and the evolution's settings (for (h, w, c) image data only).

    Attributes:
      cells: neuro-cells in the template (a 2x max pooling between two cells).
      widths: filters of the stem and of the cells' first conv, one per
        initial individual, cycled.
      growth: cell i's conv has round(width * growth ** (i - 1)) filters
        (1: identical widths too).
      dense_units: the hidden Dense layer before the head (0: none, and no
        ``widen_dense``).
      population_size: fresh templates that start the search.
      tournament: the fraction k of the population a tournament samples.
      children: proposals per generation (NeuNetS trains two in parallel).
      max_population: the population's cap (None: every trained individual
        stays, as in the paper); beyond it the worst leaves.
      mutations: the mutations drawn from (a subset of `MUTATIONS`).
      max_kernel_size: ``grow_kernel`` stops at this kernel size.
      initial_epochs, epochs: training epochs of a fresh template and of a
        child (from its inherited weights).
      learning_rate, batch_size: None takes the run's base settings.
    """

    cells: int = 2
    widths: tuple[int, ...] = (8, 16)
    growth: float = 1.0
    dense_units: int = 32
    population_size: int = 4
    tournament: float = 0.5
    children: int = 2
    max_population: int | None = None
    mutations: tuple[str, ...] = MUTATIONS
    max_kernel_size: int = 7
    initial_epochs: int = 3
    epochs: int = 2
    learning_rate: float | None = None
    batch_size: int | None = None

    def __post_init__(self):
        unknown = set(self.mutations) - set(MUTATIONS)
        if unknown or not self.mutations:
            raise ValueError(f"mutations must be a non-empty subset of {MUTATIONS}, got {self.mutations}")
        if self.cells < 1 or self.population_size < 1 or self.children < 1 or not self.widths:
            raise ValueError("need cells, population_size, children >= 1 and at least one width")
        if not 0.0 < self.tournament <= 1.0:
            raise ValueError(f"tournament is a fraction of the population in (0, 1], got {self.tournament}")
        if self.max_population is not None and self.max_population < 1:
            raise ValueError(f"max_population must be >= 1 or None, got {self.max_population}")

    def check(self, problem: Problem) -> None:
        if not problem.image:
            raise ValueError(f"NCEvolve's template needs (h, w, c) images; the data has shape {problem.input_shape}")

    def most_complex(self, problem: Problem) -> Arch:
        """The widest initial template (the search only grows it: give c_0 when w_c > 0)."""
        return template(self, problem, max(self.widths))


def cell_prefix(i: int) -> str:
    return f"c{i}_"


def template(space: NcEvolveSpace, problem: Problem, width: int) -> Arch:
    """Figure 5's template: stem conv, cells of one 3x3 conv + ReLU with max pooling between, GAP, Dense."""
    nodes = [Node("input", "Input", (), Attrs(shape=problem.input_shape))]

    def add(node_id: str, op: str, **attrs) -> None:
        nodes.append(Node(node_id, op, (nodes[-1].id,), Attrs(attrs)))

    conv = dict(kernel_size=3, padding="same", kernel_init="he_normal")
    add("stem", "Conv2D", filters=int(width), **conv)
    add("stem_act", "Activation", fn="relu")
    for i in range(1, space.cells + 1):
        if i > 1:
            add(f"pool{i - 1}", "MaxPool2D", pool_size=2, padding="same")
        add(f"{cell_prefix(i)}conv1", "Conv2D", filters=max(1, round(width * space.growth ** (i - 1))), **conv)
        add(f"{cell_prefix(i)}act1", "Activation", fn="relu")
    add("gap", "GlobalAvgPool")
    if space.dense_units:
        add("dense", "Dense", units=int(space.dense_units), kernel_init="he_normal")
        add("dense_act", "Activation", fn="relu")
    add("head", "Dense", units=int(problem.num_outputs))
    return Arch(tuple(nodes), ("input",), ("head",), f"ncevolve-w{width}")


def local_id(node_id: str, i: int) -> str:
    """`node_id` of cell i without its cell: ``c2_act1_to_c2_act1_deep_act_skip`` -> ``act1_to_@act1_deep_act_skip``.

    Morphisms name new nodes after the nodes they join (a skip names both
    ends), so a cell's prefix can recur inside an id; ``@`` stands for it.
    """
    prefix = cell_prefix(i)
    return node_id[len(prefix):].replace("_" + prefix, "_@") if node_id.startswith(prefix) else "<in>"


def global_id(local: str, i: int) -> str:
    """The inverse of `local_id`."""
    return cell_prefix(i) + local.replace("_@", "_" + cell_prefix(i))


def cell_structure(arch: Arch, i: int) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Cell i as (local id, op, local inputs) in topological order; inputs from outside read ``<in>``."""
    return tuple((local_id(n.id, i), n.op, tuple(local_id(x, i) for x in n.inputs))
                 for n in arch.topological_order() if n.id.startswith(cell_prefix(i)))


def _cells(arch: Arch) -> list[int]:
    i = 1
    while any(n.id.startswith(cell_prefix(i)) for n in arch.nodes):
        i += 1
    return list(range(1, i))


# ------------------------------------------------------------------ mutations
# A site is (local id, in_cells): in_cells applies the morph at c<i>_<local> in
# every cell with the same key; otherwise `local` is a node id outside the cells.
Apply = Callable[[Arch, Any, str, jax.Array], tuple[Arch, Any]]


def _relu_sites(arch: Arch) -> list[str]:
    sites = []
    for local, _, _ in cell_structure(arch, 1):
        try:
            if tensor_activation(arch, global_id(local, 1)) == "relu":
                sites.append(local)
        except MorphError:
            pass
    return sites


def _cell_convs(arch: Arch, ops=("Conv2D", "SeparableConv2D")) -> list[str]:
    return [local for local, op, _ in cell_structure(arch, 1) if op in ops and not local.endswith("_skip")]


def _plans(name: str, arch: Arch, space: NcEvolveSpace, rng: np.random.Generator
           ) -> list[tuple[Apply, str, bool, dict]]:
    """(apply, site, in_cells, record) for every site where mutation `name` could apply."""
    if name == "insert_conv":
        out = []
        for s in _relu_sites(arch):
            kind = str(rng.choice(["conv", "separable"]))
            out.append((lambda a, v, n, k, kind=kind: deepen(a, v, n, k, kind=kind), s, True, {"kind": kind}))
        return out
    if name == "branch_insert":
        out = []
        for s in _cell_convs(arch, ("Conv2D",)):
            if arch.node(global_id(s, 1)).normalized_attrs()["filters"] < 2:
                continue
            side = int(rng.integers(2))

            def apply(a, v, n, k, side=side):
                k1, k2 = jax.random.split(k)
                child, cv = branch(a, v, n, k1)
                return deepen(child, cv, child.node(n).inputs[side], k2, kind="conv")
            out.append((apply, s, True, {"side": side}))
        return out
    if name == "insert_skip":
        def apply(a, v, n, k):
            k1, k2 = jax.random.split(k)
            child, cv = deepen(a, v, n, k1, kind="conv")
            inserted = next(c for c in child.nodes if c.id not in a and c.op == "Activation")
            return add_skip(child, cv, n, inserted.id, k2)
        return [(apply, s, True, {}) for s in _relu_sites(arch)]
    if name == "widen_filters":
        sites = [(s, True) for s in _cell_convs(arch)] + [("stem", False)]
        return [(_widen(arch, space, s, cells, rng)) for s, cells in sites]
    if name == "widen_dense":
        dense = [n.id for n in arch.nodes if n.op == "Dense" and n.id not in arch.outputs]
        return [_widen(arch, space, s, False, rng) for s in dense]
    if name == "grow_kernel":
        out = []
        for s in _cell_convs(arch):
            new = max(arch.node(global_id(s, 1)).normalized_attrs()["kernel_size"]) + 2
            if new <= space.max_kernel_size:
                out.append((lambda a, v, n, k, new=new: widen_kernel(a, v, n, new), s, True, {"kernel_size": new}))
        return out
    raise ValueError(f"unknown mutation {name!r}; choose from {MUTATIONS}")


def _widen(arch: Arch, space: NcEvolveSpace, site: str, in_cells: bool, rng: np.random.Generator):
    factor = float(rng.uniform(1.2, 2.0))

    def apply(a, v, n, k):
        node = a.node(n)
        old = node.attrs["units"] if node.op == "Dense" else node.attrs["filters"]
        return widen(a, v, n, max(old + 1, int(round(old * factor))), k)
    return apply, site, in_cells, {"factor": factor}


def _apply(arch: Arch, variables: Any, apply: Apply, site: str, in_cells: bool, key: jax.Array):
    if not in_cells:
        return apply(arch, variables, site, key)
    cells = _cells(arch)
    for i in cells:
        arch, variables = apply(arch, variables, global_id(site, i), key)
    reference = cell_structure(arch, cells[0])
    for i in cells[1:]:
        if cell_structure(arch, i) != reference:
            raise MorphError(f"the mutation at {site!r} left cell {i} different from cell {cells[0]}")
    return arch, variables


def mutate(arch: Arch, variables: Any, space: NcEvolveSpace, rng: np.random.Generator
           ) -> tuple[Arch, Any, dict]:
    """One random NCEvolve mutation, applied identically to every cell.

    Mutations are tried in a random order, sites within one too, until one
    applies everywhere it must.

    Returns:
      (child, child variables, record); record is ``{"op", "site", "cells", ...}``.
    Raises:
      MorphError: no mutation of `space.mutations` applies.
    """
    key = jax.random.key(int(rng.integers(2**31 - 1)))
    refusals = []
    for name in rng.permutation(list(space.mutations)):
        plans = _plans(str(name), arch, space, rng)
        for index in rng.permutation(len(plans))[:_MAX_SITES]:
            apply, site, in_cells, record = plans[index]
            try:
                child, child_vars = _apply(arch, variables, apply, site, in_cells, key)
            except MorphError as exc:
                refusals.append(f"{name} at {site!r}: {exc}")
                continue
            return child, child_vars, {"op": str(name), "site": site, "cells": in_cells, **record}
    raise MorphError(f"no mutation of {list(space.mutations)} applies to {arch.name or 'the network'} "
                     f"({'; '.join(refusals[-3:]) or 'no site qualifies'})")


# ------------------------------------------------------------------ the strategy
@dataclasses.dataclass(frozen=True)
class NcEvolveState:
    """Where the evolution is.

    Attributes:
      space, problem, seed: as given to `init`.
      pending: (trial, arch, parent) of proposals not told yet.
      population: the trained individuals tournaments draw from.
      history: (trial, parent, objective) of every told trial.
    """

    space: NcEvolveSpace
    problem: Problem
    seed: int
    next_trial: int = 0
    pending: tuple[tuple[int, Arch, int | None], ...] = ()
    population: tuple[Trained, ...] = ()
    history: tuple[tuple[int, int | None, float], ...] = ()


def init(posed: Posed[NcEvolveSpace], key) -> NcEvolveState:
    space, problem = posed
    return NcEvolveState(space, problem, seed_of(key))


def _fitness_order(ind: Trained) -> tuple[float, int]:
    return (ind.objective, ind.trial)


def tournament(population: Sequence[Trained], fraction: float, rng: np.random.Generator) -> Trained:
    """The fittest (lowest objective, ties the oldest) of ceil(fraction * size) members sampled without replacement."""
    size = min(len(population), max(1, math.ceil(fraction * len(population))))
    sample = rng.choice(len(population), size=size, replace=False)
    return min((population[i] for i in sample), key=_fitness_order)


def ask(state: NcEvolveState, n: int) -> tuple[NcEvolveState, list[Candidate]]:
    """Fresh templates first; then up to `children` mutated children once every proposal is told."""
    space, out = state.space, []
    if state.next_trial < space.population_size:
        for trial in range(state.next_trial, min(state.next_trial + n, space.population_size)):
            width = int(space.widths[trial % len(space.widths)])
            out.append(Candidate(trial, template(space, state.problem, width), space.learning_rate, {"width": width},
                                 batch_size=space.batch_size, epochs=space.initial_epochs, start=FRESH))
    elif not state.pending and state.population:
        trial = state.next_trial
        while len(out) < min(n, space.children):
            rng = np.random.default_rng([state.seed, trial])
            parent = tournament(state.population, space.tournament, rng)
            try:
                arch, variables, record = mutate(parent.arch, parent.variables, space, rng)
            except MorphError:
                break  # the fittest cannot grow: propose fewer (none ends the search)
            out.append(Candidate(trial, arch.replace_nodes(arch.nodes, name=f"ncevolve-t{trial}"),
                                 space.learning_rate, {"mutation": record["op"], **record},
                                 batch_size=space.batch_size, epochs=space.epochs, parent=parent.trial,
                                 start=INHERIT, variables=variables))
            trial += 1
    pending = state.pending + tuple((c.trial, c.arch, c.parent) for c in out)
    return dataclasses.replace(state, next_trial=state.next_trial + len(out), pending=pending), out


def tell(state: NcEvolveState, results: Sequence[TrialResult]) -> NcEvolveState:
    """Trained proposals join the population (failed ones only the history)."""
    archs = {trial: arch for trial, arch, _ in state.pending}
    parents = {trial: parent for trial, _, parent in state.pending}
    population, history = list(state.population), list(state.history)
    for r in results:
        if r.trial not in archs:
            raise ValueError(f"trial {r.trial} was not proposed by this NCEvolve state (or was told already)")
        if r.ok:
            population.append(Trained.of(r, archs[r.trial], "NCEvolve"))
        history.append((r.trial, parents.get(r.trial), float(r.objective)))
    cap = state.space.max_population
    while cap is not None and len(population) > cap:
        population.remove(max(population, key=lambda ind: (ind.objective, -ind.trial)))
    told = {r.trial for r in results}
    return dataclasses.replace(state, pending=tuple(p for p in state.pending if p[0] not in told),
                               population=tuple(population), history=tuple(history))


def done(state: NcEvolveState) -> bool:
    """Only when every template failed: budgets end the evolution otherwise."""
    return state.next_trial >= state.space.population_size and not state.pending and not state.population


def best(state: NcEvolveState) -> Trained | None:
    """The fittest individual of the population."""
    return min(state.population, key=_fitness_order) if state.population else None


NCEVOLVE = Strategy("ncevolve", init, ask, tell, done, needs_weights=True, space=NcEvolveSpace)


def __getattr__(name: str):
    if name == "Individual":  # one record for what every strategy keeps of a trained model
        raise ImportError("nas.search.ncevolve.Individual moved to nas.search.trained.Trained")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
