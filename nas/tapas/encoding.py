"""TAP's per-layer encoding of an architecture (NeuNetS section 4.1.2, Figure 8a).

A network is read as a sequence of layers: every IR node but the Input, in
the IR's deterministic topological order (`layer_sequence`). Each layer
becomes one vector (`encode`) of two blocks:

- the layer itself: its op as a one-hot over `OP_SLOTS` (ops the vocabulary
  lacks share an explicit UNKNOWN slot, so a new op type is encoded, never a
  crash), output/input height ratio (strides, pooling, valid padding, flatten),
  output/input depth ratio (more or fewer channels), and its weights (log1p of
  the trainable parameter count);
- the sub-network from the input to this layer: layers so far, inference FLOPs
  so far (log1p) and memory so far (log1p of float32 bytes of every activation
  computed so far plus the parameters so far), and the accuracy field.

The accuracy field is 0 here unless `accuracies` supplies values; the
predictor sets it step by step (1/N_classes before the first layer, then the
previous step's accuracy, Figure 8b).

`ENCODING_VERSION` names this layout; a saved TAP records it, and loading one
written for another layout fails (its feature columns would mean other things).
Bump it whenever `OP_SLOTS`, `FEATURE_NAMES` or a feature's definition changes.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from nas.ir import Arch, Node

ENCODING_VERSION = 1

# One slot per layer type the paper's encoding tells apart (convolution, pooling,
# batch normalisation, dropout, merges, fully connected...), finer where the IR is.
SLOTS: tuple[str, ...] = (
    "Conv", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNorm", "Activation",
    "MaxPool", "AvgPool", "GlobalAvgPool", "GlobalMaxPool", "Flatten", "Dropout",
    "Add", "Concat", "IdentityLike", "UNKNOWN",
)
UNKNOWN = "UNKNOWN"

# IR op name -> slot. Conv1D and the 1-D pools share their 2-D kinds' slots (same role,
# one spatial axis fewer). Identity-like ops move or rescale values without learning.
OP_SLOTS: Mapping[str, str] = {
    "Conv2D": "Conv", "Conv1D": "Conv",
    "DepthwiseConv2D": "DepthwiseConv2D", "SeparableConv2D": "SeparableConv2D",
    "Dense": "Dense", "BatchNorm": "BatchNorm",
    "Activation": "Activation", "ReLU": "Activation",
    "MaxPool2D": "MaxPool", "MaxPool1D": "MaxPool",
    "AvgPool2D": "AvgPool", "AvgPool1D": "AvgPool",
    "GlobalAvgPool": "GlobalAvgPool", "GlobalMaxPool": "GlobalMaxPool",
    "Flatten": "Flatten", "Dropout": "Dropout", "Add": "Add", "Concat": "Concat",
    "Identity": "IdentityLike", "ZeroPadding2D": "IdentityLike", "Rescaling": "IdentityLike",
    "Reshape": "IdentityLike",
}
_SLOT_INDEX = {slot: i for i, slot in enumerate(SLOTS)}

FEATURE_NAMES: tuple[str, ...] = tuple(f"op={s}" for s in SLOTS) + (
    "height_ratio", "depth_ratio", "log1p_weights",
    "layers_so_far", "log1p_flops_so_far", "log1p_memory_bytes_so_far",
    "accuracy",
)
NUM_FEATURES = len(FEATURE_NAMES)
ACCURACY = NUM_FEATURES - 1          # column of the accuracy field
NUM_STATIC = NUM_FEATURES - 1        # every column but the accuracy: standardised by the predictor
BYTES_PER_VALUE = 4                  # float32 activations and weights


def layer_sequence(arch: Arch, input_shape: Sequence[int] | None = None) -> list[Node]:
    """The layers TAP reads: every node but the Input, in topological order.

    Args:
      arch: the architecture.
      input_shape: unused (the order does not depend on shapes); accepted so
        that every function here takes the same arguments.
    """
    del input_shape
    return [n for n in arch.topological_order() if n.op != "Input"]


def slot_of(op: str) -> str:
    """The one-hot slot of an IR op (`UNKNOWN` for ops the vocabulary lacks)."""
    return OP_SLOTS.get(op, UNKNOWN)


def unknown_ops(arch: Arch) -> dict[str, int]:
    """Ops of `arch` that the vocabulary lacks (encoded in the UNKNOWN slot), with their counts."""
    found: dict[str, int] = {}
    for n in layer_sequence(arch):
        if n.op not in OP_SLOTS:
            found[n.op] = found.get(n.op, 0) + 1
    return found


def _height(shape: Sequence[int]) -> int:
    # The first spatial axis; a vector (rank 1) has height 1, so Flatten and global
    # pooling read as a collapse of the spatial extent.
    return int(shape[0]) if len(shape) >= 2 else 1


def encode(arch: Arch, input_shape: Sequence[int] | None, num_classes: int,
           accuracies: Mapping[int, float] | Sequence[float | None] | None = None) -> np.ndarray:
    """Per-layer encoding vectors of `arch` (rows follow `layer_sequence`).

    Args:
      arch: the architecture (its shapes must infer for `input_shape`).
      input_shape: per-example input shape (None: the Input node's).
      num_classes: the dataset's classes (kept for the signature the predictor
        shares; the accuracy before the first layer, 1/num_classes, is the
        predictor's to set).
      accuracies: optional accuracy field per row: a sequence (None entries
        stay 0) or a mapping {row index: accuracy}.

    Returns:
      float32 array (N, NUM_FEATURES), N = len(layer_sequence(arch)).

    Raises:
      nas.ir.InvalidArchError: the graph or its shapes are invalid.
    """
    del num_classes
    table = arch.layer_table(input_shape)
    shapes = {row["id"]: row["shape"] for row in table}
    input_id = arch.inputs[0]
    rows = []
    layers = flops = memory_values = 0
    for row in table:
        if row["op"] == "Input":
            memory_values += math.prod(row["shape"])  # the input itself is held in memory
            continue
        node = arch.node(row["id"])
        in_shape = shapes[node.inputs[0]] if node.inputs else shapes[input_id]
        out_shape = row["shape"]
        layers += 1
        flops += row["flops"]
        memory_values += math.prod(out_shape) + row["params"]
        vector = np.zeros(NUM_FEATURES, np.float64)
        vector[_SLOT_INDEX[slot_of(row["op"])]] = 1.0
        vector[len(SLOTS) + 0] = _height(out_shape) / max(_height(in_shape), 1)
        vector[len(SLOTS) + 1] = out_shape[-1] / max(in_shape[-1], 1)
        vector[len(SLOTS) + 2] = math.log1p(row["params"])
        vector[len(SLOTS) + 3] = layers
        vector[len(SLOTS) + 4] = math.log1p(flops)
        vector[len(SLOTS) + 5] = math.log1p(memory_values * BYTES_PER_VALUE)
        rows.append(vector)
    out = np.stack(rows).astype(np.float32) if rows else np.zeros((0, NUM_FEATURES), np.float32)
    if accuracies is not None:
        items = accuracies.items() if isinstance(accuracies, Mapping) else enumerate(accuracies)
        for i, value in items:
            if value is not None:
                out[i, ACCURACY] = value
    return out


def input_row(input_shape: Sequence[int]) -> np.ndarray:
    """The encoding of the input layer (the first pair's left half, Figure 8b).

    No op slot, ratios 1, no weights, no layers, no FLOPs, the input's bytes
    as memory; its accuracy field (1/num_classes) is the predictor's to set.
    """
    vector = np.zeros(NUM_FEATURES, np.float32)
    vector[len(SLOTS) + 0] = 1.0
    vector[len(SLOTS) + 1] = 1.0
    vector[len(SLOTS) + 5] = math.log1p(math.prod(int(d) for d in input_shape) * BYTES_PER_VALUE)
    return vector
