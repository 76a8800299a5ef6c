"""Sobol points in the unit cube, the space-filling initial design of Deep-n-Cheap (section 4.3)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import qmc


def sobol_unit(dim: int, start: int, n: int, seed: int) -> np.ndarray:
    """Points start .. start + n - 1 of a scrambled Sobol sequence.

    The same (dim, seed) always gives the same sequence, so a resumed search
    continues it where it stopped instead of revisiting its first points.

    Args:
      dim: dimension of the unit cube.
      start: index of the first point.
      n: number of points.
      seed: scrambling seed.

    Returns:
      Array of shape (n, dim) in [0, 1).
    """
    engine = qmc.Sobol(dim, scramble=True, rng=np.random.default_rng(seed))
    if start:
        engine.fast_forward(start)
    with warnings.catch_warnings():
        # Slices of the sequence are not balanced; the design as a whole is.
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(n)


__all__ = ["sobol_unit"]
