"""Typed training settings; entry points build these from Hydra configs."""

from __future__ import annotations

import dataclasses
from typing import Literal

OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop"]
ScheduleName = Literal["constant", "step", "cosine", "inverse_time"]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """An optax optimiser.

    `learning_rate` and `weight_decay` may differ between the members of a
    population (they live in the optimiser state); everything else is shared.
    Weight decay is decoupled for adamw and an L2 term for the others.
    """

    name: OptimizerName = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd, rmsprop
    nesterov: bool = False  # sgd
    b1: float = 0.9  # adam, adamw
    b2: float = 0.999
    eps: float = 1e-7  # Keras's epsilon, so mined optimisers behave as written
    rho: float = 0.9  # rmsprop's decay
    amsgrad: bool = False


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """A multiplier on the learning rate over the whole run.

    ``step``: multiply by `drop_factor` at each fraction of training in
    `drop_at` (Deep-n-Cheap: 80% drops, factor 0.2, at 1/2 and 3/4).
    ``cosine``: cosine decay to zero. ``inverse_time``: Keras's legacy
    ``decay`` argument, lr / (1 + decay * step).
    """

    name: ScheduleName = "constant"
    drop_at: tuple[float, ...] = (0.5, 0.75)
    drop_factor: float = 0.2
    decay: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
      epochs: maximum epochs.
      batch_size: examples per step; the last partial batch of each shuffled
        epoch is dropped so every step has one static shape.
      patience: stop after this many epochs without a better validation
        score (None: never stop early).
      seed: initialisation, shuffling and dropout all derive from it.
      eval_batch_size: batch size for validation/test passes.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    patience: int | None = None
    seed: int = 0
    eval_batch_size: int = 1000

    def shared_part(self) -> tuple:
        """What members of one population must have in common."""
        opt = dataclasses.replace(self.optimizer, learning_rate=0.0, weight_decay=0.0)
        return (self.epochs, self.batch_size, opt, self.schedule, self.patience, self.eval_batch_size)
