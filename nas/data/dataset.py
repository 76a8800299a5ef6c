"""The in-memory dataset every source produces: arrays plus what a search needs to know."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

Task = Literal["classification", "regression"]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Fixed train/val/test splits of one dataset, already normalised.

    Images are channels-last float32 (N, H, W, C); sequences/tables may be any
    per-example shape. Targets are int32 class indices for classification and
    float32 scalars for regression (Manas's image regression: class index as
    the numeric target).

    Attributes:
      name: source name as the user wrote it (``digits``, ``fashion_mnist``...).
      task: ``classification`` or ``regression``.
      input_shape: per-example shape, without the batch axis.
      num_classes: number of classes of the underlying labelling (kept for
        regression too, where it is the number of distinct targets).
      x_train, y_train, x_val, y_val, x_test, y_test: the splits.
      mean, std: per-channel statistics of the raw training split that were
        used to normalise every split (so a user can normalise new inputs).
      seed: the seed that fixed the splits.
    """

    name: str
    task: Task
    input_shape: tuple[int, ...]
    num_classes: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seed: int = 0

    @property
    def channels(self) -> int:
        return int(self.input_shape[-1])

    @property
    def num_outputs(self) -> int:
        """Width of the network's head: one per class, or 1 for regression."""
        return self.num_classes if self.task == "classification" else 1

    def metadata(self) -> dict:
        """JSON-ready description (Manas's dataset intent plus split sizes)."""
        height, width = self.input_shape[:2] if len(self.input_shape) == 3 else (None, None)
        return {
            "name": self.name,
            "task": self.task,
            "input_shape": list(self.input_shape),
            "height": height,
            "width": width,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "num_train": int(len(self.x_train)),
            "num_val": int(len(self.x_val)),
            "num_test": int(len(self.x_test)),
            "seed": self.seed,
        }
