"""A MetaQNN-like space of small networks and their prefix sub-networks (TAPAS's LDE initialisation).

The paper (NeuNetS section 4.1.2) fills its lifelong database by sampling
800 networks per dataset from a variation of MetaQNN's space: convolutions
with stride {1, 2}, receptive fields 3..256, padding same/valid, with or
without BatchNorm; residual blocks (receptive field, stride, repeat 1..6);
skip connections (to a previous layer). It trains every prefix sub-network
l_1..k of each network, each closed by a fixed head (global pooling and a
fully connected layer).

Scaled down for a 2-core CPU, a network here is 2..6 layers, each layer one
of:

* ``conv``: Conv2D with filters {8, 16, 32}, kernel {1, 3, 5}, stride {1, 2},
  padding {same, valid}, optional BatchNorm, then ReLU;
* ``pool``: 2x2 max-pooling, stride 2;
* ``residual``: `repeat` (1..2) units of conv-BN-ReLU-conv-BN plus a shortcut
  (identity, or a 1x1 strided projection conv when the shape changes), Add,
  ReLU; convolutions padded 'same' so the Add always fits;
* ``skip``: Add of the previous layer's output and an earlier layer's output
  of the same height and width (`source`, a layer index, 0 = the input),
  projected by a 1x1 conv when the channel counts differ;
* ``dropout``: rate {0.1, 0.25, 0.5}.

and, for about 20% of networks (and always for non-image inputs), an MLP
family: a ``flatten`` layer, then ``dense`` layers (units {32, 64, 128},
optional BatchNorm, ReLU) and ``dropout`` layers.

Every sampled network is valid for its input shape: each layer is drawn
again (up to `MAX_TRIES` times) when it would not fit (a 'valid' window
larger than the map, a pool of a 1-pixel map) or would push the network over
`max_flops` per example (the CPU's budget: the paper's receptive fields up to
256 are far beyond it).

Node ids: layer i (1-based) owns the ids that start with ``l{i}_`` (its
nodes, in order), so a prefix sub-network's body ids are identical to the
full network's. The fixed head is ``head_pool`` (GlobalAvgPool) for a rank-3
body output, ``head_flatten`` (Flatten) for other ranks above 1, then
``head`` (Dense, one unit per class); a flat body (the MLP family) gets
``head`` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from nas.ir import Arch, Attrs, IRError, Node

FILTERS = (8, 16, 32)
KERNELS = (1, 3, 5)
STRIDES = (1, 2)
PADDINGS = ("same", "valid")
REPEATS = (1, 2)
DROPOUT_RATES = (0.1, 0.25, 0.5)
UNITS = (32, 64, 128)
MIN_LAYERS, MAX_LAYERS = 2, 6
MLP_SHARE = 0.2
# Layer kinds of the convolutional family and how often each is drawn.
CNN_KINDS = ("conv", "pool", "residual", "skip", "dropout")
CNN_WEIGHTS = (0.45, 0.15, 0.2, 0.1, 0.1)
MLP_KINDS = ("dense", "dropout")
MLP_WEIGHTS = (0.8, 0.2)
# Forward FLOPs per example a sampled network may cost (the head included).
# Measured on this shared 2-core machine, XLA:CPU trains small convolutions at
# about 1 GFLOP/s: at 5 MFLOPs an epoch of 2,000 images (x3 for the backward
# pass) costs ~30 s at worst; at 20 MFLOPs it was minutes.
DEFAULT_MAX_FLOPS = 5_000_000
MAX_TRIES = 50

KINDS = ("conv", "pool", "residual", "skip", "dropout", "flatten", "dense")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a sampled network; fields that do not apply to its kind are None.

    Attributes:
      kind: one of `KINDS`.
      filters, kernel, stride, padding, batchnorm: conv and residual settings
        (residual: padding is always 'same'; batchnorm always True).
      repeat: residual units.
      source: skip: the layer whose output is added (0 = the network's input).
      rate: dropout rate.
      units: dense units.
    """

    kind: str
    filters: int | None = None
    kernel: int | None = None
    stride: int | None = None
    padding: str | None = None
    batchnorm: bool | None = None
    repeat: int | None = None
    source: int | None = None
    rate: float | None = None
    units: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; kinds: {list(KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Layer":
        return cls(**doc)


@dataclasses.dataclass(frozen=True)
class Network:
    """A sampled network: its layers in order and its family (``cnn`` or ``mlp``)."""

    layers: tuple[Layer, ...]
    kind: str

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.kind not in ("cnn", "mlp"):
            raise ValueError(f"Network.kind must be 'cnn' or 'mlp', got {self.kind!r}")

    def __len__(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Network":
        return cls(tuple(Layer.from_dict(d) for d in doc["layers"]), doc["kind"])


# ------------------------------------------------------------------ network -> IR
class _Builder:
    """Appends a network's layers as IR nodes, remembering each layer's output node."""

    def __init__(self, input_shape: Sequence[int]):
        self.nodes = [Node("input", "Input", (), Attrs(shape=tuple(int(d) for d in input_shape)))]
        self.outputs = ["input"]  # outputs[i] = the node that ends layer i (0 = input)

    def add(self, node_id: str, op: str, inputs: Sequence[str], **attrs) -> str:
        self.nodes.append(Node(node_id, op, tuple(inputs), Attrs(attrs)))
        return node_id

    def layer(self, i: int, layer: Layer, shapes: dict[str, tuple[int, ...]] | None) -> None:
        p, last = f"l{i}_", self.outputs[-1]
        kind = layer.kind
        if kind == "conv":
            out = self.add(p + "conv", "Conv2D", [last], filters=layer.filters, kernel_size=layer.kernel,
                           strides=layer.stride, padding=layer.padding, kernel_init="he_normal")
            if layer.batchnorm:
                out = self.add(p + "bn", "BatchNorm", [out])
            out = self.add(p + "relu", "Activation", [out], fn="relu")
        elif kind == "pool":
            out = self.add(p + "pool", "MaxPool2D", [last], pool_size=2, strides=2, padding="valid")
        elif kind == "residual":
            out = last
            for r in range(1, layer.repeat + 1):
                stride = layer.stride if r == 1 else 1
                q = f"{p}u{r}_"
                a = self.add(q + "conv_a", "Conv2D", [out], filters=layer.filters, kernel_size=layer.kernel,
                             strides=stride, padding="same", use_bias=False, kernel_init="he_normal")
                a = self.add(q + "bn_a", "BatchNorm", [a])
                a = self.add(q + "relu_a", "Activation", [a], fn="relu")
                b = self.add(q + "conv_b", "Conv2D", [a], filters=layer.filters, kernel_size=layer.kernel,
                             padding="same", use_bias=False, kernel_init="he_normal")
                b = self.add(q + "bn_b", "BatchNorm", [b])
                channels = shapes[out][-1] if shapes is not None else None
                shortcut = out
                if stride != 1 or channels != layer.filters:
                    shortcut = self.add(q + "proj", "Conv2D", [out], filters=layer.filters, kernel_size=1,
                                        strides=stride, padding="same", use_bias=False, kernel_init="he_normal")
                added = self.add(q + "add", "Add", [b, shortcut])
                out = self.add(q + "relu", "Activation", [added], fn="relu")
                shapes = _shapes_so_far(self.nodes, out)
        elif kind == "skip":
            source = self.outputs[layer.source]
            if shapes[source][-1] != shapes[last][-1]:
                source = self.add(p + "proj", "Conv2D", [source], filters=shapes[last][-1], kernel_size=1,
                                  padding="same", kernel_init="he_normal")
            out = self.add(p + "add", "Add", [last, source])
        elif kind == "dropout":
            out = self.add(p + "drop", "Dropout", [last], rate=layer.rate)
        elif kind == "flatten":
            out = self.add(p + "flatten", "Flatten", [last])
        else:  # dense
            out = self.add(p + "dense", "Dense", [last], units=layer.units, kernel_init="he_normal")
            if layer.batchnorm:
                out = self.add(p + "bn", "BatchNorm", [out])
            out = self.add(p + "relu", "Activation", [out], fn="relu")
        self.outputs.append(out)

    def head(self, num_classes: int, body_rank: int) -> None:
        last = self.outputs[-1]
        if body_rank == 3:
            last = self.add("head_pool", "GlobalAvgPool", [last])
        elif body_rank > 1:
            last = self.add("head_flatten", "Flatten", [last])
        self.add("head", "Dense", [last], units=int(num_classes))


def _shapes_so_far(nodes: list[Node], output: str) -> dict[str, tuple[int, ...]]:
    """Shapes of every node of a partial graph whose last node is `output` (raises IRError when they do not fit)."""
    return Arch(tuple(nodes), ("input",), (output,)).shapes()


def arch_of(network: Network, input_shape: Sequence[int], num_classes: int, prefix: int | None = None) -> Arch:
    """The IR of `network` (or of its first `prefix` layers) with the fixed head.

    Args:
      network: the sampled network.
      input_shape: per-example shape (stored on the Input node).
      num_classes: units of the head.
      prefix: how many layers to keep, 1..len(network); None keeps them all.
    Returns:
      A validated `Arch` named ``metaqnn-<kind>-<k>of<N>``; body node ids do not
      depend on `prefix` (see the module docstring).
    Raises:
      ValueError: prefix out of range.
      nas.ir.IRError: the network does not fit `input_shape` (never for a
        network `sample` drew for this shape).
    """
    n = len(network.layers)
    k = n if prefix is None else int(prefix)
    if not 1 <= k <= n:
        raise ValueError(f"prefix must be in 1..{n} for a {n}-layer network, got {prefix!r}")
    builder = _Builder(input_shape)
    shapes = _shapes_so_far(builder.nodes, "input")
    for i, layer in enumerate(network.layers[:k], start=1):
        builder.layer(i, layer, shapes)
        shapes = _shapes_so_far(builder.nodes, builder.outputs[-1])
    builder.head(num_classes, len(shapes[builder.outputs[-1]]))
    arch = Arch(tuple(builder.nodes), ("input",), ("head",), f"metaqnn-{network.kind}-{k}of{n}")
    return arch.validate(input_shape)


def layer_of_node(node_id: str) -> int | None:
    """The layer index (1-based) a node of `arch_of`'s output belongs to; None for the input and the head."""
    if node_id.startswith("l") and "_" in node_id:
        head = node_id[1:node_id.index("_")]
        if head.isdigit():
            return int(head)
    return None


# ------------------------------------------------------------------ sampling
def _draw_layer(rng: np.random.Generator, kind: str, index: int) -> Layer:
    def pick(options):
        return options[int(rng.integers(len(options)))]

    if kind == "conv":
        return Layer("conv", filters=pick(FILTERS), kernel=pick(KERNELS), stride=pick(STRIDES),
                     padding=pick(PADDINGS), batchnorm=bool(rng.integers(2)))
    if kind == "pool":
        return Layer("pool")
    if kind == "residual":
        return Layer("residual", filters=pick(FILTERS), kernel=pick(KERNELS), stride=pick(STRIDES),
                     padding="same", batchnorm=True, repeat=pick(REPEATS))
    if kind == "skip":
        return Layer("skip", source=int(rng.integers(index - 1)))  # an earlier layer than the previous one
    if kind == "dropout":
        return Layer("dropout", rate=pick(DROPOUT_RATES))
    return Layer("dense", units=pick(UNITS), batchnorm=bool(rng.integers(2)))


def _fits(layers: list[Layer], kind: str, input_shape, num_classes: int, max_flops: int) -> bool:
    """Whether the network made of `layers` is valid for the input and within the FLOP budget."""
    try:
        arch = arch_of(Network(tuple(layers), kind), input_shape, num_classes)
    except (IRError, ValueError, KeyError):
        return False
    return arch.flops(input_shape) <= max_flops


def _skip_ok(layers: list[Layer], candidate: Layer, input_shape, num_classes: int) -> bool:
    """A skip must join maps of the same height and width (the source layer is fixed; resample otherwise)."""
    network = Network(tuple(layers), "cnn")
    builder = _Builder(input_shape)
    shapes = _shapes_so_far(builder.nodes, "input")
    for i, layer in enumerate(network.layers, start=1):
        builder.layer(i, layer, shapes)
        shapes = _shapes_so_far(builder.nodes, builder.outputs[-1])
    source, last = shapes[builder.outputs[candidate.source]], shapes[builder.outputs[-1]]
    return len(source) == 3 and source[:2] == last[:2]


def sample(rng: np.random.Generator, input_shape: Sequence[int], num_classes: int, *,
           max_flops: int = DEFAULT_MAX_FLOPS) -> Network:
    """Draws one valid network for inputs of `input_shape` (see the module docstring).

    Args:
      rng: the generator; consumed in place, so a seeded generator gives a fixed sequence.
      input_shape: per-example shape; rank 3 (H, W, C) allows the CNN family, any other rank is MLP only.
      num_classes: head units (only used to check the budget).
      max_flops: forward FLOPs per example a network may cost.
    Returns:
      A `Network` with 2..6 layers that `arch_of` turns into a valid Arch for `input_shape`.
    Raises:
      ValueError: no valid network could be drawn (an input too small for any layer).
    """
    shape = tuple(int(d) for d in input_shape)
    images = len(shape) == 3
    family = "mlp" if not images or rng.random() < MLP_SHARE else "cnn"
    depth = int(rng.integers(MIN_LAYERS, MAX_LAYERS + 1))
    layers: list[Layer] = [Layer("flatten")] if family == "mlp" else []
    kinds, weights = (CNN_KINDS, CNN_WEIGHTS) if family == "cnn" else (MLP_KINDS, MLP_WEIGHTS)
    while len(layers) < depth:
        index = len(layers) + 1
        for _ in range(MAX_TRIES):
            kind = kinds[int(rng.choice(len(kinds), p=weights))]
            if kind in ("skip", "dropout") and index == 1:
                continue  # nothing to skip from or drop yet: the first layer computes
            if kind == "skip" and index < 3:
                continue  # a skip from the input over one layer is a plain Add of its own input
            candidate = _draw_layer(rng, kind, index)
            if kind == "skip" and not _skip_ok(layers, candidate, shape, num_classes):
                continue
            if _fits(layers + [candidate], family, shape, num_classes, max_flops):
                layers.append(candidate)
                break
        else:
            if len(layers) >= MIN_LAYERS:
                break  # the map is exhausted: a shorter network is still a valid one
            raise ValueError(f"metaqnn.sample: no valid layer {index} for input shape {list(shape)} "
                             f"within {max_flops} FLOPs after {MAX_TRIES} draws")
    return Network(tuple(layers), family)
