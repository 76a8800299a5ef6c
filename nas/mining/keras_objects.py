"""The Keras objects of the miner's interpreter: layers not yet applied, tensors, models, optimizers.

A tensor is the uid of the graph node (`nas.mining.assemble.Proto`) that
produced it; a layer object remembers its `LayerCall` and where it was made.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nas.mining.assemble import Proto
from nas.mining.keras_layers import LayerCall


@dataclasses.dataclass(eq=False)
class _Layer:
    """A Keras layer object, not yet applied.

    ``loops`` are markers it carries wherever it is applied: a layer made in a
    loop of unknown count and collected in a list the loop grows
    (``layers.append(Dense(4))``, then ``Sequential(layers)``) is repeated an
    unknown number of times too.
    """

    uid: int
    call: LayerCall
    line: int
    loops: tuple[str, ...] = ()


@dataclasses.dataclass(eq=False)
class _Tensor:
    uid: int


@dataclasses.dataclass(eq=False)
class _ModelState:
    uid: int
    line: int
    optimizer: dict[str, Any] | None = None
    loss: str | None = None
    consumed: bool = False
    compiled: bool = False
    build_shape: Any = None


@dataclasses.dataclass(eq=False)
class _Sequential(_ModelState):
    # (kind, payload, line, loop markers, stamp); the stamp orders items across all models of a run.
    items: list[tuple[str, Any, int, tuple[str, ...], int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class _Functional(_ModelState):
    inputs: tuple[int, ...] = ()
    outputs: tuple[int, ...] = ()


@dataclasses.dataclass(eq=False)
class _App:
    """A pretrained Keras application (VGG16, ResNet50...): an opaque layer with an input."""

    name: str
    input_uid: int
    output_uid: int
    protos: tuple[Proto, ...]


@dataclasses.dataclass(eq=False)
class _Optimizer:
    config: dict[str, Any]
