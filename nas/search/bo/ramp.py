"""Deep-n-Cheap's ramp-distance kernel as a tinygp kernel (section 2.2.1).

For each hyperparameter k, the ramp distance (eq. 2)

    d_k = omega_k * (|x_ik - x_jk| / (u_k - l_k)) ** r_k

becomes a kernel value exp(-d_k**2 / 2) (eq. 3), and the kernel is the convex
combination sum_k s_k * exp(-d_k**2 / 2) (eq. 4). Per kind of hyperparameter:

- numeric: one distance on the value (log10 value for learning rate and weight
  decay, which the encoding already stores);
- layers (CNN channels): one distance per layer; a layer present in one
  configuration only is at the maximum distance omega_k; the per-layer kernel
  values are averaged over the layers of the deeper configuration (Figure 2:
  s_1 = s_2 = s_3 = 1/3 for a 2-layer vs a 3-layer CNN);
- summed (MLP hidden widths): one distance on the total width.

The kernel works on the fixed-length encoding of `nas.search.bo.space`, so it is
jit-able and vmap-able like any tinygp kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import tinygp

from nas.search.bo.space import KINDS, Space

_NUMERIC, _LAYERS, _SUMMED = (KINDS.index(k) for k in ("numeric", "layers", "summed"))


def ramp_distance(x1, x2, lower, upper, omega, r):
    """Eq. 2: omega * (|x1 - x2| / (upper - lower)) ** r; 0 where upper == lower.

    Args:
      x1, x2: values (arrays broadcast), in the units the bounds are given in.
      lower, upper: the bounds l_k, u_k.
      omega: the maximum distance.
      r: the power stretching small differences (r < 1 stretches them).

    Returns:
      The distance, in [0, omega] for values inside the bounds.
    """
    span = upper - lower
    ratio = jnp.abs(x1 - x2) / jnp.where(span > 0, span, 1.0)
    return jnp.where(span > 0, omega * ratio**r, 0.0)


def squared_exponential(d):
    """Eq. 3: the kernel value exp(-d**2 / 2) of a distance."""
    return jnp.exp(-0.5 * jnp.square(d))


class RampKernel(tinygp.kernels.Kernel):
    """sum_k s_k exp(-d_k**2 / 2) over a `Space` encoding (Deep-n-Cheap eqs. 2-4).

    Build it with `ramp_kernel(space)`. Every field is an array with one entry
    per encoding slot except `weights` (one per hyperparameter, summing to 1).

    Attributes:
      lower, upper: per-slot bounds (of the sum for summed slots).
      omega, r: per-slot maximum distance and power.
      kind: per-slot 0 numeric, 1 layers, 2 summed.
      group: per-slot index of the hyperparameter the slot belongs to.
      lead: 1 on the first slot of each hyperparameter (where a summed term lives).
      weights: s_k / sum(s).
      lengthscale: divides every distance (1 is the paper's kernel; omega acts
        as an inverse length scale, so this is its one shared tuning knob).
    """

    lower: jax.Array
    upper: jax.Array
    omega: jax.Array
    r: jax.Array
    kind: jax.Array
    group: jax.Array
    lead: jax.Array
    weights: jax.Array
    lengthscale: jax.Array | float = 1.0

    def evaluate(self, X1, X2):
        n_terms = self.weights.shape[0]
        layered = self.kind != _NUMERIC
        present1 = ~layered | (X1 > 0)
        present2 = ~layered | (X2 > 0)

        # Summed slots compare the total width; the total lives on the lead slot.
        def group_total(x, present):
            totals = jax.ops.segment_sum(jnp.where(present, x, 0.0), self.group, num_segments=n_terms)
            return totals[self.group]

        summed = self.kind == _SUMMED
        v1 = jnp.where(summed, group_total(X1, present1), X1)
        v2 = jnp.where(summed, group_total(X2, present2), X2)

        d = ramp_distance(v1, v2, self.lower, self.upper, self.omega, self.r)
        # A layer present in one configuration only is at the maximum distance omega.
        d = jnp.where(present1 & present2 | summed, d, self.omega)
        k = squared_exponential(d / self.lengthscale)

        # Which slots count: every numeric slot, the lead slot of a summed term,
        # and the layers present in at least one of the two configurations.
        active = jnp.where(summed, self.lead > 0, present1 | present2).astype(k.dtype)
        counts = jax.ops.segment_sum(active, self.group, num_segments=n_terms)
        sums = jax.ops.segment_sum(k * active, self.group, num_segments=n_terms)
        terms = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), 1.0)  # two empty layer lists are equal
        return jnp.dot(self.weights, terms)


def ramp_kernel(space: Space, lengthscale=1.0) -> RampKernel:
    """The ramp-distance kernel of a space, with its per-hyperparameter s, omega, r."""
    lower, upper, omega, r, kind, group, lead = [], [], [], [], [], [], []
    for g, p in enumerate(space.params):
        lo, hi = p.slot_bounds()
        lower.append(lo)
        upper.append(hi)
        omega.append(np.full(p.width, p.omega))
        r.append(p.slot_powers())
        kind.append(np.full(p.width, KINDS.index(p.kind)))
        group.append(np.full(p.width, g))
        lead.append(np.arange(p.width) == 0)
    s = np.array([p.s for p in space.params], float)
    if s.sum() <= 0:
        raise ValueError(f"the weights s of {[p.name for p in space.params]} sum to zero; give one a positive s")
    cat = np.concatenate
    return RampKernel(
        lower=cat(lower), upper=cat(upper), omega=cat(omega), r=cat(r),
        kind=cat(kind).astype(np.int32), group=cat(group).astype(np.int32), lead=cat(lead).astype(np.int32),
        weights=s / s.sum(), lengthscale=lengthscale)


__all__ = ["RampKernel", "ramp_distance", "ramp_kernel", "squared_exponential"]
