"""Hyperband++'s joint architecture and training-hyperparameter space (NeuNetS, section 4.1.3).

Two of NeuNetS's model representations, plus an MLP for non-image data:

- ``chain``: one or more components connected in sequence, each a stack of
  convolutions (kernel size, type and output channels per convolution)
  ending in a pooling layer (Fig. 9);
- ``skip_chain``: a chain whose convolutions may also add the output of an
  earlier point of the same component; skips never cross a component's
  pooling (Fig. 10). A 1x1 convolution projects a skip whose channels differ;
- ``mlp``: Dense layers, for data that is not an image.

The training hyperparameters (learning rate, weight decay, batch size) are
searched jointly with the architecture. A configuration is a point u of the
unit cube mapped by `config_from_unit`, so it is a deterministic function of
the point (as in `nas.search.space`); the data's shape and output count come
from the `Problem` the space is posed on. The resource schedule (epochs R,
r_min and eta) lives here too: it is part of what a run searches over.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from nas.ir import Arch, Attrs, Node, mlp
from nas.search.problem import Problem
from nas.search.space import int_from_unit, log_from_unit, pick_from_unit

FAMILIES = ("chain", "skip_chain", "mlp")
CONV_OPS = {"conv": "Conv2D", "separable": "SeparableConv2D"}


@dataclasses.dataclass(frozen=True)
class ConvStack:
    """One convolution of a component.

    Attributes:
      kernel_size, conv, channels: the stack's attributes in NeuNetS's chain
        representation; `conv` is ``conv`` or ``separable``.
      skip_from: None, or the component point whose output is added to this
        stack's output: 0 is the component's input, j the output of its
        stack j - 1 (always before this stack's own input).
    """

    kernel_size: int
    conv: str
    channels: int
    skip_from: int | None = None


@dataclasses.dataclass(frozen=True)
class ChainConfig:
    """A chain or skip-chain network: components of conv stacks, each ending in a 2x2 max pool.

    Attributes:
      components: the stacks of each component.
      batchnorm: BatchNorm between every convolution and its ReLU.
      dropout: drop probability before the head (0: none).
    """

    components: tuple[tuple[ConvStack, ...], ...]
    batchnorm: bool = False
    dropout: float = 0.0

    @property
    def skips(self) -> int:
        return sum(s.skip_from is not None for comp in self.components for s in comp)

    def describe(self) -> str:
        """A one-line form, e.g. ``3c32 5s64+0 | 3c64`` (kernel, c/s type, channels, +skip source)."""
        return " | ".join(" ".join(f"{s.kernel_size}{s.conv[0]}{s.channels}"
                                   + ("" if s.skip_from is None else f"+{s.skip_from}") for s in comp)
                          for comp in self.components)


@dataclasses.dataclass(frozen=True)
class MlpConfig:
    hidden: tuple[int, ...]
    batchnorm: bool = False
    dropout: float = 0.0

    def describe(self) -> str:
        return "mlp " + "-".join(map(str, self.hidden))


@dataclasses.dataclass(frozen=True)
class HyperbandSpace:
    """Hyperband++'s space and resource schedule.

    Attributes:
      families: representations to draw from (non-image data keeps ``mlp``).
      components: components per chain (each ends in a pooling layer).
      stacks: convolutions per component.
      channels: output channels per convolution, drawn log-uniformly.
      kernel_sizes, conv_types: per-convolution choices.
      mlp_layers, mlp_width: hidden layers and widths of the MLP family.
      batchnorm, dropout: whole-network choices.
      learning_rate: log-uniform range; weight_decay: choices (0 included);
        batch_size: choices.
      max_epochs, min_epochs, eta: Hyperband's R, r_min and reduction factor
        (epochs are the resource).
      max_configs: configurations ASHA starts before it only promotes
        (Hyperband's brackets fix their own number).
    """

    families: tuple[str, ...] = FAMILIES
    components: tuple[int, int] = (1, 3)
    stacks: tuple[int, int] = (1, 3)
    channels: tuple[int, int] = (16, 64)
    kernel_sizes: tuple[int, ...] = (3, 5)
    conv_types: tuple[str, ...] = ("conv", "separable")
    mlp_layers: tuple[int, int] = (1, 3)
    mlp_width: tuple[int, int] = (32, 512)
    batchnorm: tuple[bool, ...] = (False, True)
    dropout: tuple[float, ...] = (0.0, 0.25)
    learning_rate: tuple[float, float] = (3e-4, 1e-2)
    weight_decay: tuple[float, ...] = (0.0, 1e-5, 1e-4)
    batch_size: tuple[int, ...] = (32, 64, 128)
    max_epochs: int = 9
    min_epochs: int = 1
    eta: int = 3
    max_configs: int = 27

    def __post_init__(self):
        unknown = set(self.families) - set(FAMILIES)
        if not self.families or unknown:
            raise ValueError(f"families must be a non-empty subset of {list(FAMILIES)}, got {list(self.families)}")
        if set(self.conv_types) - set(CONV_OPS) or not self.conv_types:
            raise ValueError(f"conv_types must be a non-empty subset of {list(CONV_OPS)}, got {list(self.conv_types)}")
        if int(self.eta) != self.eta or self.eta < 2:
            raise ValueError(f"eta must be an integer >= 2, got {self.eta}")
        if not 1 <= self.min_epochs <= self.max_epochs:
            raise ValueError(f"need 1 <= min_epochs <= max_epochs, got {self.min_epochs} and {self.max_epochs}")
        for name in ("components", "stacks", "mlp_layers"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be a range [low, high] with 1 <= low <= high, got {[low, high]}")

    def check(self, problem: Problem) -> None:
        """Images keep every family, other data only ``mlp``."""
        if not self.eligible_families(problem):
            raise ValueError(f"families {list(self.families)} need (h, w, c) images; the data has shape "
                             f"{problem.input_shape}; add 'mlp' to search.space.families")

    def eligible_families(self, problem: Problem) -> tuple[str, ...]:
        return tuple(f for f in self.families if f == "mlp" or problem.image)

    def most_complex(self, problem: Problem) -> Arch:
        """The largest configuration of any eligible family, by parameters (Deep-n-Cheap's c_0 reference)."""
        largest = []
        for family in self.eligible_families(problem):
            if family == "mlp":
                config = MlpConfig((self.mlp_width[1],) * self.mlp_layers[1], batchnorm=max(self.batchnorm))
            else:
                skip = family == "skip_chain"
                config = ChainConfig(tuple(
                    tuple(ConvStack(max(self.kernel_sizes), "conv" if "conv" in self.conv_types else self.conv_types[0],
                                    self.channels[1], 0 if skip and j else None) for j in range(self.stacks[1]))
                    for _ in range(self.components[1])), batchnorm=max(self.batchnorm))
            largest.append(build(problem, config))
        return max(largest, key=lambda a: a.num_params(problem.input_shape))

    @property
    def block_dim(self) -> int:
        """Coordinates per component: its depth, then kernel, type, channels and skip per stack."""
        return 1 + 4 * self.stacks[1]

    @property
    def unit_dim(self) -> int:
        """Family, BN, dropout, lr, weight decay, batch size, depth, then one block per component/layer."""
        return 7 + max(self.components[1], self.mlp_layers[1]) * self.block_dim


def config_from_unit(space: HyperbandSpace, problem: Problem, u: Sequence[float]
                     ) -> tuple[str, ChainConfig | MlpConfig, dict[str, Any]]:
    """The architecture configuration and training settings of one unit-cube point.

    Returns:
      (family, config, training) with training = {learning_rate, weight_decay, batch_size}.
    """
    u = np.asarray(u, float)
    if u.shape != (space.unit_dim,):
        raise ValueError(f"a point of this space has {space.unit_dim} coordinates, got shape {u.shape}")
    family = pick_from_unit(space.eligible_families(problem), u[0])
    batchnorm = bool(pick_from_unit(space.batchnorm, u[1]))
    dropout = float(pick_from_unit(space.dropout, u[2]))
    training = dict(learning_rate=log_from_unit(u[3], *space.learning_rate),
                    weight_decay=float(pick_from_unit(space.weight_decay, u[4])),
                    batch_size=int(pick_from_unit(space.batch_size, u[5])))
    blocks = u[7:].reshape(-1, space.block_dim)
    if family == "mlp":
        depth = int_from_unit(u[6], *space.mlp_layers)
        hidden = tuple(int(round(log_from_unit(blocks[i, 3], *space.mlp_width))) for i in range(depth))
        return family, MlpConfig(hidden, batchnorm, dropout), training
    components = []
    for block in blocks[:int_from_unit(u[6], *space.components)]:
        stacks = []
        for j in range(int_from_unit(block[0], *space.stacks)):
            kernel, conv, channels, skip = block[1 + 4 * j: 5 + 4 * j]
            # Fig. 10: a skip starts at an earlier point of the same component; half the stacks get none.
            skip_from = None
            if family == "skip_chain" and j > 0 and skip >= 0.5:
                skip_from = pick_from_unit(range(j), 2 * (skip - 0.5))
            stacks.append(ConvStack(int(pick_from_unit(space.kernel_sizes, kernel)), pick_from_unit(space.conv_types, conv),
                                    int(round(log_from_unit(channels, *space.channels))), skip_from))
        components.append(tuple(stacks))
    return family, ChainConfig(tuple(components), batchnorm, dropout), training


def build(problem: Problem, config: ChainConfig | MlpConfig) -> Arch:
    """The IR of a configuration, sized for the problem."""
    if isinstance(config, MlpConfig):
        return mlp(config.hidden, problem.num_outputs, batchnorm=config.batchnorm, dropout=config.dropout,
                   input_shape=problem.input_shape, name="hb-" + config.describe().replace(" ", "-"))
    return build_chain(config, problem.num_outputs, problem.input_shape)


def build_chain(config: ChainConfig, num_outputs: int, input_shape: Sequence[int]) -> Arch:
    """Components of conv-[BN]-ReLU stacks (plus skip Adds), a 2x2 max pool after each, GAP, Dense head.

    A component's pool is left out once the image is 1x1, so small inputs
    (digits' 8x8) take deep chains.
    """
    nodes = [Node("input", "Input", (), Attrs(shape=tuple(int(d) for d in input_shape)))]

    def add(node_id: str, op: str, inputs: Sequence[str], **attrs) -> str:
        nodes.append(Node(node_id, op, tuple(inputs), Attrs(attrs)))
        return node_id

    last, channels, size = "input", int(input_shape[-1]), min(int(d) for d in input_shape[:2])
    for c, component in enumerate(config.components, start=1):
        points = [(last, channels)]  # point j: the component's input (0) or stack j - 1's output
        for j, stack in enumerate(component, start=1):
            name = f"c{c}s{j}"
            last = add(f"{name}_conv", CONV_OPS[stack.conv], [last], filters=int(stack.channels),
                       kernel_size=int(stack.kernel_size), kernel_init="he_normal")
            if config.batchnorm:
                last = add(f"{name}_bn", "BatchNorm", [last])
            last = add(f"{name}_act", "Activation", [last], fn="relu")
            if stack.skip_from is not None:
                if not 0 <= stack.skip_from < j - 1:
                    raise ValueError(f"component {c} stack {j}: skip_from must be an earlier point in "
                                     f"[0, {j - 2}], got {stack.skip_from}")
                source, source_channels = points[stack.skip_from]
                if source_channels != stack.channels:
                    source = add(f"{name}_proj", "Conv2D", [source], filters=int(stack.channels), kernel_size=1,
                                 kernel_init="he_normal")
                last = add(f"{name}_add", "Add", [last, source])
            points.append((last, int(stack.channels)))
        channels = int(component[-1].channels)
        if size >= 2:
            last = add(f"pool{c}", "MaxPool2D", [last], pool_size=2, padding="same")
            size = math.ceil(size / 2)
    last = add("gap", "GlobalAvgPool", [last])
    if config.dropout:
        last = add("drop", "Dropout", [last], rate=float(config.dropout))
    add("head", "Dense", [last], units=int(num_outputs))
    family = "skip" if config.skips else "chain"
    return Arch(tuple(nodes), ("input",), ("head",),
                f"hb-{family}-" + config.describe().replace(" | ", "/").replace(" ", "_"))


def sample_config(space: HyperbandSpace, problem: Problem, seed: int, index: int
                  ) -> tuple[Arch, dict[str, Any], dict[str, Any]]:
    """Configuration `index` of a run: (arch, training settings, JSON-ready choices).

    Its point is drawn from a generator seeded by (seed, index), so it does
    not depend on how proposals were batched or on what else was sampled.
    """
    u = np.random.default_rng([int(seed), int(index)]).random(space.unit_dim)
    family, config, training = config_from_unit(space, problem, u)
    arch = build(problem, config)
    # "layers", not "depth": the engine's trial rows spread the choices over their own keys, and their
    # "depth" is the IR's (every strategy's summary table compares that one)
    if isinstance(config, MlpConfig):
        shape = dict(layers=len(config.hidden), widths=list(config.hidden))
    else:
        shape = dict(layers=sum(len(comp) for comp in config.components), components=len(config.components),
                     widths=[s.channels for comp in config.components for s in comp], skips=config.skips)
    choices = dict(family=family, structure=config.describe(), batchnorm=config.batchnorm, dropout=config.dropout,
                   **shape, **training)
    return arch, training, choices


__all__ = ["CONV_OPS", "ChainConfig", "ConvStack", "FAMILIES", "HyperbandSpace", "MlpConfig", "build", "build_chain",
           "config_from_unit", "sample_config"]
