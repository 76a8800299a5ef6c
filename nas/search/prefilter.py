"""A predictor screens any strategy's proposals before they train: ``search.prefilter=tap`` (NeuNetS s4.1.2).

`with_prefilter(inner, score, keep)` is a `Strategy` that, asked for n
proposals, asks `inner` for ceil(n / keep), scores them all with `score`
(TAP's predicted peak validation accuracy: cheap, no training), and passes
on the n highest. The others are *screened*: `inner` is told them as failed
trials (no score) together with the batch, so a strategy that learns from
its results (BO, evolution) never mistakes a screened proposal for a trained
one, and the wrapper keeps each screened proposal with its predicted
accuracy in its state (`PrefilterState.screened`; nas-search writes them to
``screened.csv``).

Trial indices are the run's: only trained proposals get one, consecutively;
`inner`'s own indices (and the parents its proposals name) are translated
both ways. Resuming replays like any strategy: the scores come from the
predictor frozen in the run directory, so the same proposals are screened.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

from nas.ir import Arch
from nas.search.problem import Posed
from nas.search.strategy import Candidate, Strategy, TrialResult
from nas.status import FAILED, NO_SCORE

# Predicted peak validation accuracy of each architecture (higher is better), as one array.
Scorer = Callable[[Sequence[Arch]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Screened:
    """A proposal the predictor kept from training.

    Attributes:
      inner_trial: its index in the inner strategy's numbering.
      arch_hash: `Arch.structural_hash()` of its architecture.
      predicted: the predictor's score.
      cutoff: the lowest score that was trained in the same batch.
      choices: what the inner strategy chose.
    """

    inner_trial: int
    arch_hash: str
    predicted: float
    cutoff: float
    choices: dict


@dataclasses.dataclass(frozen=True)
class PrefilterState:
    """The inner strategy's state and the screening's bookkeeping.

    Attributes:
      inner: the wrapped strategy's state.
      next_trial: the next run trial index.
      to_inner: (run trial, inner trial) of every trained proposal.
      pending: inner trials screened in the last ask, told to `inner` with the next tell.
      screened: every screened proposal, in order.
    """

    inner: Any
    next_trial: int = 0
    to_inner: tuple[tuple[int, int], ...] = ()
    pending: tuple[int, ...] = ()
    screened: tuple[Screened, ...] = ()


def _screened_result(trial: int) -> TrialResult:
    return TrialResult(trial=trial, status=FAILED, score=NO_SCORE, error=math.inf, t_tr=math.nan, num_params=0,
                       epochs=0, objective=math.inf)


def with_prefilter(inner: Strategy, score: Scorer, keep: float, *, name: str = "tap") -> Strategy:
    """`inner` whose proposals are screened by `score`, training the top `keep` fraction.

    Args:
      inner: any strategy.
      score: architectures -> predicted accuracy (higher trains first).
      keep: the fraction of proposals trained, in (0, 1].
      name: the predictor's name, for the strategy's name (``random+tap``).

    Raises:
      ValueError: `keep` outside (0, 1].
    """
    if not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"the prefilter's keep fraction must be in (0, 1], got {keep!r}")
    keep = float(keep)

    def init(posed: Posed, key) -> PrefilterState:
        return PrefilterState(inner.init(posed, key))

    def ask(state: PrefilterState, n: int) -> tuple[PrefilterState, list[Candidate]]:
        if state.pending:
            raise ValueError("the prefilter was asked again before the screened proposals were told")
        if n <= 0:
            return state, []
        inner_state, proposals = inner.ask(state.inner, math.ceil(n / keep))
        if not proposals:
            return dataclasses.replace(state, inner=inner_state), []
        scores = np.asarray(score([c.arch for c in proposals]), dtype=np.float64).reshape(-1)
        if scores.shape != (len(proposals),):
            raise ValueError(f"the {name} prefilter scored {scores.size} of {len(proposals)} proposals")
        # Unscoreable (NaN) proposals rank last; ties keep the inner strategy's order.
        order = sorted(range(len(proposals)),
                       key=lambda i: (-scores[i] if math.isfinite(scores[i]) else math.inf, i))
        kept = sorted(order[:n])
        dropped = [i for i in order[n:]]
        cutoff = float(min(scores[i] for i in kept))
        outer_of = {i: o for o, i in state.to_inner}
        to_inner, out, trial = list(state.to_inner), [], state.next_trial
        for i in kept:
            c = proposals[i]
            parent = outer_of.get(c.parent) if c.parent is not None else None
            if c.parent is not None and parent is None:
                raise ValueError(f"{inner.name} proposed trial {c.trial} from parent {c.parent}, "
                                 "which was screened or never proposed")
            outer_of[c.trial] = trial
            to_inner.append((trial, c.trial))
            choices = {**dict(c.choices), f"{name}_predicted": round(float(scores[i]), 6)}
            out.append(dataclasses.replace(c, trial=trial, parent=parent, choices=choices))
            trial += 1
        screened = tuple(Screened(proposals[i].trial, proposals[i].arch.structural_hash(), float(scores[i]), cutoff,
                                  dict(proposals[i].choices)) for i in dropped)
        return dataclasses.replace(state, inner=inner_state, next_trial=trial, to_inner=tuple(to_inner),
                                   pending=tuple(s.inner_trial for s in screened),
                                   screened=state.screened + screened), out

    def tell(state: PrefilterState, results: Sequence[TrialResult]) -> PrefilterState:
        inner_of = dict(state.to_inner)
        unknown = [r.trial for r in results if r.trial not in inner_of]
        if unknown:
            raise ValueError(f"trials {unknown} were not proposed by this search state")
        told = [dataclasses.replace(r, trial=inner_of[r.trial]) for r in results]
        told += [_screened_result(t) for t in state.pending]
        inner_state = inner.tell(state.inner, sorted(told, key=lambda r: r.trial)) if told else state.inner
        return dataclasses.replace(state, inner=inner_state, pending=())

    def done(state: PrefilterState) -> bool:
        return not state.pending and inner.done(state.inner)

    return Strategy(f"{inner.name}+{name}", init, ask, tell, done, needs_weights=inner.needs_weights,
                    space=inner.space)


def screened_rows(state: Any) -> list[dict]:
    """The screened proposals of a (possibly wrapped) final strategy state, as flat rows; [] for others."""
    if not isinstance(state, PrefilterState):
        return []
    return [{"inner_trial": s.inner_trial, "arch_hash": s.arch_hash, "predicted": s.predicted, "cutoff": s.cutoff,
             **{f"choice.{k}": v for k, v in s.choices.items() if not isinstance(v, (dict, list, tuple))}}
            for s in state.screened]


__all__ = ["PrefilterState", "Scorer", "Screened", "screened_rows", "with_prefilter"]
