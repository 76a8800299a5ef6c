"""Manas's training adaptation (ICSE'22 s4.1, s4.4): train a mined model with its mined optimizer.

A mined optimizer is a dict in Keras 2's words, e.g.
``{"type": "SGD", "lr": 0.01, "momentum": 0.9, "decay": 1e-6, "nesterov": True}``;
a missing argument takes Keras 2's default (tf.keras's for FTRL and AdamW,
which Keras 2 lacks) and ``None`` (no optimizer found) means the project's
default optimizer (the paper falls back to Auto-Keras's). The miner marks
what it could not evaluate as ``{"unresolved": "<source>"}``: an unresolved
argument is treated as missing (Keras's default, and listed in
`KerasOptimizer.unresolved`), an unresolved optimizer as no optimizer.

Two translations:

- `to_optax` builds the optax transformation that follows Keras's update
  rule step for step (`nas.train.keras_optimizers`), with ``clipnorm``
  clipping by the global norm and ``clipvalue`` element-wise, as Keras does.
- `to_train_config` maps the same dict onto the trainer's `OptimizerConfig`
  and `ScheduleConfig`, which can name every optimizer the miner recognises
  (SGD, Adam, RMSprop, Adagrad, Adadelta, Adamax, Nadam, FTRL, AdamW), and
  lists where the trainer's optimizer will differ from Keras's (optax's Adam
  and RMSprop place epsilon differently; clipping is not expressible).

Imports `nas.train` (its configs, `make_optimizer` for the default optimizer
and the Keras-exact transformations) and `nas.mining` (the argument names).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import optax

from nas.ir import Attrs
from nas.mining.errors import MiningError
from nas.mining.optimizers import RENAMED_ARGUMENTS
from nas.train.config import OptimizerConfig, ScheduleConfig
from nas.train.errors import TrainConfigError
from nas.train.keras_optimizers import KERAS_EPSILON, KERAS_OPTIMIZERS
from nas.train.optim import make_optimizer

# Keras 2's arguments and defaults, by lower-case optimizer name (tf.keras's for FTRL and AdamW).
KERAS_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": dict(learning_rate=0.01, momentum=0.0, nesterov=False, decay=0.0),
    "adam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPSILON, amsgrad=False, decay=0.0),
    "rmsprop": dict(learning_rate=0.001, rho=0.9, epsilon=KERAS_EPSILON, decay=0.0, momentum=0.0, centered=False),
    "adagrad": dict(learning_rate=0.01, epsilon=KERAS_EPSILON, decay=0.0, initial_accumulator_value=0.0),
    "adadelta": dict(learning_rate=1.0, rho=0.95, epsilon=KERAS_EPSILON, decay=0.0),
    "adamax": dict(learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPSILON, decay=0.0),
    "nadam": dict(learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPSILON, schedule_decay=0.004,
                  decay=0.0),
    "ftrl": dict(learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 l2_shrinkage_regularization_strength=0.0, beta=0.0, decay=0.0),
    "adamw": dict(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPSILON,
                  amsgrad=False, decay=0.0),
}
_COMMON = dict(clipnorm=None, clipvalue=None)
_FLAGS = ("nesterov", "amsgrad", "centered")
_NON_POSITIVE = ("learning_rate_power",)  # FTRL's: 0 keeps the rate fixed, below 0 decreases it
_IGNORED = ("name",)


class OptimizerTranslationError(MiningError, ValueError):
    """A mined optimizer dict names an unknown optimizer or argument, or a bad value."""


@dataclasses.dataclass(frozen=True)
class KerasOptimizer:
    """A mined optimizer with Keras 2's defaults filled in.

    Attributes:
      name: lower-case Keras class name (a key of `KERAS_DEFAULTS`: ``sgd``,
        ``adam``, ``rmsprop``, ``adagrad``, ``adadelta``, ``adamax``,
        ``nadam``, ``ftrl``, ``adamw``).
      arguments: every argument of that optimizer (Keras's names, ``lr`` as
        ``learning_rate``), plus ``clipnorm`` and ``clipvalue`` (None: off).
      unresolved: arguments the miner could not evaluate, which therefore
        hold Keras's defaults.
    """

    name: str
    arguments: Attrs
    unresolved: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return self.arguments[key]


def parse_keras_optimizer(mined: Mapping[str, Any] | None) -> KerasOptimizer | None:
    """Reads a mined optimizer dict; None (or an unresolved optimizer) gives None.

    Raises:
      OptimizerTranslationError: unknown ``type`` or argument, or a value of
        the wrong kind (the message names it).
    """
    if mined is None or _is_unresolved(mined):
        return None
    if not isinstance(mined, Mapping) or "type" not in mined:
        raise OptimizerTranslationError(f"a mined optimizer is a dict with a 'type', got {mined!r}")
    name = str(mined["type"]).lower()
    if name not in KERAS_DEFAULTS:
        raise OptimizerTranslationError(
            f"unknown optimizer type {mined['type']!r}; known: {sorted(KERAS_DEFAULTS)} (any case)")
    allowed = dict(KERAS_DEFAULTS[name], **_COMMON)
    arguments = dict(allowed)
    given: dict[str, str] = {}
    unresolved = []
    for raw_key, value in mined.items():
        if raw_key == "type" or raw_key in _IGNORED:
            continue
        key = RENAMED_ARGUMENTS.get(raw_key, raw_key)
        if key not in allowed:
            raise OptimizerTranslationError(
                f"{mined['type']}: unknown argument {raw_key!r}; {mined['type']} takes "
                f"{sorted(set(allowed) | set(RENAMED_ARGUMENTS))}")
        if key in given:
            raise OptimizerTranslationError(f"{mined['type']}: both {given[key]!r} and {raw_key!r} are given")
        given[key] = raw_key
        if _is_unresolved(value):
            unresolved.append(key)
        else:
            arguments[key] = _checked(mined["type"], raw_key, key, value)
    return KerasOptimizer(name, Attrs(arguments), tuple(unresolved))


def _is_unresolved(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"unresolved"}


def _checked(kind: Any, raw_key: str, key: str, value: Any) -> Any:
    if key in _FLAGS:
        if not isinstance(value, bool):
            raise OptimizerTranslationError(f"{kind}: {raw_key!r} must be True or False, got {value!r}")
        return value
    if value is None and key in ("epsilon", "clipnorm", "clipvalue"):
        return KERAS_EPSILON if key == "epsilon" else None  # Keras: epsilon=None means K.epsilon()
    non_positive = key in _NON_POSITIVE
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or (value > 0 if non_positive else value < 0)):
        expected = "a number <= 0" if non_positive else "a non-negative number"
        raise OptimizerTranslationError(f"{kind}: {raw_key!r} must be {expected}, got {value!r}")
    return float(value)


def to_optax(mined: Mapping[str, Any] | None) -> optax.GradientTransformation:
    """The optax transformation that trains exactly as the mined Keras optimizer did.

    Args:
      mined: a mined optimizer dict (Keras 2 names; missing arguments take
        Keras's defaults), or None for the project's default optimizer
        (`OptimizerConfig()` with a constant schedule).
    Returns:
      A `GradientTransformation`; apply its updates with `optax.apply_updates`.
    """
    parsed = parse_keras_optimizer(mined)
    if parsed is None:
        return make_optimizer(OptimizerConfig(), ScheduleConfig(), total_steps=1)
    arguments = dict(parsed.arguments)
    clipnorm, clipvalue = arguments.pop("clipnorm"), arguments.pop("clipvalue")
    core = KERAS_OPTIMIZERS[parsed.name](**arguments)
    # Keras 2 clips the gradients before the optimizer sees them: global norm, then value.
    clips = ([optax.clip_by_global_norm(clipnorm)] if clipnorm else []) + (
        [optax.clip(clipvalue)] if clipvalue else [])
    return optax.chain(*clips, core) if clips else core


@dataclasses.dataclass(frozen=True)
class TrainerOptimizer:
    """A mined optimizer as the trainer's configs, and how far they are from Keras.

    Attributes:
      optimizer, schedule: what `nas.train.make_optimizer` consumes.
      differences: each way the trainer's optimizer departs from Keras's
        update rule for this dict (empty: it trains exactly as Keras would).
    """

    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    differences: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        return not self.differences


def to_train_config(mined: Mapping[str, Any] | None) -> TrainerOptimizer:
    """The trainer's `OptimizerConfig`/`ScheduleConfig` for a mined optimizer.

    Every optimizer the miner recognises has a trainer config with the mined
    hyperparameters. Adagrad, Adadelta, Adamax, Nadam, FTRL and centred
    RMSprop train by Keras's exact rule; optax's Adam, AMSGrad, RMSprop and
    momentum-with-decay differ in detail from Keras's, and clipping is not
    expressible: each such difference is listed. Use `to_optax` where the
    exact Keras behaviour matters everywhere.

    Raises:
      OptimizerTranslationError: the dict is malformed (`parse_keras_optimizer`)
        or holds a value the trainer refuses (`nas.train.TrainConfigError`).
    """
    parsed = parse_keras_optimizer(mined)
    if parsed is None:
        notes = () if mined is None else (f"the miner could not resolve the optimizer {mined['unresolved']!r}; "
                                           "the project's default optimizer is used",)
        return TrainerOptimizer(OptimizerConfig(), ScheduleConfig(), notes)
    try:
        return _trainer_optimizer(parsed)
    except TrainConfigError as exc:  # a value Keras takes but the trainer refuses (momentum 1.0, epsilon 0)
        raise OptimizerTranslationError(f"{mined['type']}: the trainer cannot take it: {exc}") from None


def _trainer_optimizer(parsed: KerasOptimizer) -> TrainerOptimizer:
    a, name = parsed.arguments, parsed.name
    notes: list[str] = []
    if parsed.unresolved:
        notes.append(f"unresolved argument(s) {list(parsed.unresolved)} take Keras's defaults")
    decay = a["decay"]
    schedule = ScheduleConfig("inverse_time", decay=decay) if decay else ScheduleConfig()
    lr, eps = a["learning_rate"], a.get("epsilon", KERAS_EPSILON)
    if name == "sgd":
        optimizer = OptimizerConfig("sgd", lr, momentum=a["momentum"], nesterov=a["nesterov"])
        if decay and a["momentum"]:
            notes.append("the schedule scales the whole momentum trace, Keras only each new gradient")
    elif name in ("adam", "adamw"):
        optimizer = OptimizerConfig(name, lr, weight_decay=a.get("weight_decay", 0.0), b1=a["beta_1"],
                                    b2=a["beta_2"], eps=eps, amsgrad=a["amsgrad"])
        notes.append("optax adds epsilon to the bias-corrected sqrt(v), Keras to the uncorrected one")
        if a["amsgrad"]:
            notes.append("optax's AMSGrad keeps the maximum of the bias-corrected v, Keras of the uncorrected v")
    elif name == "rmsprop":
        optimizer = OptimizerConfig("rmsprop", lr, momentum=a["momentum"], rho=a["rho"], eps=eps,
                                    centered=a["centered"])
        if a["momentum"] and decay:
            notes.append("the schedule scales the whole momentum trace, Keras only each new step")
        elif not a["momentum"] and not a["centered"]:
            notes.append("optax's rmsprop adds epsilon inside the square root, Keras outside")
    elif name == "adagrad":
        optimizer = OptimizerConfig("adagrad", lr, eps=eps, initial_accumulator_value=a["initial_accumulator_value"])
    elif name == "adadelta":
        optimizer = OptimizerConfig("adadelta", lr, rho=a["rho"], eps=eps)
    elif name == "adamax":
        optimizer = OptimizerConfig("adamax", lr, b1=a["beta_1"], b2=a["beta_2"], eps=eps)
    elif name == "nadam":
        optimizer = OptimizerConfig("nadam", lr, b1=a["beta_1"], b2=a["beta_2"], eps=eps,
                                    schedule_decay=a["schedule_decay"])
    elif name == "ftrl":
        optimizer = OptimizerConfig(
            "ftrl", lr, initial_accumulator_value=a["initial_accumulator_value"], lr_power=a["learning_rate_power"],
            l1=a["l1_regularization_strength"], l2=a["l2_regularization_strength"],
            l2_shrinkage=a["l2_shrinkage_regularization_strength"], beta=a["beta"])
    else:  # a KERAS_DEFAULTS entry without a branch here
        raise OptimizerTranslationError(f"{name}: no trainer config is defined for it")
    if a["clipnorm"] or a["clipvalue"]:
        notes.append("gradient clipping (clipnorm/clipvalue) is not expressible; trained unclipped")
    return TrainerOptimizer(optimizer, schedule, tuple(notes))
