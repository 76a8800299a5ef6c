"""Typed training settings; entry points build these from Hydra configs.

Every spec checks its fields when it is built (and again on
`dataclasses.replace`), so a bad value fails at composition time with the
setting's config path (``train.epochs``, ``optimizer.learning_rate``), what it
accepts and what it got, instead of as a TypeError deep in the trainer or a
model that silently did not train. Integers are accepted where a float
belongs (and stored as floats); a bool is never a number; numpy scalars are
stored as Python numbers.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Literal, get_args

from nas.train.errors import TrainConfigError

# sgd, adam, adamw and rmsprop are optax's; the others (and centred rmsprop) follow Keras's rules exactly.
OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl"]
ScheduleName = Literal["constant", "step", "cosine", "inverse_time"]

# jax.random.PRNGKey keeps 32 bits of the seed without x64: 2**32 would train
# exactly as seed 0 and -1 as 2**32 - 1, so seeds outside this range alias others.
SEED_LIMIT = 2**32
GiB = 2**30


# ------------------------------------------------------------------ field checks
def _integer(key: str, value: Any, low: int, high: int | None = None) -> int:
    expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high})"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TrainConfigError(key, value, expected)
    if value < low or (high is not None and value >= high):
        raise TrainConfigError(key, value, expected)
    return int(value)


def _optional_integer(key: str, value: Any, low: int, meaning_of_none: str) -> int | None:
    if value is None:
        return None
    try:
        return _integer(key, value, low)
    except TrainConfigError:
        raise TrainConfigError(key, value, f"null ({meaning_of_none}) or an integer >= {low}") from None


def _number(key: str, value: Any, expected: str, accept) -> float:
    """A finite real number (int or float, not bool) for which `accept(value)` holds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TrainConfigError(key, value, expected)
    number = float(value)
    if not math.isfinite(number) or not accept(number):
        raise TrainConfigError(key, value, expected)
    return number


def _non_negative(key: str, value: Any) -> float:
    return _number(key, value, "a finite number >= 0", lambda v: v >= 0)


def _positive(key: str, value: Any) -> float:
    return _number(key, value, "a finite number > 0", lambda v: v > 0)


def _fraction(key: str, value: Any) -> float:
    """A decay rate in [0, 1): 1 would never forget (a momentum or average that never moves)."""
    return _number(key, value, "a number in [0, 1)", lambda v: 0 <= v < 1)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TrainConfigError(key, value, "true or false")
    return value


def _name(key: str, value: Any, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise TrainConfigError(key, value, f"one of {list(options)}")
    return value


def _set(spec: Any, **values: Any) -> None:
    """Stores normalised values on a frozen dataclass (from __post_init__)."""
    for name, value in values.items():
        object.__setattr__(spec, name, value)


# ------------------------------------------------------------------ specs
@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """An optax optimiser.

    ``sgd``, ``adam``, ``adamw`` and ``rmsprop`` are optax's own; ``adagrad``,
    ``adadelta``, ``adamax``, ``nadam``, ``ftrl`` and ``rmsprop`` with
    `centered` follow Keras's update rules step for step
    (`nas.train.keras_optimizers`), so every optimizer a mined Keras model
    was compiled with trains as its author wrote it. Each field names the
    optimizers it applies to; the others ignore it.

    `learning_rate` and `weight_decay` may differ between the members of a
    population (they live in the optimiser state); everything else is shared.
    Weight decay is decoupled for adamw and an L2 term for the others.

    A learning rate of 0 is allowed (a frozen-weights probe: the model is
    evaluated but never moves, e.g. to test early stopping); a negative one,
    gradient ascent, is refused.

    Raises:
      TrainConfigError: a field of the wrong type or out of range, named by its
        config path (``optimizer.<field>``).
    """

    name: OptimizerName = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd, rmsprop
    nesterov: bool = False  # sgd
    b1: float = 0.9  # adam, adamw, adamax, nadam
    b2: float = 0.999
    eps: float = 1e-7  # Keras's epsilon, so mined optimisers behave as written
    rho: float = 0.9  # rmsprop's and adadelta's decay (Keras's adadelta default is 0.95)
    amsgrad: bool = False  # adam, adamw
    centered: bool = False  # rmsprop: subtract the squared mean gradient (Keras's rule)
    schedule_decay: float = 0.004  # nadam's momentum schedule
    initial_accumulator_value: float = 0.1  # adagrad, ftrl
    lr_power: float = -0.5  # ftrl's learning_rate_power: 0 keeps the per-weight rate fixed
    l1: float = 0.0  # ftrl's l1/l2_regularization_strength
    l2: float = 0.0
    l2_shrinkage: float = 0.0  # ftrl's l2_shrinkage_regularization_strength
    beta: float = 0.0  # ftrl

    def __post_init__(self):
        key = "optimizer."
        _set(
            self,
            name=_name(key + "name", self.name, get_args(OptimizerName)),
            learning_rate=_non_negative(key + "learning_rate", self.learning_rate),
            weight_decay=_non_negative(key + "weight_decay", self.weight_decay),
            momentum=_fraction(key + "momentum", self.momentum),
            nesterov=_flag(key + "nesterov", self.nesterov),
            b1=_fraction(key + "b1", self.b1),
            b2=_fraction(key + "b2", self.b2),
            # eps keeps Adam's and RMSprop's division finite where a gradient is exactly 0.
            eps=_positive(key + "eps", self.eps),
            rho=_fraction(key + "rho", self.rho),
            amsgrad=_flag(key + "amsgrad", self.amsgrad),
            centered=_flag(key + "centered", self.centered),
            schedule_decay=_non_negative(key + "schedule_decay", self.schedule_decay),
            initial_accumulator_value=_non_negative(key + "initial_accumulator_value",
                                                    self.initial_accumulator_value),
            # Keras refuses a positive power: the per-weight rate would grow with the squared gradients.
            lr_power=_number(key + "lr_power", self.lr_power, "a finite number <= 0", lambda v: v <= 0),
            l1=_non_negative(key + "l1", self.l1),
            l2=_non_negative(key + "l2", self.l2),
            l2_shrinkage=_non_negative(key + "l2_shrinkage", self.l2_shrinkage),
            beta=_non_negative(key + "beta", self.beta),
        )


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """A multiplier on the learning rate over the whole run.

    ``step``: multiply by `drop_factor` at each fraction of training in
    `drop_at` (Deep-n-Cheap: 80% drops, factor 0.2, at 1/2 and 3/4).
    ``cosine``: cosine decay to zero. ``inverse_time``: Keras's legacy
    ``decay`` argument, lr / (1 + decay * step).

    Raises:
      TrainConfigError: a field of the wrong type or out of range, named by its
        config path (``schedule.<field>``): `drop_at` must be strictly
        increasing fractions in (0, 1) (two equal fractions would drop once,
        not twice), `drop_factor` in (0, 1], `decay` >= 0.
    """

    name: ScheduleName = "constant"
    drop_at: tuple[float, ...] = (0.5, 0.75)
    drop_factor: float = 0.2
    decay: float = 0.0

    def __post_init__(self):
        key = "schedule."
        drop_at = self.drop_at
        expected = "a list of increasing fractions in (0, 1), e.g. [0.5, 0.75]"
        if isinstance(drop_at, (str, bytes)) or not isinstance(drop_at, (list, tuple)):
            raise TrainConfigError(key + "drop_at", drop_at, expected)
        try:
            fractions = tuple(_number(key + "drop_at", f, expected, lambda v: 0 < v < 1) for f in drop_at)
        except TrainConfigError:
            raise TrainConfigError(key + "drop_at", drop_at, expected) from None  # the whole list, as written
        if any(b <= a for a, b in zip(fractions, fractions[1:])):
            raise TrainConfigError(key + "drop_at", drop_at, expected)
        _set(
            self,
            name=_name(key + "name", self.name, get_args(ScheduleName)),
            drop_at=fractions,
            drop_factor=_number(key + "drop_factor", self.drop_factor, "a number in (0, 1]", lambda v: 0 < v <= 1),
            decay=_non_negative(key + "decay", self.decay),
        )


@dataclasses.dataclass(frozen=True)
class SizeLimits:
    """What the trainer refuses to compile: models too large for memory.

    Checked against the IR's shape inference before anything is compiled or
    initialised (`nas.train.size.check_size`), so a 10^9-unit layer fails in
    microseconds with the numbers instead of exhausting the machine.

    Attributes:
      max_params: trainable parameters of one model (None: no limit). The
        default, 2e8, is about 7 times the largest model a shipped search
        config builds (dnc_cnn's deepest, widest CNN on Fashion-MNIST: 3.0e7)
        and 0.8 GB of float32 before gradients and optimiser state.
      max_bytes: estimated bytes of one training program (`estimate_size`):
        every member's parameters, gradients, optimiser state and the
        trainer's copies, plus one training or evaluation batch of
        activations (None: no limit). The default, 16 GiB, admits the
        largest program a shipped config reaches (dnc_cnn's most complex CNN
        at its largest batch, 512, on Fashion-MNIST: 12.7 GiB estimated, the
        estimate erring 10-25% high) and refuses absurd sizes (a 10^9-unit
        layer: hundreds of GiB) before they exhaust a machine. A fixed
        number, not the machine's memory, so a search refuses the same
        candidates on every machine and its results reproduce; lower it on a
        small machine, raise it on a large one.
    """

    max_params: int | None = 200_000_000
    max_bytes: int | None = 16 * GiB

    def __post_init__(self):
        _set(
            self,
            max_params=_optional_integer("limits.max_params", self.max_params, 1, "no limit"),
            max_bytes=_optional_integer("limits.max_bytes", self.max_bytes, 1, "no limit"),
        )


FreezeName = Literal["no", "all", "bn"]


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """Multi-step fine-tuning of a pre-trained body (DREAM's Table 1, rows 6-10; `nas.train.finetune`).

    The default (an empty `body`) is no fine-tuning: the trainer builds
    exactly the program it builds without this spec.

    Attributes:
      body: node ids of the pre-trained body, in topological order (what
        `nas.search.dream.finetune.transfer` copied from a checkpoint);
        every other node with weights is the new head and always trains.
        Ids that are not in the trained architecture are ignored.
      steps: 1, 2 or 3 training steps. 1: `freeze` throughout. 2: step 1
        trains the head with the body frozen, step 2 thaws the body per
        `freeze`. 3: step 1 the head only; step 2 also the later half of
        the body's weight layers; step 3 the body per `freeze`.
      step_fraction: the fraction of the run's optimiser steps each earlier
        step takes, in (0, 0.5]; the last step takes the rest, which must be
        some: (steps - 1) * step_fraction < 1.
      step_lr: learning-rate multiplier per later step, in (0, 1]: step k
        trains at lr * step_lr ** (k - 1).
      freeze: what of the body stays frozen in the last step: ``no``
        (nothing), ``all`` (the whole body) or ``bn`` (its BatchNorm nodes).

    Raises:
      TrainConfigError: a field of the wrong type or out of range, named by
        its config path (``train.finetune.<field>``).
    """

    body: tuple[str, ...] = ()
    steps: int = 1
    step_fraction: float = 0.2
    step_lr: float = 1.0
    freeze: FreezeName = "no"

    def __post_init__(self):
        key = "train.finetune."
        body = self.body
        if isinstance(body, (str, bytes)) or not isinstance(body, (list, tuple)) \
                or not all(isinstance(b, str) and b for b in body) or len(set(body)) != len(body):
            raise TrainConfigError(key + "body", body, "a list of distinct node ids (strings)")
        steps = _integer(key + "steps", self.steps, 1, 4)
        fraction = _number(key + "step_fraction", self.step_fraction, "a number in (0, 0.5]",
                           lambda v: 0 < v <= 0.5)
        if (steps - 1) * fraction >= 1:
            raise TrainConfigError(key + "step_fraction", self.step_fraction,
                                   f"below {1 / (steps - 1):g} with {steps} steps (the last step needs some epochs)")
        _set(
            self,
            body=tuple(body),
            steps=steps,
            step_fraction=fraction,
            step_lr=_number(key + "step_lr", self.step_lr, "a number in (0, 1]", lambda v: 0 < v <= 1),
            freeze=_name(key + "freeze", self.freeze, get_args(FreezeName)),
        )

    @property
    def enabled(self) -> bool:
        """Whether this is a fine-tuning run (a pre-trained body is named)."""
        return bool(self.body)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
      epochs: maximum epochs (>= 1: a run of zero epochs trains nothing).
      batch_size: examples per step (>= 1); the last partial batch of each
        shuffled epoch is dropped so every step has one static shape.
      patience: stop after this many epochs without a better validation
        score (None: never stop early; else >= 1).
      seed: initialisation, shuffling and dropout all derive from it; in
        [0, 2**32) (JAX keeps 32 bits of it).
      eval_batch_size: batch size for validation/test passes (>= 1).
      limits: the size guard's limits (`SizeLimits`).
      feedback: collect DREAM's per-epoch feedback (per-layer gradient
        norms, the fraction of ReLU units with zero gradient); False
        leaves those empty and keeps only the non-finite checks, which
        divergence needs. ``benchmarks/feedback_cost.py`` measures the cost.
      finetune: multi-step fine-tuning of a pre-trained body
        (`FineTuneConfig`); the default trains every weight as before.

    Raises:
      TrainConfigError: a field of the wrong type or out of range, named by its
        config path (``train.<field>``).
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    patience: int | None = None
    seed: int = 0
    eval_batch_size: int = 1000
    limits: SizeLimits = SizeLimits()
    feedback: bool = True
    finetune: FineTuneConfig = FineTuneConfig()

    def __post_init__(self):
        key = "train."
        if not isinstance(self.finetune, FineTuneConfig):
            raise TrainConfigError(key + "finetune", self.finetune, "of type FineTuneConfig")
        for name, cls in (("optimizer", OptimizerConfig), ("schedule", ScheduleConfig), ("limits", SizeLimits)):
            if not isinstance(getattr(self, name), cls):
                # Their own config groups (optimizer=..., schedule=..., limits=...).
                raise TrainConfigError(name, getattr(self, name), f"of type {cls.__name__}")
        _set(
            self,
            epochs=_integer(key + "epochs", self.epochs, 1),
            batch_size=_integer(key + "batch_size", self.batch_size, 1),
            patience=_optional_integer(key + "patience", self.patience, 1, "never stop early"),
            seed=_integer(key + "seed", self.seed, 0, SEED_LIMIT),
            eval_batch_size=_integer(key + "eval_batch_size", self.eval_batch_size, 1),
            feedback=_flag(key + "feedback", self.feedback),
        )

    def shared_part(self) -> tuple:
        """What members of one population must have in common."""
        opt = dataclasses.replace(self.optimizer, learning_rate=0.0, weight_decay=0.0)
        return (self.epochs, self.batch_size, opt, self.schedule, self.patience, self.eval_batch_size, self.limits,
                self.feedback, self.finetune)
