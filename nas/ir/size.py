"""Per-example activation sizes from shape inference (no arrays are built).

The trainer's size guard (`nas.train.size`) combines these with the
parameter count to refuse a model that cannot fit in memory before it is
compiled or initialised.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from nas.ir.arch import Arch


@dataclasses.dataclass(frozen=True)
class ActivationSize:
    """Elements of one example's activations.

    Attributes:
      total: every node's output plus the tensors a node makes inside itself
        (a SeparableConv2D's depthwise output): what a training step keeps
        for the backward pass.
      largest: the largest single such tensor: what an inference pass, which
        frees each tensor once it is read, holds at its peak (with the input
        that made it).
    """

    total: int
    largest: int


def activation_size(arch: "Arch", input_shape: Sequence[int] | None = None) -> ActivationSize:
    """The per-example activation elements of `arch` (batch axis excluded).

    Args:
      arch: the architecture (validated shapes are inferred here).
      input_shape: per-example input shape (else the Input node's).
    Returns:
      An `ActivationSize`; multiply by the batch size and the dtype's bytes.
    Raises:
      nas.ir.InvalidArchError: the graph or its shapes are invalid.
    """
    sizes = []
    for row in arch.layer_table(input_shape):
        sizes.append(math.prod(row["shape"]))
        if row["op"] == "SeparableConv2D":
            node = arch.node(row["id"])
            depth_multiplier = node.normalized_attrs()["depth_multiplier"]
            channels_in = arch.shapes(input_shape)[node.inputs[0]][-1]
            sizes.append(math.prod(row["shape"][:-1]) * channels_in * depth_multiplier)
    return ActivationSize(total=sum(sizes), largest=max(sizes))
