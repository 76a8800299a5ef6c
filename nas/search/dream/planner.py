"""DREAM's next move: the highest-priority untried action for the best model's condition.

Shared by ``search=dream`` (`nas.search.dream.search`) and the repair of
other strategies (`nas.search.dream.repair`); both keep the best trained
model as an `Incumbent` (its architecture, training settings and A-C-G-W
condition) and ask `plan` for the children to train next.

Lines 8-9 of the paper's Algorithm 1: rank every action of the action space
by the priority table under the incumbent's condition, drop the ones tried
from this incumbent already and the ones whose child was trained before (an
action can undo an earlier one: ``activation=relu`` after
``activation=selu``), and take the first that applies. An action that does
not apply is passed over; one that should apply but fails is recorded in
the child's ``skipped`` list with why, never a crash.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Mapping, Sequence

import jax

from nas.ir import Arch
from nas.search.dream.actions import ActionError, action_space, get_action
from nas.search.dream.conditions import (
    Condition, FeedbackError, Thresholds, classify, load_thresholds, parse_condition,
)
from nas.search.dream.finetune import Pretrained, load_pretrained, retransfer
from nas.search.dream.priorities import PriorityTable, resolve
from nas.train import TrainConfig

PRIORITY_CHOICES = "'shipped', 'random' or a priority file path"


@dataclasses.dataclass(frozen=True)
class DreamSettings:
    """The ``dream`` config group: thresholds, which priority table, which action space.

    Attributes:
      thresholds: what names a condition (None: `conf/dream/default.yaml`'s).
      priorities: ``shipped`` (conf/dream/priorities/shipped.json), ``random``
        (the s5.4 ablation, drawn from `random_seed`) or a priority file path.
      random_seed: which random table.
      action_space: ``expanded`` (Table 1 and AutoKeras's) or ``original``
        (AutoKeras's own hyperparameters only: the paper's Table 7 baseline).
      pretrained: a checkpoint directory this framework trained on another
        dataset, which the fine-tuning actions start from (None: they are
        skipped, the reason recorded).

    Raises:
      ValueError / PriorityTableError: naming the ``dream.<key>`` that is wrong,
        including a priority file measured with other thresholds.
    """

    thresholds: Thresholds | Mapping[str, Any] | None = None
    priorities: str = "shipped"
    random_seed: int = 0
    action_space: str = "expanded"
    pretrained: str | None = None

    def __post_init__(self):
        thresholds = self.thresholds
        if thresholds is None:
            thresholds = load_thresholds()
        elif not isinstance(thresholds, Thresholds):
            thresholds = Thresholds.from_config(thresholds, where="dream.thresholds")
        object.__setattr__(self, "thresholds", thresholds)
        if isinstance(self.random_seed, bool) or not isinstance(self.random_seed, int) or self.random_seed < 0:
            raise ValueError(f"dream.random_seed must be an integer >= 0, got {self.random_seed!r}")
        action_space(self.action_space)  # a clear error for an unknown name
        if self.pretrained is not None and not os.path.isdir(os.path.expanduser(str(self.pretrained))):
            raise ValueError(f"dream.pretrained: {self.pretrained} is not a checkpoint directory (give a run's "
                             "best/ or trials/<index>/ directory, or null)")
        self.table()  # a missing or mismatched priority file is refused before any training

    def table(self) -> PriorityTable:
        return _table(self.priorities, self.thresholds, self.random_seed)

    def pretrained_model(self) -> Pretrained | None:
        """The checkpoint the fine-tuning actions start from (read once per process), or None."""
        return None if self.pretrained is None else _pretrained(os.path.abspath(os.path.expanduser(self.pretrained)))

    def actions(self) -> tuple[str, ...]:
        return action_space(self.action_space)


@functools.lru_cache(maxsize=2)
def _pretrained(path: str) -> Pretrained:
    return load_pretrained(path)


@functools.lru_cache(maxsize=8)
def _table(choice: str, thresholds: Thresholds, random_seed: int) -> PriorityTable:
    return resolve(choice, thresholds, random_seed)


@dataclasses.dataclass(frozen=True)
class Incumbent:
    """The best model so far: what DREAM repairs and builds on.

    Attributes:
      trial, arch, settings, score, objective: the trained model (settings:
        the TrainConfig it trained with; objective lower is better).
      condition: its A-C-G-W condition name, or None when its feedback could
        not be read (`reason` says why; actions are then ranked pooled over
        every condition).
      normal: NC-NG-NW (nothing to repair).
      variables: its trained weights (host arrays) where the strategy keeps them.
    """

    trial: int
    arch: Arch
    settings: TrainConfig
    score: float
    objective: float
    condition: str | None
    normal: bool
    reason: str = ""
    variables: Any = dataclasses.field(default=None, compare=False, repr=False)


def incumbent_of(result: Any, arch: Arch, settings: TrainConfig, thresholds: Thresholds,
                 input_shape: Sequence[int], keep_weights: bool = False) -> Incumbent:
    """The record of a told, finished `TrialResult` with its condition read from its feedback."""
    try:
        condition: Condition | None = classify(arch, result.history, result.feedback, thresholds, input_shape)
        reason = ""
    except FeedbackError as exc:
        condition, reason = None, f"condition unknown: {exc}"
    variables = jax.device_get(result.variables) if keep_weights and result.variables is not None else None
    return Incumbent(result.trial, arch, settings, float(result.score), float(result.objective),
                     None if condition is None else condition.name,
                     condition is not None and condition.normal, reason, variables)


@dataclasses.dataclass(frozen=True)
class Move:
    """A planned child: the action, the child's (arch, settings) and the weights it starts from.

    Attributes:
      variables: None (train from scratch), the incumbent's weights morphed
        by a function-preserving action (`continues`), or weights copied from
        the pre-trained checkpoint (fine-tuning: a full training).
      continues: the child carries on the incumbent's training (train it
        for the shorter continuation budget).
    """

    action: str
    arch: Arch
    settings: TrainConfig
    priority: float
    level: str
    skipped: tuple[tuple[str, str], ...] = ()
    variables: Any = dataclasses.field(default=None, compare=False, repr=False)
    continues: bool = False

    def choices(self, incumbent: Incumbent) -> dict[str, Any]:
        """What the trial records: the action, why (condition, priority, level) and what was passed over."""
        out = {"action": self.action, "condition": incumbent.condition, "priority": self.priority,
               "priority_level": self.level, "from_trial": incumbent.trial}
        if incumbent.reason:
            out["condition_reason"] = incumbent.reason
        if self.skipped:
            out["skipped"] = [{"action": a, "reason": r} for a, r in self.skipped]
        return out


def fingerprint(arch: Arch, settings: TrainConfig) -> str:
    """What makes two trainings the same proposal (the seed aside)."""
    return f"{arch.structural_hash()}|{dataclasses.replace(settings, seed=0)!r}"


NO_CHECKPOINT = "no pre-trained checkpoint: set dream.pretrained to a model directory trained on another dataset"


def plan(incumbent: Incumbent, settings: DreamSettings, tried: Sequence[str], seen: Sequence[str], n: int,
         key: jax.Array, input_shape: Sequence[int], num_outputs: int, inherit: bool = False) -> list[Move]:
    """Up to `n` children of `incumbent`, by the priority table's ranking for its condition.

    Args:
      tried: actions already taken from this incumbent.
      seen: `fingerprint`s of every proposal so far (a child equal to one is passed over).
      input_shape, num_outputs: the problem's (a pre-trained model is re-posed on them).
      inherit: function-preserving actions start from the incumbent's
        weights (`incumbent.variables`); otherwise every child trains afresh.
        Fine-tuning children always start from the pre-trained checkpoint,
        and an architecture action on a transferred model copies what still
        matches the checkpoint into the child (`finetune.retransfer`).
    """
    condition = None if incumbent.condition is None else parse_condition(incumbent.condition)
    tried = set(tried)
    candidates = [a for a in settings.actions() if a not in tried]
    ranking = settings.table().rank(condition, candidates)
    pretrained = settings.pretrained_model()
    transferred = incumbent.settings.finetune.enabled
    seen, moves, skipped = set(seen), [], []
    for i, ranked in enumerate(ranking):
        if len(moves) >= n:
            break
        action, key_i = get_action(ranked.action), jax.random.fold_in(key, i)
        continues = False
        try:
            if action.needs_pretrained:
                if pretrained is None:
                    if action.object == "pretrained":
                        skipped.append((ranked.action, NO_CHECKPOINT))
                    continue  # the others apply only to a transferred model, which needs the checkpoint
                arch, child_settings, variables = action.from_pretrained(
                    incumbent.arch, incumbent.settings, pretrained, input_shape, num_outputs, key_i)
            elif inherit and action.function_preserving and incumbent.variables is not None and not transferred:
                arch, child_settings, variables = action.inherit(
                    incumbent.arch, incumbent.settings, incumbent.variables, key_i)
                continues = True
            else:
                (arch, child_settings), variables = action(incumbent.arch, incumbent.settings), None
                if child_settings.finetune.enabled and pretrained is not None:
                    child_settings, variables = retransfer(arch, child_settings, pretrained, key_i)
        except ActionError as exc:
            # Passed over silently when it does not apply; recorded when it should have (a morph or
            # a transfer that failed on this model).
            if (action.object == "pretrained" and "already in effect" not in str(exc)) \
                    or action.applicable(incumbent.arch, incumbent.settings):
                skipped.append((ranked.action, str(exc)))
            continue
        except Exception as exc:  # an action's own failure skips it, recorded, never ends the search
            skipped.append((ranked.action, f"{type(exc).__name__}: {exc}"))
            continue
        mark = fingerprint(arch, child_settings)
        if mark in seen:
            continue
        seen.add(mark)
        moves.append(Move(ranked.action, arch, child_settings, ranked.priority, ranked.level, tuple(skipped),
                          variables, continues))
        skipped = []
    return moves


__all__ = ["DreamSettings", "Incumbent", "Move", "NO_CHECKPOINT", "PRIORITY_CHOICES", "fingerprint", "incumbent_of", "plan"]
