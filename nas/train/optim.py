"""Optax optimisers and schedules from `OptimizerConfig`/`ScheduleConfig`.

The learning rate and weight decay are injected hyperparameters: they sit in
the optimiser state, so a vmapped population can give each member its own.
SGD, Adam, AdamW and RMSprop are optax's own; Adagrad, Adadelta, Adamax,
Nadam, FTRL and centred RMSprop follow Keras's update rules exactly
(`nas.train.keras_optimizers`), so a mined model trains with the optimizer
its author compiled it with. A fine-tuning run (`nas.train.finetune`)
appends one transformation last: it scales each fine-tuning step's updates
and zeroes those of frozen weights.
"""

from __future__ import annotations

from typing import get_args

import optax

from nas.train import keras_optimizers as keras
from nas.train.config import OptimizerConfig, OptimizerName, ScheduleConfig
from nas.train.finetune import FineTunePlan, transformation


def _core(cfg: OptimizerConfig, learning_rate) -> optax.GradientTransformation:
    """The optimiser proper, without weight decay (FTRL is built in `make_optimizer`)."""
    if cfg.name == "adam":
        return (optax.amsgrad(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps) if cfg.amsgrad
                else optax.adam(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
    if cfg.name == "sgd":
        return optax.sgd(learning_rate, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    if cfg.name == "rmsprop" and not cfg.centered:
        return optax.rmsprop(learning_rate, decay=cfg.rho, eps=cfg.eps, momentum=cfg.momentum or None)
    if cfg.name == "rmsprop":
        return keras.keras_rmsprop(learning_rate, rho=cfg.rho, epsilon=cfg.eps, momentum=cfg.momentum, centered=True)
    if cfg.name == "adagrad":
        return keras.keras_adagrad(learning_rate, epsilon=cfg.eps,
                                   initial_accumulator_value=cfg.initial_accumulator_value)
    if cfg.name == "adadelta":
        return keras.keras_adadelta(learning_rate, rho=cfg.rho, epsilon=cfg.eps)
    if cfg.name == "adamax":
        return keras.keras_adamax(learning_rate, beta_1=cfg.b1, beta_2=cfg.b2, epsilon=cfg.eps)
    if cfg.name == "nadam":
        return keras.keras_nadam(learning_rate, beta_1=cfg.b1, beta_2=cfg.b2, epsilon=cfg.eps,
                                 schedule_decay=cfg.schedule_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}; choose one of {list(get_args(OptimizerName))}")


def _base(cfg: OptimizerConfig, learning_rate, weight_decay) -> optax.GradientTransformation:
    if cfg.name == "adamw" and cfg.amsgrad:  # optax.adamw without AMSGrad's running maximum
        return optax.chain(optax.scale_by_amsgrad(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                           optax.add_decayed_weights(weight_decay), optax.scale_by_learning_rate(learning_rate))
    if cfg.name == "adamw":
        return optax.adamw(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=weight_decay)
    # Coupled L2, as Keras's kernel_regularizer and Deep-n-Cheap's weight decay.
    return optax.chain(optax.add_decayed_weights(weight_decay), _core(cfg, learning_rate))


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
    optimizer: OptimizerConfig, schedule: ScheduleConfig, total_steps: int, finetune: FineTunePlan | None = None
) -> optax.GradientTransformation:
    """The full transformation: injected (lr, weight decay), then the schedule.

    `finetune` (`nas.train.finetune.plan`; None: not a fine-tuning run, and
    the chain is exactly what it was without it) appends the fine-tuning
    transformation last, after weight decay and the schedule.
    """
    if finetune is not None:
        return optax.chain(make_optimizer(optimizer, schedule, total_steps), transformation(finetune))
    multiplier = learning_rate_multiplier(schedule, total_steps)
    if optimizer.name == "ftrl":
        # FTRL's rate enters its step non-linearly (Keras decays the rate itself), so the
        # schedule scales the rate inside the step rather than the step.
        def ftrl(learning_rate, weight_decay):
            return optax.chain(optax.add_decayed_weights(weight_decay), keras.keras_ftrl(
                lambda step: learning_rate * multiplier(step), learning_rate_power=optimizer.lr_power,
                initial_accumulator_value=optimizer.initial_accumulator_value, l1_regularization_strength=optimizer.l1,
                l2_regularization_strength=optimizer.l2, l2_shrinkage_regularization_strength=optimizer.l2_shrinkage,
                beta=optimizer.beta))

        return optax.chain(optax.inject_hyperparams(ftrl)(learning_rate=optimizer.learning_rate,
                                                          weight_decay=optimizer.weight_decay))
    injected = optax.inject_hyperparams(lambda learning_rate, weight_decay: _base(optimizer, learning_rate, weight_decay))
    return optax.chain(
        injected(learning_rate=optimizer.learning_rate, weight_decay=optimizer.weight_decay),
        optax.scale_by_schedule(multiplier),
    )
