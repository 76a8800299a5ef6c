"""What a source hands over before validating, splitting, subsetting and normalising."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class RawSplits:
    """A source's arrays as stored: images channels-last, labels integer class indices.

    ``nas.data.validate.validate_raw`` checks them; sources only read.

    Attributes:
      x_train, y_train: the training pool; validation (and test, when the
        source has none) is carved out of it.
      num_classes: number of classes of the labelling; None lets validation
        take one more than the largest label.
      x_val, y_val: a validation split the source defines itself, or None.
      x_test, y_test: the source's official test split, or None.
      source: what was read (``npz file /data/x.npz``), named in error
        messages; None: the dataset name is.
      keys: how the source names arrays whose name differs from the field's
        (an npz pool stores ``x_train`` as ``x``), so messages use the
        user's names; None: the field names.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    num_classes: int | None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    source: str | None = None
    keys: dict[str, str] | None = None
