"""The AutoKeras-style baseline: greedy network morphism of the best model so far.

What users of AutoKeras run today, reduced to its core loop: train a default
model (a small CNN for images, an MLP for flat data), then repeatedly morph
the best model found so far with a random function-preserving network
morphism (widen, deepen, add a skip) and train the child from the morphed
weights (``start="inherit"``); a child that beats the best becomes the next
parent. AutoKeras chooses among morphs with Bayesian optimisation over an
edit-distance kernel; this baseline draws them at random (`nas.morph.random_morph`).

CNNs draw from ``widen_filters``, ``widen_dense``, ``insert_conv`` and
``insert_skip``. `random_morph` deepens and skips spatial tensors only, so
MLPs draw from ``widen_dense`` and ``insert_dense`` (an identity Dense + ReLU
after a hidden ReLU, `nas.morph.deepen` with ``kind="dense"``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np

from nas.ir import Arch, cnn, mlp
from nas.morph import MorphError, deepen, random_morph, tensor_activation
from nas.search.problem import Posed, Problem
from nas.search.strategy import FRESH, INHERIT, Candidate, Strategy, TrialResult, seed_of
from nas.search.trained import Trained

CNN_MORPHS = ("widen_filters", "widen_dense", "insert_conv", "insert_skip")
MLP_MORPHS = ("widen_dense", "insert_dense")
FAMILIES = ("auto", "cnn", "mlp")


@dataclasses.dataclass(frozen=True)
class GreedySpace:
    """The default model and the greedy loop's settings.

    Attributes:
      family: ``cnn`` (image data only), ``mlp`` or ``auto`` (a CNN for
        (h, w, c) images, else an MLP; `family_of`).
      channels, dense: the default CNN's conv channels (2x max pooling after
        every conv but the last, then global average pooling) and hidden
        Dense widths.
      hidden: the default MLP's hidden widths.
      children: children of the best model proposed at once.
      initial_epochs, epochs: training epochs of the default model and of a
        child (from its inherited weights).
      learning_rate, batch_size: None takes the run's base settings.
    """

    family: str = "auto"
    channels: tuple[int, ...] = (16, 32)
    dense: tuple[int, ...] = (32,)
    hidden: tuple[int, ...] = (64,)
    children: int = 1
    initial_epochs: int = 3
    epochs: int = 2
    learning_rate: float | None = None
    batch_size: int | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.children < 1:
            raise ValueError(f"children must be >= 1, got {self.children}")

    def check(self, problem: Problem) -> None:
        """The CNN default model needs image data."""
        if self.family == "cnn" and not problem.image:
            raise ValueError(f"the CNN default model needs (h, w, c) images; the data has shape {problem.input_shape}")

    def most_complex(self, problem: Problem) -> Arch:
        """The default model (the search only grows it: give c_0 when w_c > 0)."""
        return default_model(self, problem)


def family_of(space: GreedySpace, problem: Problem) -> str:
    """``cnn`` or ``mlp``: the space's family, ``auto`` resolved by the data (images get the CNN)."""
    if space.family == "auto":
        return "cnn" if problem.image else "mlp"
    return space.family


def default_model(space: GreedySpace, problem: Problem) -> Arch:
    if family_of(space, problem) == "mlp":
        return mlp(space.hidden, problem.num_outputs, input_shape=problem.input_shape, name="autokeras-mlp")
    return cnn(space.channels, problem.num_outputs, input_shape=problem.input_shape,
               downsample_after=range(len(space.channels) - 1), dense=space.dense, name="autokeras-cnn")


def _insert_dense(arch: Arch, variables: Any, rng: np.random.Generator, key: jax.Array) -> tuple[Arch, Any, dict]:
    sites = []
    for node in arch.topological_order():
        if node.id in arch.outputs or node.op != "Activation":
            continue
        try:
            if tensor_activation(arch, node.id) == "relu" and len(arch.shapes()[node.id]) == 1:
                sites.append(node.id)
        except MorphError:
            pass
    if not sites:
        raise MorphError(f"insert_dense: {arch.name or 'the network'} has no hidden ReLU layer")
    site = sites[int(rng.integers(len(sites)))]
    child, child_vars = deepen(arch, variables, site, key, kind="dense")
    return child, child_vars, {"op": "insert_dense", "node": site}


def morph(arch: Arch, variables: Any, family: str, key: jax.Array) -> tuple[Arch, Any, dict]:
    """One random function-preserving morph of the family's set (``cnn`` or ``mlp``): (child, variables, record)."""
    if family == "cnn":
        return random_morph(arch, variables, key, allowed=CNN_MORPHS)
    choose_key, morph_key = jax.random.split(key)
    rng = np.random.default_rng(np.asarray(jax.random.randint(choose_key, (2,), 0, 2**31 - 1)).tolist())
    for name in rng.permutation(list(MLP_MORPHS)):
        try:
            if name == "insert_dense":
                return _insert_dense(arch, variables, rng, morph_key)
            return random_morph(arch, variables, morph_key, allowed=("widen_dense",))
        except MorphError:
            continue
    raise MorphError(f"no morph of {list(MLP_MORPHS)} applies to {arch.name or 'the network'}")


@dataclasses.dataclass(frozen=True)
class GreedyState:
    """Where the greedy search is.

    Attributes:
      space, problem, seed: as given to `init`.
      pending: (trial, arch) of proposals not told yet.
      best: the incumbent the next children morph.
      history: (trial, parent, objective) of every told trial.
    """

    space: GreedySpace
    problem: Problem
    seed: int
    next_trial: int = 0
    pending: tuple[tuple[int, Arch, int | None], ...] = ()
    best: Trained | None = None
    history: tuple[tuple[int, int | None, float], ...] = ()


def init(posed: Posed[GreedySpace], key) -> GreedyState:
    space, problem = posed
    return GreedyState(space, problem, seed_of(key))


def ask(state: GreedyState, n: int) -> tuple[GreedyState, list[Candidate]]:
    """The default model first; then up to `children` morphs of the best once every proposal is told."""
    space, out = state.space, []
    if state.next_trial == 0 and n > 0:
        out.append(Candidate(0, default_model(space, state.problem), space.learning_rate, {"model": "default"},
                             batch_size=space.batch_size, epochs=space.initial_epochs, start=FRESH))
    elif not state.pending and state.best is not None:
        best = state.best
        for trial in range(state.next_trial, state.next_trial + min(n, space.children)):
            key = jax.random.fold_in(jax.random.key(state.seed), trial)
            try:
                arch, variables, record = morph(best.arch, best.variables, family_of(space, state.problem), key)
            except MorphError:
                break  # the best cannot grow: propose fewer (none ends the search)
            out.append(Candidate(trial, arch.replace_nodes(arch.nodes, name=f"autokeras-t{trial}"),
                                 space.learning_rate, {"morph": record["op"], **record},
                                 batch_size=space.batch_size, epochs=space.epochs, parent=best.trial,
                                 start=INHERIT, variables=variables))
    pending = state.pending + tuple((c.trial, c.arch, c.parent) for c in out)
    return dataclasses.replace(state, next_trial=state.next_trial + len(out), pending=pending), out


def tell(state: GreedyState, results: Sequence[TrialResult]) -> GreedyState:
    """A trained proposal of lower objective than the best (strictly) becomes the best."""
    archs = {trial: arch for trial, arch, _ in state.pending}
    parents = {trial: parent for trial, _, parent in state.pending}
    best, history = state.best, list(state.history)
    for r in sorted(results, key=lambda r: r.trial):
        if r.trial not in archs:
            raise ValueError(f"trial {r.trial} was not proposed by this search state (or was told already)")
        if r.ok and (best is None or r.objective < best.objective):
            best = Trained.of(r, archs[r.trial], "the greedy search")
        history.append((r.trial, parents[r.trial], float(r.objective)))
    told = {r.trial for r in results}
    return dataclasses.replace(state, pending=tuple(p for p in state.pending if p[0] not in told),
                               best=best, history=tuple(history))


def done(state: GreedyState) -> bool:
    """Only when the default model failed: budgets end the search otherwise."""
    return state.next_trial > 0 and not state.pending and state.best is None


AUTOKERAS_GREEDY = Strategy("autokeras_greedy", init, ask, tell, done, needs_weights=True, space=GreedySpace)


def __getattr__(name: str):
    if name == "Incumbent":  # one record for what every strategy keeps of a trained model
        raise ImportError("nas.search.autokeras_greedy.Incumbent moved to nas.search.trained.Trained")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
