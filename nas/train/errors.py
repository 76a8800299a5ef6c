"""Errors the trainer raises before it compiles anything; each names what to change."""

from __future__ import annotations

from typing import Any


class TrainConfigError(ValueError):
    """A training setting has the wrong type or lies outside its range.

    Attributes:
      key: the setting's config path (``train.epochs``, ``optimizer.learning_rate``).
      value: the value given.
      expected: what the setting accepts, in words.
    """

    def __init__(self, key: str, value: Any, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key} must be {expected}, got {value!r} ({type(value).__name__})")


class ModelTooLargeError(ValueError):
    """An architecture's estimated training memory exceeds the configured limits.

    Raised before the model is compiled or initialised, so an oversized model
    costs nothing; in a search it becomes one failed trial.
    """


class OutputShapeError(ValueError):
    """An architecture's output does not fit the dataset's targets (a 3-unit head for 10 classes)."""
