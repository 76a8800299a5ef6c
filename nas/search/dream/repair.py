"""DREAM as a repair for any strategy: ``search.repair=dream`` (TOSEM'24 s4.2, "search & repair").

`with_dream_repair(inner, settings, base)` is a `Strategy` that runs `inner`
unchanged and watches the best trial of the whole run. When that trial's
condition is abnormal (anything but NC-NG-NW: slow convergence, vanishing,
exploding or dying gradients, exploding weights), the next ask starts with
one repair proposal: the highest-priority untried action of DREAM's table for
that condition, applied to the best trial's architecture and training
settings and trained from scratch (a fine-tuning action: from the
pre-trained checkpoint, ``dream.pretrained``). Then `inner`'s own proposals fill the
batch. One repair is in flight at a time; a repair that becomes the best and
is still abnormal is repaired in turn.

Trial indices are the run's: the wrapper numbers every proposal
consecutively and translates `inner`'s own indices (and the parents its
proposals name) both ways, so `inner` sees exactly the trials it proposed
and never a repair. Resuming replays like any strategy: every choice is a
function of the seed, the told results and the table.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax

from nas.ir import Arch
from nas.search.dream.planner import DreamSettings, Incumbent, fingerprint, incumbent_of, plan
from nas.search.problem import Posed
from nas.search.strategy import FRESH, INHERIT, Candidate, Strategy, TrialResult, seed_of
from nas.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class RepairState:
    """The inner strategy's state and the repair's bookkeeping.

    Attributes:
      inner: the wrapped strategy's state.
      input_shape, num_outputs: the problem's (conditions weigh ReLU units by the
        shape; a pre-trained model is re-posed on both).
      seed: the run's seed.
      next_trial: the next run trial index.
      to_inner: (run trial, inner trial) of every inner proposal.
      proposed: (run trial, arch, settings) of every proposal not told yet.
      repair_pending: the run trial of the repair in flight, if any.
      best: the run's best trial so far (any proposer).
      tried: actions taken from the current best; seen: fingerprints of every repair's child.
      repairs: how many repairs were proposed.
    """

    inner: Any
    input_shape: tuple[int, ...]
    num_outputs: int
    seed: int
    next_trial: int = 0
    to_inner: tuple[tuple[int, int], ...] = ()
    proposed: tuple[tuple[int, Arch, TrainConfig], ...] = ()
    repair_pending: int | None = None
    best: Incumbent | None = None
    tried: tuple[str, ...] = ()
    seen: tuple[str, ...] = ()
    repairs: int = 0


def settings_of(candidate: Candidate, base: TrainConfig) -> TrainConfig:
    """The training settings a proposal stands for (what DREAM's actions edit), the run's `base` filling gaps."""
    optimizer = candidate.optimizer or base.optimizer
    if candidate.learning_rate is not None:
        optimizer = dataclasses.replace(optimizer, learning_rate=float(candidate.learning_rate))
    if candidate.weight_decay is not None:
        optimizer = dataclasses.replace(optimizer, weight_decay=float(candidate.weight_decay))
    return dataclasses.replace(base, optimizer=optimizer, schedule=candidate.schedule or base.schedule,
                               finetune=candidate.finetune or base.finetune,
                               epochs=int(candidate.epochs or base.epochs),
                               batch_size=int(candidate.batch_size or base.batch_size))


def with_dream_repair(inner: Strategy, settings: DreamSettings, base: TrainConfig) -> Strategy:
    """`inner` with DREAM repairing the run's best trial whenever its condition is abnormal.

    Args:
      inner: any strategy.
      settings: the ``dream`` group (thresholds, priority table, action space).
      base: the run's training settings (what proposals that set nothing train with).
    """

    def init(posed: Posed, key) -> RepairState:
        return RepairState(inner.init(posed, key), posed.problem.input_shape, posed.problem.num_outputs, seed_of(key))

    def ask(state: RepairState, n: int) -> tuple[RepairState, list[Candidate]]:
        out: list[Candidate] = []
        proposed, tried, seen = list(state.proposed), state.tried, state.seen
        repair_pending, repairs, trial = state.repair_pending, state.repairs, state.next_trial
        best = state.best
        if n > 0 and repair_pending is None and best is not None and not best.normal:
            key = jax.random.fold_in(jax.random.key(state.seed), trial)
            for move in plan(best, settings, tried, seen, 1, key, state.input_shape, state.num_outputs):
                choices = {"repair": "dream", **move.choices(best)}
                out.append(Candidate(trial, move.arch.replace_nodes(move.arch.nodes, name=f"repair-t{trial}"), None,
                                     choices, batch_size=move.settings.batch_size, epochs=move.settings.epochs,
                                     parent=best.trial, start=FRESH if move.variables is None else INHERIT,
                                     variables=move.variables, optimizer=move.settings.optimizer,
                                     schedule=move.settings.schedule,
                                     finetune=move.settings.finetune if move.settings.finetune.enabled else None))
                proposed.append((trial, move.arch, move.settings))
                tried, seen = tried + (move.action,), seen + (fingerprint(move.arch, move.settings),)
                repair_pending, repairs, trial = trial, repairs + 1, trial + 1
        inner_state, inner_out = inner.ask(state.inner, n - len(out))
        to_inner = list(state.to_inner)
        outer_of = {i: o for o, i in to_inner}
        for c in inner_out:
            parent = outer_of.get(c.parent) if c.parent is not None else None
            if c.parent is not None and parent is None:
                raise ValueError(f"{inner.name} proposed trial {c.trial} from parent {c.parent}, which it never proposed")
            outer_of[c.trial] = trial
            to_inner.append((trial, c.trial))
            out.append(dataclasses.replace(c, trial=trial, parent=parent))
            proposed.append((trial, c.arch, settings_of(c, base)))
            trial += 1
        return dataclasses.replace(state, inner=inner_state, next_trial=trial, to_inner=tuple(to_inner),
                                   proposed=tuple(proposed), repair_pending=repair_pending, best=best,
                                   tried=tried, seen=seen, repairs=repairs), out

    def tell(state: RepairState, results: Sequence[TrialResult]) -> RepairState:
        proposed = {t: (arch, s) for t, arch, s in state.proposed}
        inner_of = dict(state.to_inner)
        best, tried, repair_pending = state.best, state.tried, state.repair_pending
        for r in sorted(results, key=lambda r: r.trial):
            if r.trial not in proposed:
                raise ValueError(f"trial {r.trial} was not proposed by this search state (or was told already)")
            if r.ok and (best is None or r.objective < best.objective):
                arch, s = proposed[r.trial]
                best, tried = incumbent_of(r, arch, s, settings.thresholds, state.input_shape), ()
            if r.trial == repair_pending:
                repair_pending = None
        inner_results = [dataclasses.replace(r, trial=inner_of[r.trial]) for r in results if r.trial in inner_of]
        inner_state = inner.tell(state.inner, inner_results) if inner_results else state.inner
        told = {r.trial for r in results}
        return dataclasses.replace(state, inner=inner_state, best=best, tried=tried, repair_pending=repair_pending,
                                   proposed=tuple(p for p in state.proposed if p[0] not in told))

    def done(state: RepairState) -> bool:
        # The inner strategy's end ends the run once no repair is in flight: a repair proposes one
        # child per ask, so the engine's "nothing proposed, nothing pending" also ends it.
        return state.repair_pending is None and inner.done(state.inner) and (state.best is None or state.best.normal)

    return Strategy(f"{inner.name}+dream", init, ask, tell, done, needs_weights=inner.needs_weights,
                    space=inner.space)


__all__ = ["RepairState", "settings_of", "with_dream_repair"]
