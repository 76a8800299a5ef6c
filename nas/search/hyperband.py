"""Hyperband and ASHA with epochs as the resource: NeuNetS's Hyperband++ on the strategy contract.

Hyperband (Li et al., ICLR 2017, Algorithm 1) runs brackets s = s_max..0 of
successive halving: bracket s starts n = ceil((s_max + 1) eta^s / (s + 1))
configurations at r = R eta^-s epochs; rung i evaluates n_i = floor(n eta^-i)
of them at r_i = r eta^i epochs and keeps the top floor(n_i / eta) by
objective. ASHA (Li et al., 2018, Algorithm 2) drops the brackets' barriers:
whenever a worker is free it promotes a configuration that is in the top
1/eta of its rung's completed results and not yet promoted, from the
highest such rung, and otherwise starts a new configuration at the bottom.

A promotion continues training: it is a new trial with ``start="continue"``,
the previous trial as its parent, the same architecture and training
settings, and the next rung's epochs as its total (the evaluator trains
only the added epochs from the parent's checkpoint). Configurations are
drawn from `HyperbandSpace` (chain, skip-chain and MLP networks plus the
training hyperparameters), configuration k from a generator seeded by
(seed, k), so both strategies are deterministic functions of the seed and
the asks and tells, as the engine's replay needs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from nas.ir import Arch
from nas.search.hyperband_space import HyperbandSpace, sample_config
from nas.search.problem import Posed, Problem
from nas.search.strategy import CONTINUE, FRESH, Candidate, Strategy, TrialResult, seed_of


# ------------------------------------------------------------------ the schedule
@dataclasses.dataclass(frozen=True)
class Bracket:
    """One bracket of successive halving.

    Attributes:
      s: the bracket's index (s_max..0: the most exploratory first).
      rungs: (n_i, r_i) per rung: configurations evaluated, epochs each.
    """

    s: int
    rungs: tuple[tuple[int, int], ...]


def max_bracket(max_epochs: float, min_epochs: float, eta: int) -> int:
    """s_max = floor(log_eta(R / r_min)), exact for powers of eta."""
    s, ratio = 0, max_epochs / min_epochs
    while eta ** (s + 1) <= ratio * (1 + 1e-12):
        s += 1
    return s


def epochs_at(max_epochs: float, eta: int, s: int, i: int) -> int:
    """r_i = R eta^(i - s) epochs, rounded to a whole epoch (at least 1)."""
    return max(1, int(round(max_epochs / eta ** (s - i))))


def brackets(max_epochs: float, min_epochs: float, eta: int) -> tuple[Bracket, ...]:
    """Hyperband's brackets for R = max_epochs, r_min = min_epochs and eta (its Table 1 for 81, 1, 3).

    Returns:
      Bracket s_max first, bracket 0 last.
    """
    s_max = max_bracket(max_epochs, min_epochs, eta)
    out = []
    for s in range(s_max, -1, -1):
        n = -(-((s_max + 1) * eta ** s) // (s + 1))  # ceil((s_max + 1) / (s + 1) * eta^s), in integers
        out.append(Bracket(s, tuple((n // eta ** i, epochs_at(max_epochs, eta, s, i)) for i in range(s + 1))))
    return tuple(out)


def schedule(space: HyperbandSpace) -> tuple[Bracket, ...]:
    return brackets(space.max_epochs, space.min_epochs, space.eta)


def rung_epochs(space: HyperbandSpace) -> tuple[int, ...]:
    """ASHA's rungs: the epochs of the most exploratory bracket's rungs (r_min .. R)."""
    return tuple(r for _, r in schedule(space)[0].rungs)


# ------------------------------------------------------------------ shared records
@dataclasses.dataclass(frozen=True)
class Config:
    """A sampled configuration: its architecture and training settings."""

    index: int
    arch: Arch
    training: Mapping[str, Any]
    choices: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Record:
    """One trial: a configuration trained to `epochs` at a rung.

    Attributes:
      bracket: the Hyperband bracket's position (0 for ASHA).
      parent: the configuration's previous trial (None at its first rung).
      objective: f once told (lower is better); None while pending.
    """

    trial: int
    config: int
    bracket: int
    rung: int
    epochs: int
    parent: int | None = None
    objective: float | None = None


def _new_config(space: HyperbandSpace, problem: Problem, seed: int, index: int) -> Config:
    arch, training, choices = sample_config(space, problem, seed, index)
    return Config(index, arch, training, choices)


def _candidate(config: Config, record: Record, **extra) -> Candidate:
    t = config.training
    choices = {**config.choices, "config": config.index, "rung": record.rung, **extra}
    return Candidate(record.trial, config.arch, learning_rate=t["learning_rate"], choices=choices,
                     weight_decay=t["weight_decay"], batch_size=t["batch_size"], epochs=record.epochs,
                     parent=record.parent, start=FRESH if record.parent is None else CONTINUE)


def top_k(records: Sequence[Record], k: int) -> list[Record]:
    """The k records of lowest objective (ties: lowest trial); failed (non-finite) ones never count."""
    finite = [r for r in records if r.objective is not None and math.isfinite(r.objective)]
    return sorted(finite, key=lambda r: (r.objective, r.trial))[:max(k, 0)]


def _told(records: tuple[Record, ...], results: Sequence[TrialResult]) -> tuple[Record, ...]:
    values = {r.trial: float(r.objective) for r in results}
    return tuple(dataclasses.replace(r, objective=values[r.trial]) if r.trial in values else r for r in records)


def best(state) -> Record | None:
    """The told record of lowest objective (Hyperband or ASHA state)."""
    found = top_k(state.records, 1)
    return found[0] if found else None


# ------------------------------------------------------------------ Hyperband
@dataclasses.dataclass(frozen=True)
class HyperbandState:
    """Where Hyperband is.

    Attributes:
      space, problem, seed: as given to `init`.
      bracket, rung: the current bracket's position in `schedule` and its rung;
        ``bracket == len(schedule)`` once every bracket has finished.
      filled: whether the current rung's configurations were chosen.
      queue: (configuration, parent trial) still to ask at the current rung.
      configs: every configuration sampled, by index.
      records: every trial so far.
    """

    space: HyperbandSpace
    problem: Problem
    seed: int
    bracket: int = 0
    rung: int = 0
    filled: bool = False
    queue: tuple[tuple[int, int | None], ...] = ()
    configs: tuple[Config, ...] = ()
    records: tuple[Record, ...] = ()

    @property
    def next_trial(self) -> int:
        return len(self.records)


def hyperband_init(posed: Posed[HyperbandSpace], key) -> HyperbandState:
    space, problem = posed
    return HyperbandState(space, problem, seed_of(key))


def _rung_records(state: HyperbandState, bracket: int, rung: int) -> list[Record]:
    return [r for r in state.records if r.bracket == bracket and r.rung == rung]


def _fill(state: HyperbandState, plan: tuple[Bracket, ...]) -> HyperbandState:
    """Chooses the current rung's configurations: n fresh ones at rung 0, else the previous rung's top n_i / eta."""
    rungs = plan[state.bracket].rungs
    if state.rung == 0:
        start = len(state.configs)
        configs = tuple(_new_config(state.space, state.problem, state.seed, k)
                        for k in range(start, start + rungs[0][0]))
        return dataclasses.replace(state, configs=state.configs + configs,
                                   queue=tuple((c.index, None) for c in configs), filled=True)
    # Algorithm 1: keep the top floor(n_i / eta) of rung i, with n_i the schedule's (failed trials never count).
    kept = top_k(_rung_records(state, state.bracket, state.rung - 1), rungs[state.rung - 1][0] // state.space.eta)
    return dataclasses.replace(state, queue=tuple((r.config, r.trial) for r in kept), filled=True)


def _advance(state: HyperbandState) -> HyperbandState:
    """Fills the current rung, or moves past it once every one of its trials is told."""
    plan = schedule(state.space)
    while state.bracket < len(plan):
        if not state.filled:
            state = _fill(state, plan)
        if state.queue or any(r.objective is None for r in _rung_records(state, state.bracket, state.rung)):
            return state
        if state.rung + 1 < len(plan[state.bracket].rungs):
            state = dataclasses.replace(state, rung=state.rung + 1, filled=False)
        else:
            state = dataclasses.replace(state, bracket=state.bracket + 1, rung=0, filled=False)
    return state


def hyperband_ask(state: HyperbandState, n: int) -> tuple[HyperbandState, list[Candidate]]:
    """Up to n trials of the current rung; none while the rung waits for its results."""
    state = _advance(state)
    plan = schedule(state.space)
    if state.bracket >= len(plan):
        return state, []
    bracket = plan[state.bracket]
    epochs = bracket.rungs[state.rung][1]
    out, records = [], state.records
    for config, parent in state.queue[:max(n, 0)]:
        record = Record(len(records), config, state.bracket, state.rung, epochs, parent)
        records += (record,)
        out.append(_candidate(state.configs[config], record, bracket=bracket.s))
    return dataclasses.replace(state, queue=state.queue[len(out):], records=records), out


def hyperband_tell(state: HyperbandState, results: Sequence[TrialResult]) -> HyperbandState:
    return _advance(dataclasses.replace(state, records=_told(state.records, results)))


def hyperband_done(state: HyperbandState) -> bool:
    return _advance(state).bracket >= len(schedule(state.space))


# ------------------------------------------------------------------ ASHA
@dataclasses.dataclass(frozen=True)
class AshaState:
    """Where ASHA is.

    Attributes:
      space, problem, seed: as given to `init` (`space.max_configs` bounds
        the configurations started).
      configs: every configuration started, by index.
      records: every trial so far.
      promoted: trials already promoted to the next rung.
    """

    space: HyperbandSpace
    problem: Problem
    seed: int
    configs: tuple[Config, ...] = ()
    records: tuple[Record, ...] = ()
    promoted: frozenset[int] = frozenset()


def asha_init(posed: Posed[HyperbandSpace], key) -> AshaState:
    space, problem = posed
    return AshaState(space, problem, seed_of(key))


def promotable(state: AshaState) -> Record | None:
    """ASHA's get_job: from the highest rung below the top, the best completed trial in the top
    floor(|rung| / eta) of its rung's completed trials that was not promoted yet."""
    top = len(rung_epochs(state.space)) - 1
    for k in range(top - 1, -1, -1):
        completed = [r for r in state.records if r.rung == k and r.objective is not None]
        fresh = [r for r in top_k(completed, len(completed) // state.space.eta) if r.trial not in state.promoted]
        if fresh:
            return fresh[0]
    return None


def asha_ask(state: AshaState, n: int) -> tuple[AshaState, list[Candidate]]:
    """n jobs, each a promotion if one is due, else a new configuration at the bottom rung.

    Jobs asked together cannot promote each other (their results are not in
    yet), which is what n free workers would see.
    """
    epochs, out = rung_epochs(state.space), []
    for _ in range(max(n, 0)):
        parent = promotable(state)
        if parent is not None:
            config = state.configs[parent.config]
            record = Record(len(state.records), parent.config, 0, parent.rung + 1, epochs[parent.rung + 1],
                            parent.trial)
            state = dataclasses.replace(state, promoted=state.promoted | {parent.trial})
        elif len(state.configs) < state.space.max_configs:
            config = _new_config(state.space, state.problem, state.seed, len(state.configs))
            record = Record(len(state.records), config.index, 0, 0, epochs[0])
            state = dataclasses.replace(state, configs=state.configs + (config,))
        else:
            break
        state = dataclasses.replace(state, records=state.records + (record,))
        out.append(_candidate(config, record))
    return state, out


def asha_tell(state: AshaState, results: Sequence[TrialResult]) -> AshaState:
    return dataclasses.replace(state, records=_told(state.records, results))


def asha_done(state: AshaState) -> bool:
    """Every configuration started, nothing pending and nothing left to promote."""
    return (len(state.configs) >= state.space.max_configs and all(r.objective is not None for r in state.records)
            and promotable(state) is None)


# needs_weights: promotions continue from their parent's weights, so the engine must checkpoint every trial
# (with needs_weights False it checkpoints only trials on the Pareto front when they finish).
HYPERBAND = Strategy("hyperband", hyperband_init, hyperband_ask, hyperband_tell, hyperband_done, needs_weights=True,
                     space=HyperbandSpace)
ASHA = Strategy("asha", asha_init, asha_ask, asha_tell, asha_done, needs_weights=True, space=HyperbandSpace)

__all__ = ["ASHA", "AshaState", "Bracket", "Config", "HYPERBAND", "HyperbandState", "Record", "best", "brackets",
           "epochs_at", "max_bracket", "promotable", "rung_epochs", "schedule", "top_k"]
