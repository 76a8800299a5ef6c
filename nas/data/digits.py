"""scikit-learn's bundled 8x8 handwritten digits (UCI), no download involved."""

from __future__ import annotations

import numpy as np

from nas.data.raw import RawSplits


def read_digits() -> RawSplits:
    """The 1797 digits as one pool (the data set has no official split).

    Returns:
      float32 images (1797, 8, 8, 1) with intensities 0..16 scaled to [0, 1],
      like every other image source, and labels 0..9.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    return RawSplits(images, bunch.target.astype(np.int64), num_classes=10)
