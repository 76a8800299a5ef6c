"""TAPAS's search (NeuNetS s4.1.2): sample thousands of networks, rank them by TAP without training, train the top.

``search=tapas`` samples ``space.samples`` networks from the MetaQNN-like
space (`nas.tapas.metaqnn`), drops repeated architectures, scores every one
with the train-less accuracy predictor the run froze in its directory
(``space.predictor``, set by nas-search; see `nas.tapas.service`) and
proposes them best-first, each trained fresh with the run's settings. On a
2-core CPU ranking 2,000 networks takes seconds; training is the cost, so
``max_trials`` is the number of top networks trained.

Resuming replays: the sample is a function of the seed, and the predictor is
the one frozen in the run directory.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from nas.ir import Arch
from nas.search.problem import Posed, Problem
from nas.search.strategy import Candidate, Strategy, TrialResult, seed_of


@dataclasses.dataclass(frozen=True)
class TapasSpace:
    """What ``search=tapas`` samples and ranks.

    Attributes:
      samples: networks sampled and scored (repeats dropped).
      predictor: the run's frozen TAP directory (nas-search sets it; a user
        may point at a TAP saved elsewhere).
      learning_rate: each trained network's learning rate (None: the run's optimizer's).
    """

    samples: int = 2000
    predictor: str | None = None
    learning_rate: float | None = None

    def __post_init__(self):
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"search.space.samples must be an integer >= 1, got {self.samples!r}")

    def check(self, problem: Problem) -> None:
        if problem.task != "classification":
            raise ValueError("search=tapas predicts classification accuracy; this dataset is a regression task")

    def most_complex(self, problem: Problem) -> Arch:
        archs = _sample(problem, 0, min(self.samples, 256))
        return max(archs, key=lambda a: (a.num_params(problem.input_shape), a.structural_hash()))


@dataclasses.dataclass(frozen=True)
class TapasState:
    """The ranked sample and how far down it the search is.

    Attributes:
      ranked: (predicted accuracy, architecture), best first.
      asked: how many were proposed.
      told: (trial, objective) of every told trial.
    """

    ranked: tuple[tuple[float, Arch], ...]
    learning_rate: float | None
    asked: int = 0
    told: tuple[tuple[int, float], ...] = ()


def _sample(problem: Problem, seed: int, n: int) -> list[Arch]:
    from nas.tapas import metaqnn

    rng = np.random.default_rng([seed, 0x7A9A5])
    seen: dict[str, Arch] = {}
    for i in range(n):
        arch = metaqnn.arch_of(metaqnn.sample(rng, problem.input_shape, problem.num_outputs), problem.input_shape,
                               problem.num_outputs)
        seen.setdefault(arch.structural_hash(), arch.replace_nodes(arch.nodes, name=f"tapas-{i}"))
    return list(seen.values())


def init(posed: Posed[TapasSpace], key) -> TapasState:
    space, problem = posed
    if space.predictor is None:
        raise ValueError("search=tapas needs a trained predictor (search.space.predictor); nas-search prepares one "
                         "from the LDE (tapas.* settings)")
    from nas.tapas.service import load_scorer

    archs = _sample(problem, seed_of(key), space.samples)
    scores = np.asarray(load_scorer(space.predictor)(archs), dtype=np.float64)
    order = sorted(range(len(archs)), key=lambda i: (-scores[i] if math.isfinite(scores[i]) else math.inf, i))
    return TapasState(tuple((float(scores[i]), archs[i]) for i in order), space.learning_rate)


def ask(state: TapasState, n: int) -> tuple[TapasState, list[Candidate]]:
    end = min(len(state.ranked), state.asked + n)
    out = [Candidate(t, state.ranked[t][1], state.learning_rate,
                     {"tap_predicted": round(state.ranked[t][0], 6), "rank": t}) for t in range(state.asked, end)]
    return dataclasses.replace(state, asked=end), out


def tell(state: TapasState, results: Sequence[TrialResult]) -> TapasState:
    return dataclasses.replace(state, told=state.told + tuple((r.trial, float(r.objective)) for r in results))


def done(state: TapasState) -> bool:
    return state.asked >= len(state.ranked)


TAPAS = Strategy("tapas", init, ask, tell, done, space=TapasSpace)

__all__ = ["TAPAS", "TapasSpace", "TapasState"]
