"""Search spaces as data: what a strategy may propose (Vizier-style spec)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from nas.ir import Arch, cnn, mlp


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A joint space of small MLPs and plain CNNs plus the learning rate.

    CNN channels follow Deep-n-Cheap's rule: the first layer draws from
    `cnn_channels`, each later layer from [c_i, min(2 c_i, cnn_max_channels)].
    Widths and learning rates are drawn log-uniformly.
    """

    families: tuple[str, ...] = ("mlp", "cnn")
    mlp_layers: tuple[int, int] = (1, 2)
    mlp_width: tuple[int, int] = (32, 512)
    cnn_layers: tuple[int, int] = (1, 3)
    cnn_channels: tuple[int, int] = (16, 64)
    cnn_max_channels: int = 256
    batchnorm: tuple[bool, ...] = (False, True)
    dropout: tuple[float, ...] = (0.0, 0.1, 0.25)
    learning_rate: tuple[float, float] = (3e-4, 1e-2)

    def __post_init__(self):
        unknown = set(self.families) - {"mlp", "cnn"}
        if not self.families or unknown:
            raise ValueError(f"families must be a non-empty subset of ['mlp', 'cnn'], got {list(self.families)}")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A proposal: an architecture plus its training hyperparameters.

    Attributes:
      trial: the 0-based index of this proposal in the run.
      arch: the architecture to train.
      learning_rate: the base learning rate.
      choices: the sampled values, for reports and for rebuilding the proposal.
    """

    trial: int
    arch: Arch
    learning_rate: float
    choices: dict


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _log_int(rng: np.random.Generator, low: int, high: int) -> int:
    return int(round(_log_uniform(rng, low, high)))


def sample(space: SearchSpace, rng: np.random.Generator, num_outputs: int,
           input_shape: Sequence[int]) -> tuple[Arch, float, dict[str, Any]]:
    """Draws one architecture, learning rate and the choices that made them."""
    image = len(input_shape) == 3
    families = [f for f in space.families if f == "mlp" or image]
    family = families[rng.integers(len(families))]
    batchnorm = bool(space.batchnorm[rng.integers(len(space.batchnorm))])
    dropout = float(space.dropout[rng.integers(len(space.dropout))])
    lr = _log_uniform(rng, *space.learning_rate)
    if family == "mlp":
        depth = int(rng.integers(space.mlp_layers[0], space.mlp_layers[1] + 1))
        widths = [_log_int(rng, *space.mlp_width) for _ in range(depth)]
        arch = mlp(widths, num_outputs, batchnorm=batchnorm, dropout=dropout, input_shape=input_shape)
    else:
        depth = int(rng.integers(space.cnn_layers[0], space.cnn_layers[1] + 1))
        widths = [_log_int(rng, *space.cnn_channels)]
        for _ in range(depth - 1):
            low = widths[-1]
            widths.append(int(rng.integers(low, max(low, min(2 * low, space.cnn_max_channels)) + 1)))
        # Halve the resolution after every layer but the last while it stays >= 2.
        downs, size = [], min(input_shape[:2])
        for i in range(depth - 1):
            if size // 2 >= 2:
                downs.append(i)
                size //= 2
        arch = cnn(widths, num_outputs, batchnorm=batchnorm, dropout=dropout, downsample_after=downs,
                   input_shape=input_shape)
    choices = dict(family=family, widths=widths, batchnorm=batchnorm, dropout=dropout, learning_rate=lr)
    return arch, lr, choices
