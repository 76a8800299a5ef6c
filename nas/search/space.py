"""The joint MLP/CNN space of the random and Sobol baselines, as data.

A proposal is a point u of the unit cube [0, 1)^d mapped to architecture
choices (`from_unit`), so random search (uniform u) and Sobol search (a
scrambled Sobol sequence) share one space and differ only in their points.
The data's shape and output count come from the `Problem` the space is
posed on (`nas.search.problem`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from nas.ir import Arch, cnn, mlp
from nas.search.problem import Problem


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Small MLPs and plain CNNs plus the learning rate.

    CNN channels follow Deep-n-Cheap's rule: the first layer draws from
    `cnn_channels`, each later layer from [c_i, min(2 c_i, cnn_max_channels)].
    Widths and learning rates are drawn log-uniformly. The ``cnn`` family
    needs image data; other data gets MLPs only.
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

    def eligible_families(self, problem: Problem) -> list[str]:
        """The families that fit the data: ``mlp`` always, ``cnn`` on images."""
        return [f for f in self.families if f == "mlp" or problem.image]

    def check(self, problem: Problem) -> None:
        """Raises ValueError when no family of the space fits the data (``cnn`` only, on non-images)."""
        if not self.eligible_families(problem):
            raise ValueError(f"families {list(self.families)} need image inputs; the data has shape "
                             f"{problem.input_shape}")

    def most_complex(self, problem: Problem) -> Arch:
        """The deepest, widest configuration of any family, by parameters (Deep-n-Cheap's c_0 reference)."""
        eligible = self.eligible_families(problem)
        largest = []
        for k in range(len(eligible)):
            u = np.full(self.unit_dim, 1.0 - 1e-9)
            u[0] = (k + 0.5) / len(eligible)
            largest.append(from_unit(self, problem, u)[0])
        return max(largest, key=lambda a: a.num_params(problem.input_shape))

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


def from_unit(space: SearchSpace, problem: Problem, u: Sequence[float]) -> tuple[Arch, float, dict[str, Any]]:
    """The architecture, learning rate and choices of one unit-cube point.

    Args:
      space: the space.
      problem: the data's input shape and output count.
      u: `space.unit_dim` coordinates in [0, 1).
    """
    u = np.asarray(u, float)
    if u.shape != (space.unit_dim,):
        raise ValueError(f"a point of this space has {space.unit_dim} coordinates, got shape {u.shape}")
    space.check(problem)
    input_shape, num_outputs = problem.input_shape, problem.num_outputs
    families = space.eligible_families(problem)
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


def sample(space: SearchSpace, problem: Problem, rng: np.random.Generator) -> tuple[Arch, float, dict[str, Any]]:
    """A uniformly random point of the space (see `from_unit`)."""
    return from_unit(space, problem, rng.random(space.unit_dim))
