"""Random search as an init/ask/tell strategy over explicit state.

Proposal i is drawn from its own generator seeded by (seed, i), so the same
seed proposes the same trials however they are batched or resumed.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nas.search.space import Candidate, SearchSpace, sample


@dataclasses.dataclass(frozen=True)
class RandomSearchState:
    space: SearchSpace
    seed: int
    num_outputs: int
    input_shape: tuple[int, ...]
    num_asked: int = 0
    scores: tuple[tuple[int, float], ...] = ()  # (trial, score), higher is better


def init(space: SearchSpace, seed: int, num_outputs: int, input_shape: Sequence[int]) -> RandomSearchState:
    return RandomSearchState(space, seed, num_outputs, tuple(input_shape))


def ask(state: RandomSearchState, n: int) -> tuple[RandomSearchState, list[Candidate]]:
    candidates = []
    for trial in range(state.num_asked, state.num_asked + n):
        rng = np.random.default_rng([state.seed, trial])
        arch, lr, choices = sample(state.space, rng, state.num_outputs, state.input_shape)
        candidates.append(Candidate(trial, arch, lr, choices))
    return dataclasses.replace(state, num_asked=state.num_asked + n), candidates


def tell(state: RandomSearchState, results: Sequence[tuple[int, float]]) -> RandomSearchState:
    return dataclasses.replace(state, scores=state.scores + tuple((int(t), float(s)) for t, s in results))


def best(state: RandomSearchState) -> tuple[int, float] | None:
    finite = [(t, s) for t, s in state.scores if np.isfinite(s)]
    return max(finite, key=lambda ts: ts[1]) if finite else None
