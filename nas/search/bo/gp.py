"""A tinygp Gaussian process on standardised observations, with fixed-shape padding.

Observations live in arrays padded to a bucket size with a mask: padded rows
get a huge noise variance, so they do not move the posterior, and a jitted
caller traces once per bucket instead of once per observation (OSS Vizier pads
for the same reason). Kernel amplitude, length scale and noise are chosen by
maximum marginal likelihood over a small grid, which is robust with the 15-30
points a Deep-n-Cheap search has.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import tinygp

PAD_NOISE = 1e10  # noise variance of a padded row: its value carries no information


class Hyperparameters(NamedTuple):
    """GP hyperparameters; scalars for one GP, equal-length vectors for a grid."""

    amplitude: jax.Array
    lengthscale: jax.Array
    noise: jax.Array


def hyperparameter_grid(amplitudes, lengthscales, noises) -> Hyperparameters:
    """The Cartesian product of candidate values, flattened."""
    a, l, n = jnp.meshgrid(jnp.asarray(amplitudes, float), jnp.asarray(lengthscales, float),
                           jnp.asarray(noises, float), indexing="ij")
    return Hyperparameters(a.ravel(), l.ravel(), n.ravel())


def standardise(y, mask):
    """(y - mean) / std over the rows in mask; padded rows become 0.

    Returns:
      (z, mean, std); std is 1 when the masked values are all equal.
    """
    m = mask.astype(y.dtype)
    count = jnp.maximum(m.sum(), 1.0)
    mean = jnp.sum(jnp.where(mask, y, 0.0)) / count
    var = jnp.sum(jnp.where(mask, jnp.square(y - mean), 0.0)) / count
    std = jnp.where(var > 0, jnp.sqrt(var), 1.0)
    return jnp.where(mask, (y - mean) / std, 0.0), mean, std


def gaussian_process(kernel, X, mask, noise) -> tinygp.GaussianProcess:
    """A zero-mean GP over rows X; rows outside mask are padding."""
    diag = noise + jnp.where(mask, 0.0, PAD_NOISE)
    return tinygp.GaussianProcess(kernel, X, diag=diag)


def log_likelihood(kernel, X, z, mask, noise):
    """Log marginal likelihood of standardised z (padding adds a constant only)."""
    return gaussian_process(kernel, X, mask, noise).log_probability(jnp.where(mask, z, 0.0))


def posterior(kernel, X, z, mask, noise, X_test):
    """Posterior mean and variance of the latent function at X_test.

    Args:
      kernel: a tinygp kernel.
      X: (N, D) observed inputs, padded.
      z: (N,) standardised observations.
      mask: (N,) bool, True for real rows.
      noise: observation noise variance.
      X_test: (M, D) query inputs.

    Returns:
      (mean, var), each of shape (M,), var >= 0 (it includes tinygp's
      sqrt(machine epsilon) jitter).
    """
    gp = gaussian_process(kernel, X, mask, noise)
    # Under jit only the diagonal is computed: the unused (M, M) covariance and
    # its Cholesky factor are dead code.
    _, cond = gp.condition(jnp.where(mask, z, 0.0), X_test)
    return cond.loc, jnp.maximum(cond.variance, 0.0)


def fit_hyperparameters(make_kernel: Callable, base, X, z, mask, grid: Hyperparameters) -> Hyperparameters:
    """The grid point of highest marginal likelihood.

    Args:
      make_kernel: make_kernel(base, amplitude, lengthscale) -> tinygp kernel.
      base: the kernel's fixed parts (a pytree).
      X, z, mask: padded observations, as in `posterior`.
      grid: candidate hyperparameters (vectors of equal length).

    Returns:
      The chosen hyperparameters (scalars).
    """
    def score(h):
        return log_likelihood(make_kernel(base, h.amplitude, h.lengthscale), X, z, mask, h.noise)

    scores = jax.vmap(score)(grid)
    best = jnp.argmax(jnp.where(jnp.isfinite(scores), scores, -jnp.inf))
    return jax.tree_util.tree_map(lambda v: v[best], grid)


__all__ = ["Hyperparameters", "fit_hyperparameters", "gaussian_process", "hyperparameter_grid",
           "log_likelihood", "posterior", "standardise"]
