"""Manas's training adaptation (ICSE'22 s4.1, s4.4): train a mined model with its mined optimizer.

A mined optimizer is a dict in Keras 2's words, e.g.
``{"type": "SGD", "lr": 0.01, "momentum": 0.9, "decay": 1e-6, "nesterov": True}``;
a missing argument takes Keras 2's default and ``None`` (no optimizer found)
means the project's default optimizer (the paper falls back to Auto-Keras's).
The miner marks what it could not evaluate as ``{"unresolved": "<source>"}``:
an unresolved argument is treated as missing (Keras's default, and listed in
`KerasOptimizer.unresolved`), an unresolved optimizer as no optimizer.

Two translations:

- `to_optax` builds optax transformations that follow Keras 2's update rules
  step for step (the ``keras_*`` functions below): ``decay`` is Keras's
  inverse-time decay ``lr_t = lr / (1 + decay * iterations)`` with
  ``iterations = 0`` at the first step; momentum accumulates ``lr_t * g`` (so the
  decay applies to new gradients only); Adam folds its bias corrections into
  the step size, so epsilon is added to the uncorrected ``sqrt(v)``; AMSGrad
  keeps the maximum of the uncorrected ``v``; RMSprop adds epsilon outside the
  square root; Nadam follows Keras's momentum schedule. ``clipnorm`` clips by
  the global norm and ``clipvalue`` element-wise, as Keras 2 does.
- `to_train_config` maps the same dict onto the trainer's `OptimizerConfig`
  and `ScheduleConfig` as closely as they can express it, and lists where the
  trainer's optax optimizer will differ from Keras.

Imports `nas.train.config` and `nas.train.optim` (the default optimizer).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nas.ir import Attrs
from nas.mining.errors import MiningError
from nas.train.config import OptimizerConfig, ScheduleConfig
from nas.train.optim import make_optimizer

KERAS_EPSILON = 1e-7  # keras.backend.epsilon(), every optimizer's epsilon=None
# Keras 2's arguments and defaults, by lower-case optimizer name.
KERAS_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": dict(learning_rate=0.01, momentum=0.0, nesterov=False, decay=0.0),
    "adam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPSILON, amsgrad=False, decay=0.0),
    "rmsprop": dict(learning_rate=0.001, rho=0.9, epsilon=KERAS_EPSILON, decay=0.0, momentum=0.0, centered=False),
    "adagrad": dict(learning_rate=0.01, epsilon=KERAS_EPSILON, decay=0.0, initial_accumulator_value=0.0),
    "adadelta": dict(learning_rate=1.0, rho=0.95, epsilon=KERAS_EPSILON, decay=0.0),
    "adamax": dict(learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPSILON, decay=0.0),
    "nadam": dict(learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPSILON, schedule_decay=0.004,
                  decay=0.0),
}
_COMMON = dict(clipnorm=None, clipvalue=None)
_FLAGS = ("nesterov", "amsgrad", "centered")
_ALIASES = {"lr": "learning_rate"}  # Keras 2.0-2.2's name; 2.3 accepts both
_IGNORED = ("name",)


class OptimizerTranslationError(MiningError, ValueError):
    """A mined optimizer dict names an unknown optimizer or argument, or a bad value."""


@dataclasses.dataclass(frozen=True)
class KerasOptimizer:
    """A mined optimizer with Keras 2's defaults filled in.

    Attributes:
      name: lower-case Keras class name (``sgd``, ``adam``, ``rmsprop``,
        ``adagrad``, ``adadelta``, ``adamax``, ``nadam``).
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
        key = _ALIASES.get(raw_key, raw_key)
        if key not in allowed:
            raise OptimizerTranslationError(
                f"{mined['type']}: unknown argument {raw_key!r}; {mined['type']} takes "
                f"{sorted(set(allowed) | {'lr'})}")
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise OptimizerTranslationError(f"{kind}: {raw_key!r} must be a non-negative number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------- Keras's update rules
def inverse_time_decay(learning_rate: float, decay: float) -> optax.Schedule:
    """Keras's legacy ``decay``: ``lr / (1 + decay * step)``, step 0 first."""
    return lambda step: learning_rate / (1.0 + decay * step)


class KerasAdamState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates  # AMSGrad's running maximum of nu (zeros otherwise)


def scale_by_keras_adam(beta_1: float, beta_2: float, epsilon: float, amsgrad: bool) -> optax.GradientTransformation:
    """Keras 2's Adam direction ``sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)`` (AMSGrad: max of v)."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return KerasAdamState(jnp.zeros([], jnp.int32), zeros, zeros, zeros)

    def update(updates, state, params=None):
        del params
        t = state.count + 1
        mu = jax.tree.map(lambda m, g: beta_1 * m + (1 - beta_1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: beta_2 * v + (1 - beta_2) * g * g, state.nu, updates)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsgrad else state.nu_max
        correction = jnp.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        out = jax.tree.map(lambda m, v: correction * m / (jnp.sqrt(v) + epsilon), mu, nu_max if amsgrad else nu)
        return out, KerasAdamState(t, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


class KerasRMSState(NamedTuple):
    mean_square: optax.Updates
    mean_grad: optax.Updates  # centered only (zeros otherwise)


def scale_by_keras_rms(rho: float, epsilon: float, centered: bool, eps_in_sqrt: bool) -> optax.GradientTransformation:
    """RMSprop's direction ``g / (sqrt(ms [- mg^2]) + eps)``; TF's momentum path puts eps inside the root."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return KerasRMSState(zeros, zeros)

    def update(updates, state, params=None):
        del params
        ms = jax.tree.map(lambda a, g: rho * a + (1 - rho) * g * g, state.mean_square, updates)
        mg = (jax.tree.map(lambda a, g: rho * a + (1 - rho) * g, state.mean_grad, updates) if centered
              else state.mean_grad)
        denom = jax.tree.map(lambda a, b: a - b * b, ms, mg) if centered else ms
        if eps_in_sqrt:
            out = jax.tree.map(lambda g, d: g / jnp.sqrt(d + epsilon), updates, denom)
        else:
            out = jax.tree.map(lambda g, d: g / (jnp.sqrt(d) + epsilon), updates, denom)
        return out, KerasRMSState(ms, mg)

    return optax.GradientTransformation(init, update)


class KerasAdagradState(NamedTuple):
    accumulator: optax.Updates


def scale_by_keras_adagrad(epsilon: float, initial_accumulator_value: float) -> optax.GradientTransformation:
    """Adagrad's direction ``g / (sqrt(a) + eps)`` with ``a`` the running sum of ``g^2`` (a first)."""

    def init(params):
        return KerasAdagradState(jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update(updates, state, params=None):
        del params
        acc = jax.tree.map(lambda a, g: a + g * g, state.accumulator, updates)
        return jax.tree.map(lambda g, a: g / (jnp.sqrt(a) + epsilon), updates, acc), KerasAdagradState(acc)

    return optax.GradientTransformation(init, update)


class KerasAdadeltaState(NamedTuple):
    accumulator: optax.Updates
    delta_accumulator: optax.Updates


def scale_by_keras_adadelta(rho: float, epsilon: float) -> optax.GradientTransformation:
    """Adadelta's step ``g sqrt(d + eps) / sqrt(a + eps)`` (Keras keeps the lr factor, default 1)."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return KerasAdadeltaState(zeros, zeros)

    def update(updates, state, params=None):
        del params
        acc = jax.tree.map(lambda a, g: rho * a + (1 - rho) * g * g, state.accumulator, updates)
        step = jax.tree.map(lambda g, a, d: g * jnp.sqrt(d + epsilon) / jnp.sqrt(a + epsilon),
                            updates, acc, state.delta_accumulator)
        delta = jax.tree.map(lambda d, s: rho * d + (1 - rho) * s * s, state.delta_accumulator, step)
        return step, KerasAdadeltaState(acc, delta)

    return optax.GradientTransformation(init, update)


class KerasAdamaxState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    u: optax.Updates


def scale_by_keras_adamax(beta_1: float, beta_2: float, epsilon: float) -> optax.GradientTransformation:
    """Adamax's direction ``m / (u + eps) / (1 - b1^t)`` with ``u = max(b2 u, |g|)``."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return KerasAdamaxState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(updates, state, params=None):
        del params
        t = state.count + 1
        mu = jax.tree.map(lambda m, g: beta_1 * m + (1 - beta_1) * g, state.mu, updates)
        u = jax.tree.map(lambda u, g: jnp.maximum(beta_2 * u, jnp.abs(g)), state.u, updates)
        out = jax.tree.map(lambda m, v: m / (v + epsilon) / (1 - beta_1 ** t), mu, u)
        return out, KerasAdamaxState(t, mu, u)

    return optax.GradientTransformation(init, update)


class KerasNadamState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    m_schedule: jax.Array  # product of the momentum cache so far (1 at first)


def scale_by_keras_nadam(beta_1: float, beta_2: float, epsilon: float, schedule_decay: float
                         ) -> optax.GradientTransformation:
    """Keras 2's Nadam direction, with its momentum cache ``b1 (1 - 0.5 * 0.96^(t * schedule_decay))``."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return KerasNadamState(jnp.zeros([], jnp.int32), zeros, zeros, jnp.ones([]))

    def update(updates, state, params=None):
        del params
        t = state.count + 1
        cache_t = beta_1 * (1 - 0.5 * 0.96 ** (t * schedule_decay))
        cache_next = beta_1 * (1 - 0.5 * 0.96 ** ((t + 1) * schedule_decay))
        schedule_new = state.m_schedule * cache_t
        schedule_next = schedule_new * cache_next
        mu = jax.tree.map(lambda m, g: beta_1 * m + (1 - beta_1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: beta_2 * v + (1 - beta_2) * g * g, state.nu, updates)

        def direction(g, m, v):
            m_bar = (1 - cache_t) * g / (1 - schedule_new) + cache_next * m / (1 - schedule_next)
            return m_bar / (jnp.sqrt(v / (1 - beta_2 ** t)) + epsilon)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, KerasNadamState(t, mu, nu, schedule_new.astype(state.m_schedule.dtype))

    return optax.GradientTransformation(init, update)


def keras_sgd(learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
              decay: float = 0.0) -> optax.GradientTransformation:
    """Keras 2's SGD: ``v = m v - lr_t g``; ``p += v`` (Nesterov: ``p += m v - lr_t g``)."""
    step = optax.scale_by_learning_rate(inverse_time_decay(learning_rate, decay))
    if not momentum:
        return step
    # The decayed rate scales the gradient before it enters the velocity, as in Keras.
    return optax.chain(step, optax.trace(decay=momentum, nesterov=nesterov))


def keras_adam(learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
               epsilon: float = KERAS_EPSILON, amsgrad: bool = False, decay: float = 0.0
               ) -> optax.GradientTransformation:
    """Keras 2's Adam (and AMSGrad)."""
    return optax.chain(scale_by_keras_adam(beta_1, beta_2, epsilon, amsgrad),
                       optax.scale_by_learning_rate(inverse_time_decay(learning_rate, decay)))


def keras_rmsprop(learning_rate: float = 0.001, rho: float = 0.9, epsilon: float = KERAS_EPSILON,
                  decay: float = 0.0, momentum: float = 0.0, centered: bool = False
                  ) -> optax.GradientTransformation:
    """Keras 2's RMSprop ``p -= lr_t g / (sqrt(ms) + eps)``; with tf.keras's momentum,
    ``mom = m mom + lr_t g / sqrt(ms + eps)``, ``p -= mom``."""
    parts = [scale_by_keras_rms(rho, epsilon, centered, eps_in_sqrt=bool(momentum)),
             optax.scale_by_learning_rate(inverse_time_decay(learning_rate, decay))]
    if momentum:
        parts.append(optax.trace(decay=momentum))
    return optax.chain(*parts)


def keras_adagrad(learning_rate: float = 0.01, epsilon: float = KERAS_EPSILON, decay: float = 0.0,
                  initial_accumulator_value: float = 0.0) -> optax.GradientTransformation:
    """Keras 2's Adagrad."""
    return optax.chain(scale_by_keras_adagrad(epsilon, initial_accumulator_value),
                       optax.scale_by_learning_rate(inverse_time_decay(learning_rate, decay)))


def keras_adadelta(learning_rate: float = 1.0, rho: float = 0.95, epsilon: float = KERAS_EPSILON,
                   decay: float = 0.0) -> optax.GradientTransformation:
    """Keras 2's Adadelta."""
    return optax.chain(scale_by_keras_adadelta(rho, epsilon),
                       optax.scale_by_learning_rate(inverse_time_decay(learning_rate, decay)))


def keras_adamax(learning_rate: float = 0.002, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = KERAS_EPSILON, decay: float = 0.0) -> optax.GradientTransformation:
    """Keras 2's Adamax."""
    return optax.chain(scale_by_keras_adamax(beta_1, beta_2, epsilon),
                       optax.scale_by_learning_rate(inverse_time_decay(learning_rate, decay)))


def keras_nadam(learning_rate: float = 0.002, beta_1: float = 0.9, beta_2: float = 0.999,
                epsilon: float = KERAS_EPSILON, schedule_decay: float = 0.004, decay: float = 0.0
                ) -> optax.GradientTransformation:
    """Keras 2's Nadam (Keras has no ``decay`` for it; a mined one still decays inverse-time)."""
    return optax.chain(scale_by_keras_nadam(beta_1, beta_2, epsilon, schedule_decay),
                       optax.scale_by_learning_rate(inverse_time_decay(learning_rate, decay)))


KERAS_OPTIMIZERS = {
    "sgd": keras_sgd, "adam": keras_adam, "rmsprop": keras_rmsprop, "adagrad": keras_adagrad,
    "adadelta": keras_adadelta, "adamax": keras_adamax, "nadam": keras_nadam,
}


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
      differences: each way the trainer's optax optimizer departs from Keras's
        update rule for this dict (empty: it trains exactly as Keras would).
    """

    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    differences: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        return not self.differences


def to_train_config(mined: Mapping[str, Any] | None) -> TrainerOptimizer:
    """The trainer's `OptimizerConfig`/`ScheduleConfig` closest to a mined optimizer.

    The config cannot express Adagrad, Adadelta, Adamax or Nadam (they get the
    project's default optimizer), clipping or centered RMSprop, and optax's
    Adam, AMSGrad, RMSprop and momentum-with-decay differ in detail from
    Keras's; each such difference is listed. Use `to_optax` where the exact
    Keras behaviour matters.
    """
    parsed = parse_keras_optimizer(mined)
    if parsed is None:
        notes = () if mined is None else (f"the miner could not resolve the optimizer {mined['unresolved']!r}; "
                                           "the project's default optimizer is used",)
        return TrainerOptimizer(OptimizerConfig(), ScheduleConfig(), notes)
    a = parsed.arguments
    notes: list[str] = []
    if parsed.unresolved:
        notes.append(f"unresolved argument(s) {list(parsed.unresolved)} take Keras's defaults")
    decay = a["decay"]
    schedule = ScheduleConfig("inverse_time", decay=decay) if decay else ScheduleConfig()
    eps = a.get("epsilon", KERAS_EPSILON)
    if parsed.name == "sgd":
        optimizer = OptimizerConfig("sgd", a["learning_rate"], momentum=a["momentum"], nesterov=a["nesterov"])
        if decay and a["momentum"]:
            notes.append("the schedule scales the whole momentum trace, Keras only each new gradient")
    elif parsed.name == "adam":
        optimizer = OptimizerConfig("adam", a["learning_rate"], b1=a["beta_1"], b2=a["beta_2"], eps=eps,
                                    amsgrad=a["amsgrad"])
        notes.append("optax adds epsilon to the bias-corrected sqrt(v), Keras to the uncorrected one")
        if a["amsgrad"]:
            notes.append("optax's AMSGrad keeps the maximum of the bias-corrected v, Keras of the uncorrected v")
    elif parsed.name == "rmsprop":
        optimizer = OptimizerConfig("rmsprop", a["learning_rate"], momentum=a["momentum"], rho=a["rho"], eps=eps)
        if not a["momentum"]:
            notes.append("optax's rmsprop adds epsilon inside the square root, Keras outside")
        elif decay:
            notes.append("the schedule scales the whole momentum trace, Keras only each new step")
        if a["centered"]:
            notes.append("centered RMSprop is not expressible; trained uncentered")
    else:
        # Another optimizer's learning rate means nothing to Adam (Adadelta's is 1.0): use the default.
        optimizer, schedule = OptimizerConfig(), ScheduleConfig()
        notes.append(f"{parsed.name} is not an OptimizerConfig optimizer; the project's default optimizer is used")
    if a["clipnorm"] or a["clipvalue"]:
        notes.append("gradient clipping (clipnorm/clipvalue) is not expressible; trained unclipped")
    return TrainerOptimizer(optimizer, schedule, tuple(notes))
