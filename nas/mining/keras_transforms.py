"""Keras's parameter-free transforms that have IR ops: Rescaling, the ReLU family, Reshape, UpSampling2D.

Public Keras classifiers start with ``Rescaling(1./255)`` and MobileNet-style
models end their blocks in ``ReLU(6.0)``; both were blockers on a fresh
sample of public files (experiments/results/miner_coverage.md). This module
says how those layers' arguments map onto the IR ops of the same names
(`TRANSFORM_LAYERS`, registered in `nas.mining.keras_layers.SPECS`) and
which argument values the IR cannot express (`ir_form`).

The ReLU family is written in its most specific IR form, so the rest of
`nas` (Manas's repairs, DREAM's activation edits, the ReLU feedback) sees a
plain activation where there is one: ``ReLU()`` is ``Activation`` relu,
``ReLU(max_value=6)`` relu6, ``LeakyReLU(0.2)`` leaky_relu; anything else
(Keras's default LeakyReLU slope 0.3, other bounds, a threshold) is the IR's
``ReLU`` op with those arguments.

Not here: ``Resizing`` (TensorFlow's image resize has no IR op), per-channel
``Rescaling`` lists, ``UpSampling2D(interpolation='bilinear')``, ``PReLU``
(it has weights) and ``ThresholdedReLU``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class TransformLayer:
    """How one Keras layer's arguments reach its IR op (the fields of `keras_layers.LayerSpec`).

    Attributes:
      op: the IR op the arguments are written for (`ir_form` may pick another).
      kind: the layer's role, a `keras_layers` kind name.
      positional: Keras's positional parameter names, in order.
      args: Keras argument spelling -> IR attribute (or a `keras_layers` directive).
      fixed: IR attributes written when the source omits them (Keras defaults
        that differ from the IR's).
      requires: (argument spellings, accepted values, Keras's default) for
        arguments the IR expresses only at some values.
    """

    op: str
    kind: str
    positional: tuple[str, ...]
    args: Mapping[str, str]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    requires: tuple[tuple[tuple[str, ...], tuple[Any, ...], Any], ...] = ()


_RELU_ARGS = {"max_value": "max_value", "negative_slope": "negative_slope", "threshold": "threshold"}

TRANSFORM_LAYERS: Mapping[str, TransformLayer] = {
    "Rescaling": TransformLayer("Rescaling", "other", ("scale", "offset"), {"scale": "scale", "offset": "offset"}),
    "ReLU": TransformLayer("ReLU", "activation", ("max_value", "negative_slope", "threshold"), _RELU_ARGS),
    # Keras 2 calls the slope alpha, Keras 3 negative_slope; both default to 0.3 (the
    # activation function leaky_relu, which the IR's Activation names, has 0.2).
    "LeakyReLU": TransformLayer("ReLU", "activation", ("negative_slope",),
                                {"alpha": "negative_slope", "negative_slope": "negative_slope"},
                                fixed={"negative_slope": 0.3}),
    "Reshape": TransformLayer("Reshape", "reshape", ("target_shape",), {"target_shape": "target_shape"}),
    "UpSampling2D": TransformLayer("UpSampling2D", "reshape", ("size", "data_format", "interpolation"),
                                   {"size": "size", "data_format": "@data_format"},
                                   requires=((("interpolation",), ("nearest",), "nearest"),)),
}

# The ReLU layer's special cases that the IR names as activations: (max_value, slope, threshold) -> fn.
_NAMED_RELUS = {(None, 0.0, 0.0): "relu", (6.0, 0.0, 0.0): "relu6", (None, 0.2, 0.0): "leaky_relu"}


def _number(value: Any, name: str, *, non_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} has no IR equivalent (a number is needed)")
    if non_negative and value < 0:
        raise ValueError(f"{name}={value!r}: Keras refuses a negative {name}")
    return float(value)


def ir_form(keras: str, attrs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The IR op and attributes for a translated transform layer whose arguments are all known.

    Args:
      keras: the Keras class name (a key of `TRANSFORM_LAYERS`).
      attrs: the IR attributes the layer table wrote.
    Returns:
      (op, attrs), with the ReLU family in its most specific form.
    Raises:
      ValueError: an argument value the IR cannot express (the message says which).
    """
    attrs = dict(attrs)
    if keras == "Rescaling":
        if isinstance(attrs.get("scale"), (list, tuple)) or isinstance(attrs.get("offset"), (list, tuple)):
            raise ValueError("a per-channel scale or offset has no IR equivalent (the IR's are scalars)")
        return "Rescaling", {k: _number(v, k) for k, v in attrs.items()}
    if keras in ("ReLU", "LeakyReLU"):
        max_value = attrs.get("max_value")
        settings = (None if max_value is None else _number(max_value, "max_value", non_negative=True),
                    _number(attrs.get("negative_slope", 0.0), "negative_slope", non_negative=True),
                    _number(attrs.get("threshold", 0.0), "threshold", non_negative=True))
        if settings in _NAMED_RELUS:
            return "Activation", {"fn": _NAMED_RELUS[settings]}
        written = dict(zip(("max_value", "negative_slope", "threshold"), settings))
        return "ReLU", {k: v for k, v in written.items() if v != (None if k == "max_value" else 0.0)}
    if keras == "Reshape":
        target = attrs.get("target_shape")
        if isinstance(target, list):
            target = tuple(target)
        if not isinstance(target, tuple) or not target or not all(
                isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in target):
            raise ValueError(f"target_shape={target!r} has no IR equivalent (positive sizes and one -1 at most)")
        if target.count(-1) > 1:
            raise ValueError(f"target_shape={target!r}: Keras infers one -1 at most")
        return "Reshape", {"target_shape": target}
    return TRANSFORM_LAYERS[keras].op, attrs
