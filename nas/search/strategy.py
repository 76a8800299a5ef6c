"""The strategy contract (NeuNetS's pluggable synthesizer, Vizier's designer).

A strategy proposes and learns; it never trains. It is four pure functions
over an explicit state:

- ``init(posed, key) -> state``: `posed` is a `nas.search.problem.Posed`:
  the strategy's own frozen space spec (of class `Strategy.space`, built
  from the config's ``space:`` node) and the `Problem` it searches (input
  shape, output count, task), checked against each other when paired;
  `key` is an int seed or a `jax.random` key.
- ``ask(state, n) -> (state, candidates)``: up to n proposals. Fewer (even
  none) means "wait for the results of what is pending"; none while nothing
  is pending means the strategy has finished.
- ``tell(state, results) -> state``: the `TrialResult` of earlier proposals.
- ``done(state) -> bool``: the strategy's own stop test (stages exhausted,
  brackets finished); budgets are the engine's.

States are frozen dataclasses of plain values, IR architectures and (only
for strategies that derive children from trained weights) host arrays, so
they pickle. Every proposal is a deterministic function of (seed, the
sequence of asks and tells), which is how the engine resumes a killed run:
it replays the asks and tells against its trial store.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from nas.ir import Arch
from nas.status import DONE
from nas.train.config import FineTuneConfig, OptimizerConfig, ScheduleConfig

FRESH, INHERIT, CONTINUE = "fresh", "inherit", "continue"
STARTS = (FRESH, INHERIT, CONTINUE)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A proposal: an IR plus how to train it.

    Attributes:
      trial: the 0-based trial index in the run (assigned by the strategy,
        consecutive over the run).
      arch: the architecture.
      learning_rate, weight_decay, batch_size, epochs: training settings;
        None takes the run's base `TrainConfig`.
      choices: what the strategy chose, JSON-ready (reports, replays).
      parent: the trial this one derives from, if any.
      start: ``fresh`` (initialise from the seed), ``inherit`` (start from
        `variables`, e.g. a function-preserving morph of the parent's
        weights) or ``continue`` (the parent's architecture and trained
        weights, trained on up to `epochs` in total: multi-fidelity).
      variables: the inherited weights for ``inherit``; never stored (a
        replay recomputes them from the parent's checkpoint).
      optimizer, schedule: a whole optimiser and learning-rate schedule
        (Manas's mined optimizer, e.g. Nesterov SGD with Keras's
        inverse-time decay); None takes the run's base settings.
        `learning_rate` and `weight_decay` still override theirs.
      finetune: multi-step fine-tuning of a pre-trained body (DREAM's
        fine-tuning actions; `variables` then holds the pre-trained
        weights); None takes the run's base setting.
    """

    trial: int
    arch: Arch
    learning_rate: float | None = None
    choices: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    weight_decay: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    parent: int | None = None
    start: str = FRESH
    variables: Any = dataclasses.field(default=None, compare=False, repr=False)
    optimizer: OptimizerConfig | None = None
    schedule: ScheduleConfig | None = None
    finetune: FineTuneConfig | None = None

    def __post_init__(self):
        if self.optimizer is not None and not isinstance(self.optimizer, OptimizerConfig):
            raise TypeError(f"trial {self.trial}: optimizer must be an OptimizerConfig, got {self.optimizer!r}")
        if self.schedule is not None and not isinstance(self.schedule, ScheduleConfig):
            raise TypeError(f"trial {self.trial}: schedule must be a ScheduleConfig, got {self.schedule!r}")
        if self.finetune is not None and not isinstance(self.finetune, FineTuneConfig):
            raise TypeError(f"trial {self.trial}: finetune must be a FineTuneConfig, got {self.finetune!r}")
        if self.start not in STARTS:
            raise ValueError(f"trial {self.trial}: start must be one of {STARTS}, got {self.start!r}")
        if self.start != FRESH and self.parent is None:
            raise ValueError(f"trial {self.trial}: start={self.start!r} needs a parent trial")
        if self.start == INHERIT and self.variables is None:
            raise ValueError(f"trial {self.trial}: start='inherit' needs the inherited variables")

    def hyperparameters(self) -> dict[str, Any]:
        """The JSON-ready training settings, as the trial store records them.

        `optimizer`, `schedule` and `finetune` appear only when set, so
        trials stored before they existed still replay.
        """
        out = {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
               "batch_size": self.batch_size, "epochs": self.epochs, "start": self.start,
               "choices": dict(self.choices)}
        if self.optimizer is not None:
            out["optimizer"] = dataclasses.asdict(self.optimizer)
        if self.schedule is not None:
            out["schedule"] = {k: list(v) if isinstance(v, tuple) else v
                               for k, v in dataclasses.asdict(self.schedule).items()}
        if self.finetune is not None:
            out["finetune"] = {k: list(v) if isinstance(v, tuple) else v
                               for k, v in dataclasses.asdict(self.finetune).items()}
        return out


def training_of(hyperparameters: Mapping[str, Any]) -> tuple[OptimizerConfig | None, ScheduleConfig | None]:
    """The (optimizer, schedule) a stored `Candidate.hyperparameters()` carries (None where absent)."""
    optimizer = hyperparameters.get("optimizer")
    schedule = hyperparameters.get("schedule")
    if schedule is not None:
        schedule = dict(schedule, drop_at=tuple(schedule.get("drop_at", ScheduleConfig().drop_at)))
    return (None if optimizer is None else OptimizerConfig(**optimizer),
            None if schedule is None else ScheduleConfig(**schedule))


def finetune_of(hyperparameters: Mapping[str, Any]) -> FineTuneConfig | None:
    """The fine-tuning a stored `Candidate.hyperparameters()` carries (None where absent)."""
    node = hyperparameters.get("finetune")
    return None if node is None else FineTuneConfig(**dict(node, body=tuple(node.get("body", ()))))


@dataclasses.dataclass(frozen=True)
class TrialResult:
    """What a strategy is told about one trained proposal.

    Attributes:
      trial: the proposal's trial index.
      status: ``done``, ``diverged`` or ``failed``.
      score: best validation score, higher is better (accuracy, or minus
        MSE); -inf unless done.
      error: what the objective penalises: 1 - accuracy, or validation MSE;
        inf unless done.
      t_tr: seconds per training epoch.
      num_params: trainable parameters.
      epochs: epochs trained in total (a continued trial counts its parent's).
      objective: Deep-n-Cheap's f, lower is better; inf unless done.
      variables: the trained weights, only for strategies that ask for them
        (`Strategy.needs_weights`); None otherwise.
      history, feedback: per-epoch rows as the trainer recorded them and the
        store keeps them (validation metrics; per-layer gradient norms,
        dead-ReLU fractions, non-finite flags): what a feedback-driven
        strategy (DREAM) reads. Empty for a failed trial.

    "No score" is one value everywhere in memory: score -inf
    (`nas.status.NO_SCORE`), error and objective +inf.
    """

    trial: int
    status: str
    score: float
    error: float
    t_tr: float
    num_params: int
    epochs: int
    objective: float
    variables: Any = dataclasses.field(default=None, compare=False, repr=False)
    history: tuple[dict, ...] = dataclasses.field(default=(), repr=False)
    feedback: tuple[dict, ...] = dataclasses.field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.status == DONE and math.isfinite(self.objective)


class Strategy(NamedTuple):
    """A search strategy as functions (see the module docstring).

    Attributes:
      name: the name `conf/search/<name>.yaml` selects.
      init, ask, tell, done: the contract.
      needs_weights: the engine passes trained variables in results (and
        checkpoints every trial so a resumed run can pass them again).
      space: the class of its space spec (a frozen dataclass): a config's
        ``search.space`` node builds one, so a config names only the
        strategy. None only for a strategy driven from Python, whose caller
        poses a space itself (e.g. a wrapper in a test).
    """

    name: str
    init: Callable[[Any, Any], Any]
    ask: Callable[[Any, int], tuple[Any, list[Candidate]]]
    tell: Callable[[Any, Sequence[TrialResult]], Any]
    done: Callable[[Any], bool]
    needs_weights: bool = False
    space: type | None = None


def seed_of(key) -> int:
    """An int seed from an int or a jax PRNG key (so states stay plain data)."""
    if isinstance(key, (int, np.integer)):
        return int(key)
    import jax

    return int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))


def never_done(state) -> bool:
    """The stop test of strategies that only budgets end."""
    return False


__all__ = ["CONTINUE", "Candidate", "FRESH", "INHERIT", "STARTS", "Strategy", "TrialResult", "finetune_of",
           "never_done", "seed_of", "training_of"]
