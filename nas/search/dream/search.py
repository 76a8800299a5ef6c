"""``search=dream``: DREAM's feedback-driven search (TOSEM'24 Algorithm 1) as init/ask/tell.

Train the initial model; read its A-C-G-W condition from the training
feedback; take the highest-priority untried action of the priority table
for that condition (`nas.search.dream.planner.plan`); train the child; keep
the best (model, feedback, score) and repeat from it. The engine stops the
search at ``search.target`` (line 6's early stop) or the budgets; the
strategy ends itself when no untried action applies to the best model.

The initial model is the one the AutoKeras-style baseline starts from
(`nas.search.autokeras_greedy.default_model` with the same space values), so
the two compare from the same start. A child trains afresh for
`initial_epochs`, like the initial model; with `inherit`, a child of a
function-preserving action (width=x2, depth=+1, block_type=residual,
dropout) starts from its parent's trained weights instead and trains
`epochs` more, as AutoKeras trains its morphs.

Resuming replays the asks and tells: every choice is a function of the seed,
the told results (their stored history and feedback) and the priority table,
and the table is part of the run's config, so a resumed run proposes what
the killed one did.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax

from nas.ir import Arch
from nas.search.autokeras_greedy import FAMILIES, GreedySpace, default_model
from nas.search.dream.conditions import Thresholds
from nas.search.dream.planner import DreamSettings, Incumbent, fingerprint, incumbent_of, plan
from nas.search.problem import Posed, Problem
from nas.search.strategy import FRESH, INHERIT, Candidate, Strategy, TrialResult, seed_of
from nas.train import OptimizerConfig, ScheduleConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class DreamSpace:
    """DREAM's initial model, its training, and the ``dream`` settings.

    Attributes:
      family, channels, dense, hidden: the initial model, as
        `nas.search.autokeras_greedy.GreedySpace` builds it.
      initial_epochs: epochs of a model trained from scratch (the initial
        model and every child that does not inherit).
      epochs: epochs of a child trained on from its parent's weights.
      learning_rate: the initial learning rate (None: `optimizer`'s).
      batch_size: None takes the run's base setting.
      optimizer, schedule: the initial model's optimiser and schedule (the
        actions change them; the search config passes the ``optimizer`` and
        ``schedule`` groups here).
      inherit: function-preserving actions start from the parent's weights.
      thresholds, priorities, random_seed, action_space, pretrained: the
        ``dream`` group (`nas.search.dream.planner.DreamSettings`).
    """

    family: str = "auto"
    channels: tuple[int, ...] = (16, 32)
    dense: tuple[int, ...] = (32,)
    hidden: tuple[int, ...] = (64,)
    initial_epochs: int = 4
    epochs: int = 2
    learning_rate: float | None = None
    batch_size: int | None = None
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    inherit: bool = True
    thresholds: Thresholds | Mapping[str, Any] | None = None
    priorities: str = "shipped"
    random_seed: int = 0
    action_space: str = "expanded"
    pretrained: str | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"search.space.family must be one of {FAMILIES}, got {self.family!r}")
        for name in ("initial_epochs", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"search.space.{name} must be an integer >= 1, got {value!r}")
        settings = DreamSettings(self.thresholds, self.priorities, self.random_seed, self.action_space,
                                 self.pretrained)
        object.__setattr__(self, "thresholds", settings.thresholds)
        object.__setattr__(self, "_dream", settings)  # not a field: equality and fingerprints see the fields

    @property
    def dream(self) -> DreamSettings:
        return self._dream

    def _greedy(self) -> GreedySpace:
        return GreedySpace(family=self.family, channels=self.channels, dense=self.dense, hidden=self.hidden)

    def check(self, problem: Problem) -> None:
        self._greedy().check(problem)

    def most_complex(self, problem: Problem) -> Arch:
        """The initial model (DREAM's actions also grow it: give c_0 when w_c > 0)."""
        return self.initial_model(problem)

    def initial_model(self, problem: Problem) -> Arch:
        arch = default_model(self._greedy(), problem)
        return arch.replace_nodes(arch.nodes, name="dream-initial")

    def initial_settings(self) -> TrainConfig:
        optimizer = self.optimizer
        if self.learning_rate is not None:
            optimizer = dataclasses.replace(optimizer, learning_rate=float(self.learning_rate))
        return TrainConfig(epochs=self.initial_epochs, batch_size=self.batch_size or TrainConfig.batch_size,
                           optimizer=optimizer, schedule=self.schedule)


@dataclasses.dataclass(frozen=True)
class DreamState:
    """Where the search is.

    Attributes:
      space, problem, seed: as given to `init`.
      pending: (trial, arch, settings) of proposals not told yet.
      best: the incumbent children derive from.
      tried: actions taken from the current best (reset when the best changes).
      seen: fingerprints of every proposal (an action undoing another is not retrained).
      exhausted: no untried action applies to the best: the search is over.
    """

    space: DreamSpace
    problem: Problem
    seed: int
    next_trial: int = 0
    pending: tuple[tuple[int, Arch, TrainConfig], ...] = ()
    best: Incumbent | None = None
    tried: tuple[str, ...] = ()
    seen: tuple[str, ...] = ()
    exhausted: bool = False


def init(posed: Posed[DreamSpace], key) -> DreamState:
    space, problem = posed
    return DreamState(space, problem, seed_of(key))


def _candidate(space: DreamSpace, trial: int, arch: Arch, settings: TrainConfig, choices: dict, *,
               parent: int | None = None, variables: Any = None, continues: bool = False) -> Candidate:
    """A proposal; with `variables` it starts from them (a morphed parent's or pre-trained weights)."""
    return Candidate(trial, arch.replace_nodes(arch.nodes, name=f"dream-t{trial}"), None, choices,
                     batch_size=space.batch_size, epochs=space.epochs if continues else space.initial_epochs,
                     parent=parent, start=FRESH if variables is None else INHERIT, variables=variables,
                     optimizer=settings.optimizer, schedule=settings.schedule,
                     finetune=settings.finetune if settings.finetune.enabled else None)


def ask(state: DreamState, n: int) -> tuple[DreamState, list[Candidate]]:
    """The initial model first; then, once every proposal is told, up to n actions on the best."""
    space, out, tried, seen = state.space, [], state.tried, state.seen
    exhausted = state.exhausted
    if n <= 0 or state.pending or exhausted:
        return state, []
    if state.next_trial == 0:
        arch, settings = space.initial_model(state.problem), space.initial_settings()
        out.append(_candidate(space, 0, arch, settings, {"model": "initial"}))
        seen = seen + (fingerprint(arch, settings),)
        pending = ((0, arch, settings),)
    elif state.best is not None:
        key = jax.random.fold_in(jax.random.key(state.seed), state.next_trial)
        moves = plan(state.best, space.dream, tried, seen, n, key, state.problem.input_shape,
                     state.problem.num_outputs, inherit=space.inherit)
        pending = []
        for i, move in enumerate(moves):
            trial = state.next_trial + i
            out.append(_candidate(space, trial, move.arch, move.settings, move.choices(state.best),
                                  parent=state.best.trial, variables=move.variables, continues=move.continues))
            pending.append((trial, move.arch, move.settings))
            tried, seen = tried + (move.action,), seen + (fingerprint(move.arch, move.settings),)
        exhausted = not moves
        pending = tuple(pending)
    else:
        return state, []
    return dataclasses.replace(state, next_trial=state.next_trial + len(out), pending=pending, tried=tried,
                               seen=seen, exhausted=exhausted), out


def tell(state: DreamState, results: Sequence[TrialResult]) -> DreamState:
    """A finished proposal of lower objective than the best (strictly) becomes the best, with its condition."""
    proposed = {trial: (arch, settings) for trial, arch, settings in state.pending}
    best, tried = state.best, state.tried
    for r in sorted(results, key=lambda r: r.trial):
        if r.trial not in proposed:
            raise ValueError(f"trial {r.trial} was not proposed by this search state (or was told already)")
        if r.ok and (best is None or r.objective < best.objective):
            arch, settings = proposed[r.trial]
            best = incumbent_of(r, arch, settings, state.space.dream.thresholds, state.problem.input_shape,
                                keep_weights=state.space.inherit)
            tried = ()
    told = {r.trial for r in results}
    return dataclasses.replace(state, pending=tuple(p for p in state.pending if p[0] not in told), best=best,
                               tried=tried)


def done(state: DreamState) -> bool:
    """The initial model failed, or no untried action applies to the best."""
    if state.pending:
        return False
    return state.exhausted or (state.next_trial > 0 and state.best is None)


DREAM = Strategy("dream", init, ask, tell, done, needs_weights=True, space=DreamSpace)

__all__ = ["DREAM", "DreamSpace", "DreamState"]
