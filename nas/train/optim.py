"""Optax optimisers and schedules from `OptimizerConfig`/`ScheduleConfig`.

The learning rate and weight decay are injected hyperparameters: they sit in
the optimiser state, so a vmapped population can give each member its own.
"""

from __future__ import annotations

import optax

from nas.train.config import OptimizerConfig, ScheduleConfig


def _base(cfg: OptimizerConfig, learning_rate, weight_decay) -> optax.GradientTransformation:
    if cfg.name == "adamw":
        return optax.adamw(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=weight_decay)
    if cfg.name == "adam":
        core = (optax.amsgrad(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps) if cfg.amsgrad
                else optax.adam(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
    elif cfg.name == "sgd":
        core = optax.sgd(learning_rate, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    elif cfg.name == "rmsprop":
        core = optax.rmsprop(learning_rate, decay=cfg.rho, eps=cfg.eps, momentum=cfg.momentum or None)
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}; choose sgd, adam, adamw or rmsprop")
    # Coupled L2, as Keras's kernel_regularizer and Deep-n-Cheap's weight decay.
    return optax.chain(optax.add_decayed_weights(weight_decay), core)


def learning_rate_multiplier(cfg: ScheduleConfig, total_steps: int) -> optax.Schedule:
    """The schedule's factor on the base learning rate at each step."""
    if cfg.name == "constant":
        return optax.constant_schedule(1.0)
    if cfg.name == "step":
        boundaries = {max(1, int(f * total_steps)): cfg.drop_factor for f in cfg.drop_at}
        return optax.piecewise_constant_schedule(1.0, boundaries)
    if cfg.name == "cosine":
        return optax.cosine_decay_schedule(1.0, max(1, total_steps))
    if cfg.name == "inverse_time":
        return lambda step: 1.0 / (1.0 + cfg.decay * step)
    raise ValueError(f"unknown schedule {cfg.name!r}; choose constant, step, cosine or inverse_time")


def make_optimizer(
    optimizer: OptimizerConfig, schedule: ScheduleConfig, total_steps: int
) -> optax.GradientTransformation:
    """The full transformation: injected (lr, weight decay), then the schedule."""
    injected = optax.inject_hyperparams(lambda learning_rate, weight_decay: _base(optimizer, learning_rate, weight_decay))
    return optax.chain(
        injected(learning_rate=optimizer.learning_rate, weight_decay=optimizer.weight_decay),
        optax.scale_by_schedule(learning_rate_multiplier(schedule, total_steps)),
    )
