"""Random search and Sobol search on the strategy contract.

Proposal i is a function of (seed, i) only: a uniform point drawn from a
generator seeded by (seed, i), or point i of a scrambled Sobol sequence, so
the same seed proposes the same trials however they are batched or resumed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from nas.search.bo.sobol import sobol_unit
from nas.search.problem import Posed, Problem
from nas.search.space import SearchSpace, from_unit
from nas.search.strategy import Candidate, Strategy, TrialResult, never_done, seed_of


@dataclasses.dataclass(frozen=True)
class PointSearchState:
    """Random or Sobol search: the space, the problem, the seed, what was asked and told.

    Attributes:
      points: ``uniform`` or ``sobol``.
      told: (trial, objective) pairs, lower is better.
    """

    space: SearchSpace
    problem: Problem
    seed: int
    points: str
    num_asked: int = 0
    told: tuple[tuple[int, float], ...] = ()


def _init(points: str):
    def init(posed: Posed[SearchSpace], key) -> PointSearchState:
        space, problem = posed
        return PointSearchState(space, problem, seed_of(key), points)
    return init


def _unit_point(state: PointSearchState, trial: int) -> np.ndarray:
    if state.points == "sobol":
        return sobol_unit(state.space.unit_dim, trial, 1, state.seed)[0]
    return np.random.default_rng([state.seed, trial]).random(state.space.unit_dim)


def ask(state: PointSearchState, n: int) -> tuple[PointSearchState, list[Candidate]]:
    candidates = []
    for trial in range(state.num_asked, state.num_asked + n):
        arch, lr, choices = from_unit(state.space, state.problem, _unit_point(state, trial))
        candidates.append(Candidate(trial, arch, lr, choices))
    return dataclasses.replace(state, num_asked=state.num_asked + n), candidates


def tell(state: PointSearchState, results: Sequence[TrialResult]) -> PointSearchState:
    return dataclasses.replace(state, told=state.told + tuple((r.trial, float(r.objective)) for r in results))


def best(state: PointSearchState) -> tuple[int, float] | None:
    """The (trial, objective) of the lowest finite objective told, or None."""
    finite = [(t, v) for t, v in state.told if math.isfinite(v)]
    return min(finite, key=lambda tv: (tv[1], tv[0])) if finite else None


RANDOM = Strategy("random", _init("uniform"), ask, tell, never_done, space=SearchSpace)
SOBOL = Strategy("sobol", _init("sobol"), ask, tell, never_done, space=SearchSpace)
