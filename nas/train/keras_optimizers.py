"""Keras's optimizers as optax transformations, step for step.

Each ``scale_by_keras_*`` is the direction of one Keras optimizer (Keras 2's
``keras/optimizers.py``; tf.keras / Keras 3 for the parts Keras 2 lacks), and
each ``keras_*`` the whole optimizer under Keras's argument names and
defaults. Where they differ from optax's own optimizers, Keras's rule is
kept:

- ``decay`` is Keras's inverse-time decay ``lr_t = lr / (1 + decay * iterations)``
  with ``iterations = 0`` at the first step; momentum accumulates ``lr_t * g``
  (the decay applies to new gradients only).
- Adam folds its bias corrections into the step size, so epsilon is added to
  the uncorrected ``sqrt(v)``; AMSGrad keeps the maximum of the uncorrected ``v``.
- RMSprop adds epsilon outside the square root (tf.keras's momentum form puts
  it inside); centred RMSprop subtracts the squared mean gradient first.
- Nadam follows Keras 2's momentum schedule (``schedule_decay``).
- AdamW decays the weights by ``lr_t * weight_decay * w`` beside Keras's Adam
  step (Keras 3 / tf.keras 2.11).
- FTRL is tf.keras's / Keras 3's FTRL-Proximal (McMahan et al. 2013), whose
  learning rate enters the step non-linearly; it needs the parameters.

`nas.train.optim.make_optimizer` builds Adagrad, Adadelta, Adamax, Nadam,
FTRL and centred RMSprop from these, so a mined model trains with the update
rule its author wrote. Imports optax and JAX only.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

KERAS_EPSILON = 1e-7  # keras.backend.epsilon(), every optimizer's epsilon=None


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




def keras_adamw(learning_rate: float = 0.001, weight_decay: float = 0.004, beta_1: float = 0.9,
                beta_2: float = 0.999, epsilon: float = KERAS_EPSILON, amsgrad: bool = False, decay: float = 0.0
                ) -> optax.GradientTransformation:
    """Keras's AdamW: ``w -= lr_t * wd * w`` (decoupled), then Keras's Adam step, both from the same ``w``."""
    return optax.chain(scale_by_keras_adam(beta_1, beta_2, epsilon, amsgrad), optax.add_decayed_weights(weight_decay),
                       optax.scale_by_learning_rate(inverse_time_decay(learning_rate, decay)))


class KerasFtrlState(NamedTuple):
    count: jax.Array
    accumulator: optax.Updates  # n: the running sum of g^2 (from initial_accumulator_value)
    linear: optax.Updates  # z


def keras_ftrl(learning_rate: float | Callable[[jax.Array], jax.Array] = 0.001, learning_rate_power: float = -0.5,
               initial_accumulator_value: float = 0.1, l1_regularization_strength: float = 0.0,
               l2_regularization_strength: float = 0.0, l2_shrinkage_regularization_strength: float = 0.0,
               beta: float = 0.0, decay: float = 0.0) -> optax.GradientTransformation:
    """Keras's FTRL-Proximal; its update is the new weight minus the old one.

    With ``p = -learning_rate_power``, ``l2' = l2 + beta / (2 lr)``:
    ``n' = n + g^2``, ``z += g + 2 l2_shrinkage w - (n'^p - n^p) / lr * w``,
    ``w' = (clip(z, -l1, l1) - z) / (n'^p / lr + 2 l2')``.

    Args:
      learning_rate: a number, or a function of the step (0 first) giving the
        rate; the rate enters the step non-linearly, so a schedule must
        come in here, not as a factor on the update.
      decay: Keras's inverse-time decay of a numeric `learning_rate`.
    Raises:
      ValueError: both a schedule and `decay` are given.
    """
    if callable(learning_rate):
        if decay:
            raise ValueError("give keras_ftrl either a learning-rate schedule or decay, not both")
        rate = learning_rate
    else:
        rate = inverse_time_decay(learning_rate, decay)
    power = -learning_rate_power
    l1, l2, shrinkage = l1_regularization_strength, l2_regularization_strength, l2_shrinkage_regularization_strength

    def init(params):
        return KerasFtrlState(jnp.zeros([], jnp.int32),
                              jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params),
                              optax.tree.zeros_like(params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(optax.NO_PARAMS_MSG)
        lr = rate(state.count)
        l2_total = l2 + beta / (2.0 * lr)

        def linear(z, g, w, n_new, n):
            return z + g + 2 * shrinkage * w - (n_new ** power - n ** power) / lr * w

        def weight(z, n_new):
            return (jnp.clip(z, -l1, l1) - z) / (n_new ** power / lr + 2 * l2_total)

        n = jax.tree.map(lambda a, g: a + g * g, state.accumulator, updates)
        z = jax.tree.map(linear, state.linear, updates, params, n, state.accumulator)
        new = jax.tree.map(weight, z, n)
        return jax.tree.map(jnp.subtract, new, params), KerasFtrlState(state.count + 1, n, z)

    return optax.GradientTransformation(init, update)


KERAS_OPTIMIZERS = {
    "sgd": keras_sgd, "adam": keras_adam, "rmsprop": keras_rmsprop, "adagrad": keras_adagrad,
    "adadelta": keras_adadelta, "adamax": keras_adamax, "nadam": keras_nadam, "adamw": keras_adamw,
    "ftrl": keras_ftrl,
}
