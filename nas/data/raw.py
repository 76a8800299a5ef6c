"""What a source hands over before splitting, subsetting and normalising."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class RawSplits:
    """A source's arrays as stored: images channels-last, labels integer class indices.

    Attributes:
      x_train, y_train: the training pool; validation (and test, when the
        source has none) is carved out of it.
      x_val, y_val: a validation split the source defines itself, or None.
      x_test, y_test: the source's official test split, or None.
      num_classes: number of classes of the labelling.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    num_classes: int
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
