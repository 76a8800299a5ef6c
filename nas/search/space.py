"""The joint MLP/CNN space of the random and Sobol baselines, as data.

A proposal is a point u of the unit cube [0, 1)^d mapped to architecture
choices (`from_unit`), so random search (uniform u) and Sobol search (a
scrambled Sobol sequence) share one space and differ only in their points.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from nas.ir import Arch, cnn, mlp


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Small MLPs and plain CNNs plus the learning rate.

    CNN channels follow Deep-n-Cheap's rule: the first layer draws from
    `cnn_channels`, each later layer from [c_i, min(2 c_i, cnn_max_channels)].
    Widths and learning rates are drawn log-uniformly.

    Attributes:
      input_shape, num_outputs: the dataset's; set at the edge (`for_data`).
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
    input_shape: tuple[int, ...] | None = None
    num_outputs: int | None = None

    def __post_init__(self):
        unknown = set(self.families) - {"mlp", "cnn"}
        if not self.families or unknown:
            raise ValueError(f"families must be a non-empty subset of ['mlp', 'cnn'], got {list(self.families)}")

    def for_data(self, input_shape: Sequence[int], num_outputs: int) -> "SearchSpace":
        """This space sized for a dataset."""
        return dataclasses.replace(self, input_shape=tuple(int(d) for d in input_shape), num_outputs=int(num_outputs))

    def most_complex(self) -> Arch:
        """The deepest, widest configuration of any family, by parameters (Deep-n-Cheap's c_0 reference)."""
        eligible = [f for f in self.families if f == "mlp" or len(self.input_shape or ()) == 3]
        largest = []
        for k in range(len(eligible)):
            u = np.full(self.unit_dim, 1.0 - 1e-9)
            u[0] = (k + 0.5) / len(eligible)
            largest.append(from_unit(self, u)[0])
        return max(largest, key=lambda a: a.num_params(self.input_shape))

    @property
    def unit_dim(self) -> int:
        """Coordinates of one point: family, BN, dropout, lr, depth, one per layer."""
        return 5 + max(self.mlp_layers[1], self.cnn_layers[1])


def pick_from_unit(options: Sequence[Any], u: float) -> Any:
    """The option a unit coordinate u in [0, 1] falls on (equal-width bins)."""
    return options[min(int(u * len(options)), len(options) - 1)]


def log_from_unit(u: float, low: float, high: float) -> float:
    """u in [0, 1] mapped log-uniformly onto [low, high]."""
    return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))


def int_from_unit(u: float, low: int, high: int) -> int:
    """u in [0, 1] mapped onto the integers low..high, each an equal share."""
    return min(int(low + u * (high + 1 - low)), high)


def from_unit(space: SearchSpace, u: Sequence[float], num_outputs: int | None = None,
              input_shape: Sequence[int] | None = None) -> tuple[Arch, float, dict[str, Any]]:
    """The architecture, learning rate and choices of one unit-cube point.

    Args:
      space: the space (its `input_shape`/`num_outputs` unless given here).
      u: `space.unit_dim` coordinates in [0, 1).
    """
    num_outputs = space.num_outputs if num_outputs is None else num_outputs
    input_shape = space.input_shape if input_shape is None else tuple(input_shape)
    if num_outputs is None or input_shape is None:
        raise ValueError("the space has no dataset yet: call space.for_data(input_shape, num_outputs)")
    u = np.asarray(u, float)
    if u.shape != (space.unit_dim,):
        raise ValueError(f"a point of this space has {space.unit_dim} coordinates, got shape {u.shape}")
    image = len(input_shape) == 3
    families = [f for f in space.families if f == "mlp" or image]
    if not families:
        raise ValueError(f"families {list(space.families)} need image inputs; the data has shape {input_shape}")
    family = pick_from_unit(families, u[0])
    batchnorm = bool(pick_from_unit(space.batchnorm, u[1]))
    dropout = float(pick_from_unit(space.dropout, u[2]))
    lr = log_from_unit(u[3], *space.learning_rate)
    layers = u[5:]
    if family == "mlp":
        depth = int_from_unit(u[4], *space.mlp_layers)
        widths = [int(round(log_from_unit(layers[i], *space.mlp_width))) for i in range(depth)]
        arch = mlp(widths, num_outputs, batchnorm=batchnorm, dropout=dropout, input_shape=input_shape)
    else:
        depth = int_from_unit(u[4], *space.cnn_layers)
        widths = [int(round(log_from_unit(layers[0], *space.cnn_channels)))]
        for i in range(1, depth):
            low = widths[-1]
            widths.append(int_from_unit(layers[i], low, max(low, min(2 * low, space.cnn_max_channels))))
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


def sample(space: SearchSpace, rng: np.random.Generator, num_outputs: int | None = None,
           input_shape: Sequence[int] | None = None) -> tuple[Arch, float, dict[str, Any]]:
    """A uniformly random point of the space (see `from_unit`)."""
    return from_unit(space, rng.random(space.unit_dim), num_outputs, input_shape)
