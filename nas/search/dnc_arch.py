"""Deep-n-Cheap's architecture families as IR: its MLPs and its CNNs (section 3).

A configuration is plain data (`MlpConfig`, `CnnConfig`); `build` turns it
into an `Arch`. Stage 1 fixes everything but depth and widths to the paper's
presets; stage 2 varies the rest.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from nas.ir import Arch, Attrs, Node, mlp

SHORTCUTS = ("none", "every4", "every2")
DOWNSAMPLING = ("maxpool", "stride")


@dataclasses.dataclass(frozen=True)
class MlpConfig:
    """Hidden widths and one dropout rate after every hidden layer (stage 1: 0.2)."""

    hidden: tuple[int, ...]
    dropout: float = 0.2


@dataclasses.dataclass(frozen=True)
class CnnConfig:
    """A Deep-n-Cheap CNN: 3x3 convs, downsampling where the channels cross thresholds, GAP, softmax.

    Attributes:
      channels: output channels per conv layer.
      downsampling: per downsampling site, ``maxpool`` (a 2x2 max pool before
        the layer) or ``stride`` (the layer's conv has stride 2); sites are
        the layers whose channels cross `thresholds` (`downsampling_sites`).
      bn_fraction: fraction of conv layers followed by BatchNorm (`spread`).
      dropout_fraction: fraction of conv layers followed by dropout.
      dropout: their drop probability.
      input_dropout: drop probability on the input (0: none).
      shortcuts: ``none``, ``every4`` or ``every2``: a shortcut spans two
        layers, ending after every 4th or every 2nd layer; a 1x1 conv
        projects it when the shapes differ.
    """

    channels: tuple[int, ...]
    downsampling: tuple[str, ...] = ()
    bn_fraction: float = 1.0
    dropout_fraction: float = 1.0
    dropout: float = 0.3
    input_dropout: float = 0.0
    shortcuts: str = "none"


def spread(fraction: float, n: int) -> tuple[int, ...]:
    """The 1-based layers that get a BN (or dropout) layer, for a fraction of n layers.

    Every round(k / fraction)-th layer plus the last, as in the paper's
    example (7 layers at 0.5: layers 2, 4, 6 and 7).
    """
    if fraction <= 0 or n == 0:
        return ()
    if fraction >= 1:
        return tuple(range(1, n + 1))
    chosen = {round(k / fraction) for k in range(1, n + 1) if round(k / fraction) <= n}
    return tuple(sorted(chosen | {n}))


def downsampling_sites(channels: Sequence[int], thresholds: Sequence[int], input_shape: Sequence[int]) -> tuple[int, ...]:
    """0-based layers preceded by a 2x downsampling: where c_i first reaches each threshold.

    Sites that would shrink the image below 2x2 are dropped (small inputs
    such as 28x28 cannot take the paper's three for CIFAR's 32x32 at depth).
    """
    sites, size = [], min(input_shape[:2])
    for t in thresholds:
        for i in range(1, len(channels)):
            if channels[i - 1] < t <= channels[i]:
                if size // 2 >= 2:
                    sites.append(i)
                    size = math.ceil(size / 2)
                break
    return tuple(sorted(set(sites)))


def build_mlp(config: MlpConfig, num_outputs: int, input_shape: Sequence[int]) -> Arch:
    return mlp(config.hidden, num_outputs, dropout=config.dropout, input_shape=input_shape,
               name="dnc-mlp-" + "-".join(map(str, config.hidden)))


def build_cnn(config: CnnConfig, num_outputs: int, input_shape: Sequence[int], thresholds: Sequence[int]) -> Arch:
    sites = downsampling_sites(config.channels, thresholds, input_shape)
    kinds = dict(zip(sites, config.downsampling or ("maxpool",) * len(sites)))
    if config.downsampling and len(config.downsampling) != len(sites):
        raise ValueError(f"{len(sites)} downsampling sites need as many choices, got {config.downsampling}")
    if config.shortcuts not in SHORTCUTS:
        raise ValueError(f"shortcuts must be one of {SHORTCUTS}, got {config.shortcuts!r}")
    n = len(config.channels)
    bn, drop = set(spread(config.bn_fraction, n)), set(spread(config.dropout_fraction, n))
    every = {"none": 0, "every4": 4, "every2": 2}[config.shortcuts]
    nodes = [Node("input", "Input", (), Attrs(shape=tuple(int(d) for d in input_shape)))]
    last = "input"

    def add(node_id: str, op: str, inputs: Sequence[str], **attrs) -> str:
        nodes.append(Node(node_id, op, tuple(inputs), Attrs(attrs)))
        return node_id

    if config.input_dropout:
        last = add("drop_in", "Dropout", [last], rate=config.input_dropout)
    block_in, block_channels, block_stride = last, int(input_shape[-1]), 1
    for i, c in enumerate(config.channels):
        layer = i + 1
        stride = 1
        if i in kinds and kinds[i] == "maxpool":
            last = add(f"pool{layer}", "MaxPool2D", [last], pool_size=2, padding="same")
        elif i in kinds:
            stride = 2
        if every and layer % 2 == 1:  # a shortcut spans this layer and the next
            block_in, block_channels, block_stride = last, (int(input_shape[-1]) if i == 0 else config.channels[i - 1]), 1
        if every and i in kinds and layer % 2 == 0 and kinds[i] == "maxpool":
            block_stride *= 2  # the pool inside the span halves the main path
        last = add(f"conv{layer}", "Conv2D", [last], filters=int(c), kernel_size=3, strides=stride,
                   kernel_init="he_normal")
        block_stride *= stride
        if layer in bn:
            last = add(f"bn{layer}", "BatchNorm", [last])
        last = add(f"act{layer}", "Activation", [last], fn="relu")
        if every and layer % 2 == 0 and layer % every == 0:
            skip = block_in
            if block_channels != c or block_stride != 1:
                skip = add(f"proj{layer}", "Conv2D", [block_in], filters=int(c), kernel_size=1,
                           strides=block_stride, kernel_init="he_normal")
            last = add(f"add{layer}", "Add", [last, skip])
        if layer in drop and config.dropout:
            last = add(f"drop{layer}", "Dropout", [last], rate=config.dropout)
    last = add("gap", "GlobalAvgPool", [last])
    add("head", "Dense", [last], units=int(num_outputs))
    return Arch(tuple(nodes), ("input",), ("head",), "dnc-cnn-" + "-".join(map(str, config.channels)))
