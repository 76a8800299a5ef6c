"""Random models for measuring DREAM's priority table (TOSEM'24 s4.4).

The paper fills P(action | condition) by applying every action to random
models and retraining them; a table is only as good as the spread of
conditions those models land in. `random_model(seed, problem)` therefore
draws models meant to be *unhealthy* as often as healthy:

- families: MLP, plain CNN, and the CNN turned residual / separable /
  depthwise (EfficientNet-like inverted blocks) by DREAM's own
  ``block_type=`` actions, so the A part of the condition covers
  ``MA``/``OA``/``RA``/``XA``/``EA`` (a flat input gets MLPs only);
- small random widths and depths (CPU budgets: a table of tens of models);
- activations including saturating ones (sigmoid, tanh: vanishing
  gradients, slow convergence) and ReLU weighted up (dying ReLU needs it);
- initialisers including ``random_normal``/``random_uniform`` (Keras's
  fixed-scale ones, badly scaled for wide layers);
- every optimizer of `conf/optimizer/` and a learning rate drawn
  log-uniformly over [1e-6, 1]: 1e-6 barely moves (slow convergence), 1
  explodes most optimisers (exploding gradients or weights, dead ReLUs).

Pure and deterministic: the same (seed, problem) gives the same model on
every machine (numpy's seeded generator, no global state).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nas.ir import Arch, cnn, mlp
from nas.search.dream.actions import ACTIONS
from nas.search.problem import Problem
from nas.train import OptimizerConfig, ScheduleConfig, TrainConfig

FAMILIES = ("mlp", "plain", "residual", "separable", "depthwise")
# Which block_type action turns a plain CNN into each family.
FAMILY_ACTIONS = {"residual": "block_type=residual", "separable": "block_type=separable",
                  "depthwise": "block_type=depthwise"}
# relu three times: dying ReLU (DG) only happens to ReLU networks.
ACTIVATION_CHOICES = ("relu", "relu", "relu", "tanh", "sigmoid", "selu", "elu", "leaky_relu")
INITIALIZER_CHOICES = ("he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "glorot_normal",
                       "glorot_uniform", "random_normal", "random_uniform")
OPTIMIZER_CHOICES = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam")
LEARNING_RATE_RANGE = (1e-6, 1.0)
MLP_WIDTHS = (16, 32, 64, 128)
CNN_CHANNELS = (4, 8, 16)
# Images smaller than this on a side get no CNN (two 2x poolings need room).
MIN_CNN_SIDE = 8


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def model_seed(base_seed: int, index: int) -> int:
    """The seed of model `index` of a run seeded `base_seed` (fits TrainConfig's 32 bits)."""
    return int(np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1)[0])


def _families(problem: Problem) -> tuple[str, ...]:
    shape = problem.input_shape
    image = len(shape) == 3 and min(shape[:2]) >= MIN_CNN_SIDE
    return FAMILIES if image else ("mlp",)


def _settings(rng: np.random.Generator, seed: int, epochs: int, batch_size: int) -> TrainConfig:
    low, high = LEARNING_RATE_RANGE
    learning_rate = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    name = _choice(rng, OPTIMIZER_CHOICES)
    extra = {}
    if name == "sgd":
        extra["momentum"] = float(_choice(rng, (0.0, 0.5, 0.9)))
    if name == "adamw":
        extra["weight_decay"] = float(_choice(rng, (0.0, 1e-4, 1e-2)))
    schedule = ScheduleConfig(name=_choice(rng, ("constant", "constant", "cosine", "step")))
    return TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed,
                       optimizer=OptimizerConfig(name=name, learning_rate=learning_rate, **extra),
                       schedule=schedule)


def _arch(rng: np.random.Generator, family: str, problem: Problem, settings: TrainConfig) -> Arch:
    activation = _choice(rng, ACTIVATION_CHOICES)
    initializer = _choice(rng, INITIALIZER_CHOICES)
    batchnorm = bool(rng.random() < 0.3)
    dropout = float(_choice(rng, (0.0, 0.0, 0.25)))
    common = dict(input_shape=problem.input_shape, activation=activation, kernel_init=initializer,
                  batchnorm=batchnorm, dropout=dropout)
    if family == "mlp":
        hidden = [int(_choice(rng, MLP_WIDTHS)) for _ in range(int(rng.integers(1, 4)))]
        return mlp(hidden, problem.num_outputs, name=f"mlp-{'-'.join(map(str, hidden))}", **common)
    channels = [int(_choice(rng, CNN_CHANNELS)) for _ in range(int(rng.integers(1, 4)))]
    # Keep at least 4x4 after pooling: at most two 2x poolings on small images.
    downsample_after = tuple(range(min(len(channels), 2)))
    dense = (int(_choice(rng, (16, 32))),) if rng.random() < 0.3 else ()
    arch = cnn(channels, problem.num_outputs, downsample_after=downsample_after,
               head=_choice(rng, ("gap", "flatten")), dense=dense,
               name=f"cnn-{'-'.join(map(str, channels))}", **common)
    if family in FAMILY_ACTIONS:
        arch, _ = ACTIONS[FAMILY_ACTIONS[family]](arch, settings)
        arch = dataclasses.replace(arch, name=f"{family}-{arch.name}")
    return arch


def random_model(seed: int, problem: Problem, *, epochs: int = 5, batch_size: int = 32) -> tuple[Arch, TrainConfig]:
    """A random (architecture, training settings) for `problem`, fixed by `seed`.

    Args:
      seed: draws everything; also the settings' training seed (taken mod 2**32).
      problem: the input shape and head width (`nas.search.Problem`); only
        classification heads are drawn (the head has `num_outputs` units).
      epochs, batch_size: the training budget the settings carry.
    Returns:
      (arch, settings): a valid architecture with the problem's input shape
      on its Input node, and a `TrainConfig` with a random optimizer,
      learning rate and schedule.
    """
    rng = np.random.default_rng([int(seed) % 2**32, 0x44524541])  # second word: "DREA", this module's stream
    family = _choice(rng, _families(problem))
    settings = _settings(rng, int(seed) % 2**32, epochs, batch_size)
    arch = _arch(rng, family, problem, settings)
    arch.validate(problem.input_shape)
    return arch, settings


__all__ = ["FAMILIES", "model_seed", "random_model"]
