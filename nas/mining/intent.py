"""A mined model's intent (Manas section 4.2): input size and channels, classes, task.

The input height, width and channels come from the input layer's shape
(channels-last, as the IR stores it), the number of classes from the units of
the last Dense layer, and the task from the compiled loss, or failing that
from the output activation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nas.mining.model import MinedModel

CLASSIFICATION, REGRESSION, UNKNOWN = "classification", "regression", "unknown"

_CLASSIFICATION_LOSSES = frozenset({
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy", "hinge",
    "squared_hinge", "categorical_hinge", "kullback_leibler_divergence", "kld", "poisson",
})
_REGRESSION_LOSSES = frozenset({
    "mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "huber", "huber_loss", "logcosh",
    "log_cosh",
})


@dataclasses.dataclass(frozen=True)
class Intent:
    """What a model was built for.

    Attributes:
      height, width: the input's spatial size (None when the input is not an
        image or its shape is unknown; a sequence ``[L, C]`` has height L).
      channels: the input's last axis (None when unknown).
      classes: units of the last Dense layer (None when there is none or it is unresolved).
      task: ``"classification"``, ``"regression"`` or ``"unknown"``.
    """

    height: int | None = None
    width: int | None = None
    channels: int | None = None
    classes: int | None = None
    task: str = UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Intent":
        return cls(**{f.name: doc.get(f.name, f.default) for f in dataclasses.fields(cls)})


def model_intent(model: MinedModel) -> Intent:
    """The intent of a mined model.

    Args:
      model: the model (its layers are read, so models without an arch have an intent too).
    Returns:
      The `Intent`; fields the model does not determine are None / ``"unknown"``.
    """
    shape = next((layer.attrs.get("shape") for layer in model.layers if layer.op == "Input"), None)
    height = width = channels = None
    if shape is not None:
        shape = tuple(shape)
        channels = shape[-1]
        if len(shape) >= 2:
            height = shape[0]
        if len(shape) >= 3:
            width = shape[1]
    dense = [layer for layer in model.layers if layer.op == "Dense" or layer.keras == "Dense"]
    classes = dense[-1].attrs.get("units") if dense else None
    if not isinstance(classes, int) or isinstance(classes, bool):
        classes = None
    return Intent(height, width, channels, classes, _task(model))


def _task(model: MinedModel) -> str:
    loss = (model.loss or "").lower()
    if loss in _CLASSIFICATION_LOSSES:
        return CLASSIFICATION
    if loss in _REGRESSION_LOSSES:
        return REGRESSION
    outputs = set(model.arch.outputs) if model.arch is not None else {model.layers[-1].id} if model.layers else set()
    heads = [layer for layer in model.layers if layer.id in outputs]
    if heads and all(layer.op == "Activation" and layer.attrs.get("fn") in ("softmax", "sigmoid") for layer in heads):
        return CLASSIFICATION
    return UNKNOWN
