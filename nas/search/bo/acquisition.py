"""Expected improvement for minimisation (Brochu et al. 2010, eq. 4; Deep-n-Cheap section 2.2)."""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.stats import norm


def expected_improvement(mean, std, best, xi=0.0):
    """E[max(best - xi - f, 0)] for f ~ N(mean, std**2), elementwise.

    Safe at std -> 0, where it tends to max(best - xi - mean, 0). Jit-able and
    broadcasting over its arguments.

    Args:
      mean: posterior means.
      std: posterior standard deviations (>= 0).
      best: the best (lowest) value observed so far.
      xi: exploration margin (Deep-n-Cheap's appendix uses 1e-4).

    Returns:
      The expected improvement, >= 0, with the broadcast shape of the inputs.
    """
    mean, std = jnp.asarray(mean), jnp.asarray(std)
    improvement = best - xi - mean
    tiny = jnp.finfo(jnp.result_type(mean, std, float)).tiny ** 0.5
    positive = std > tiny
    safe_std = jnp.where(positive, std, 1.0)
    z = improvement / safe_std
    ei = improvement * norm.cdf(z) + safe_std * norm.pdf(z)
    return jnp.maximum(jnp.where(positive, ei, improvement), 0.0)


__all__ = ["expected_improvement"]
