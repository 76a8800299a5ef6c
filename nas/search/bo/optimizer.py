"""GP + expected-improvement Bayesian optimisation on the init/ask/tell contract.

Deep-n-Cheap's BO (section 2.2): n1 Sobol points, then n2 steps that each draw
n3 random configurations and propose the one of highest expected improvement
under a GP fitted to everything observed so far (minimisation). Here n1 is
`n_initial`, n3 is `n_candidates`, and n2 is however often `ask` is called.

The state is plain data: the space, the settings and the trial history. The
proposal after t issued trials depends only on (seed, t, history, pending), so
`recover(space, history, seed)` rebuilds a state that proposes exactly what the
live one would, e.g. after a killed search is resumed from its trial store.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Iterable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import tinygp

from nas.search.bo.acquisition import expected_improvement
from nas.search.bo.gp import (Hyperparameters, fit_hyperparameters, hyperparameter_grid, posterior,
                              standardise)
from nas.search.bo.ramp import RampKernel, ramp_kernel
from nas.search.bo.sobol import sobol_unit
from nas.search.bo.space import Config, Hyperparameter, Space, canonical, decode, encode, from_unit

BUCKET = 16  # observation arrays are padded to a multiple of this: one trace per bucket

# Grids searched by marginal likelihood on standardised observations. The ramp
# kernel keeps the paper's omega (length scale 1); stationary kernels work on
# the unit box, so their length scales are fractions of its side.
RAMP_GRID = ((0.5, 1.0, 2.0), (1.0,), (1e-6, 1e-4, 1e-2))
BOX_GRID = ((0.5, 1.0, 2.0, 4.0), (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0), (1e-6, 1e-4, 1e-2))


@dataclasses.dataclass(frozen=True)
class BayesOptState:
    """Everything a GP + EI search knows; plain data, so it serialises as is.

    Attributes:
      space: what is searched.
      seed: seeds the Sobol scrambling and the candidate draws.
      n_initial: Sobol points before the GP takes over (Deep-n-Cheap's n1).
      n_candidates: random configurations scored per proposal (n3).
      xi: EI exploration margin, in standard deviations of the observations.
      gp_grid: (amplitudes, length scales, noise variances) searched by
        marginal likelihood.
      issued: proposals made so far (indexes the Sobol sequence and the keys).
      history: (config, value) observations, in the order told; value may be
        non-finite (a failed trial).
      pending: proposals not yet told.
    """

    space: Space
    seed: int
    n_initial: int = 15
    n_candidates: int = 1000
    xi: float = 1e-4
    gp_grid: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] = RAMP_GRID
    issued: int = 0
    history: tuple[tuple[Config, float], ...] = ()
    pending: tuple[Config, ...] = ()


def _seed(key_or_seed) -> int:
    if isinstance(key_or_seed, (int, np.integer)):
        return int(key_or_seed)
    return int(jax.random.randint(key_or_seed, (), 0, np.iinfo(np.int32).max))


def init(space: Space, key_or_seed, n_initial: int = 15, n_candidates: int = 1000, xi: float = 1e-4,
         gp_grid=None) -> BayesOptState:
    """A fresh search.

    Args:
      space: the space; `space.kernel` picks the GP kernel.
      key_or_seed: an int seed or a jax PRNG key (turned into an int seed).
      n_initial: Sobol points first (Deep-n-Cheap: 15).
      n_candidates: random candidates scored by EI per proposal (Deep-n-Cheap: 1000).
      xi: EI margin (Deep-n-Cheap: 1e-4).
      gp_grid: (amplitudes, length scales, noises); None picks a default for the kernel.

    Returns:
      The initial state.
    """
    if n_initial < 1 or n_candidates < 1:
        raise ValueError(f"n_initial and n_candidates must be >= 1, got {n_initial} and {n_candidates}")
    grid = gp_grid if gp_grid is not None else (RAMP_GRID if space.kernel == "ramp" else BOX_GRID)
    grid = tuple(tuple(float(v) for v in g) for g in grid)
    return BayesOptState(space, _seed(key_or_seed), int(n_initial), int(n_candidates), float(xi), grid)


def _observations(state: BayesOptState) -> tuple[np.ndarray, np.ndarray]:
    """Encoded inputs and values; a non-finite value counts as the worst finite one, or is skipped."""
    finite = [v for _, v in state.history if math.isfinite(v)]
    worst = max(finite) if finite else None
    rows = [(encode(state.space, c), v if math.isfinite(v) else worst)
            for c, v in state.history if math.isfinite(v) or worst is not None]
    X = np.stack([r[0] for r in rows]) if rows else np.zeros((0, state.space.dim))
    return X, np.array([r[1] for r in rows], float)


def _base_kernel(space: Space):
    if space.kernel == "ramp":
        return ramp_kernel(space)
    lo, hi = (np.concatenate(b) for b in zip(*(p.slot_bounds() for p in space.params)))  # one-hot: several slots
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    stationary = {"matern52": tinygp.kernels.Matern52, "rbf": tinygp.kernels.ExpSquared}[space.kernel]
    # The unit box: length scales are fractions of each side.
    return tinygp.transforms.Linear(1.0 / span, stationary(scale=1.0, distance=tinygp.kernels.distance.L2Distance()))


def _kernel_at(base, amplitude, lengthscale):
    """amplitude * base at the given length scale."""
    if isinstance(base, RampKernel):
        scaled = eqx.tree_at(lambda k: k.lengthscale, base, lengthscale)
    else:
        scaled = eqx.tree_at(lambda k: k.kernel.scale, base, lengthscale)
    return tinygp.kernels.Constant(amplitude) * scaled


@functools.partial(jax.jit, static_argnames=("make_kernel",))
def _acquire(make_kernel, base, grid: Hyperparameters, X, y, observed, pending, X_candidates, xi):
    """EI of every candidate under the GP fitted to the observed rows.

    Pending rows (proposed, not yet told) enter with their posterior mean as a
    fantasy value (the "kriging believer"), so a batch spreads out.
    """
    z, _, _ = standardise(y, observed)
    h = fit_hyperparameters(make_kernel, base, X, z, observed, grid)
    kernel = make_kernel(base, h.amplitude, h.lengthscale)
    fantasy, _ = posterior(kernel, X, z, observed, h.noise, X)
    z = jnp.where(observed, z, jnp.where(pending, fantasy, 0.0))
    mean, var = posterior(kernel, X, z, observed | pending, h.noise, X_candidates)
    best = jnp.min(jnp.where(observed, z, jnp.inf))
    return expected_improvement(mean, jnp.sqrt(var), best, xi), h


def _propose_ei(state: BayesOptState, X_obs, y_obs, pending: Sequence[Config], t: int) -> np.ndarray:
    space = state.space
    X_pend = np.stack([encode(space, c) for c in pending]) if pending else np.zeros((0, space.dim))
    rows = len(X_obs) + len(X_pend)
    size = BUCKET * max(1, math.ceil(rows / BUCKET))
    X = np.zeros((size, space.dim))
    X[:rows] = np.concatenate([X_obs, X_pend])
    X[rows:] = X[0]  # padding rows copy a real one, so every row is a valid encoding
    y = np.zeros(size)
    y[:len(y_obs)] = y_obs
    observed = np.arange(size) < len(X_obs)
    pending_mask = (np.arange(size) >= len(X_obs)) & (np.arange(size) < rows)
    with jax.enable_x64(True):  # a GP on 15-30 points wants float64 Cholesky factors
        key = jax.random.fold_in(jax.random.key(state.seed), t)
        U = np.asarray(jax.random.uniform(key, (state.n_candidates, space.unit_dim), dtype=jnp.float64))
        X_cand = from_unit(space, U)
        grid = hyperparameter_grid(*state.gp_grid)
        ei, _ = _acquire(_kernel_at, _base_kernel(space), grid, jnp.asarray(X), jnp.asarray(y),
                         jnp.asarray(observed), jnp.asarray(pending_mask), jnp.asarray(X_cand), state.xi)
        return X_cand[int(jnp.argmax(ei))]


def ask(state: BayesOptState, n: int = 1) -> tuple[BayesOptState, list[Config]]:
    """The next n configurations to evaluate.

    Sobol points while fewer than `n_initial` have been issued (or fewer than
    two observations are usable), then the EI-argmax of `n_candidates` random
    configurations each.

    Returns:
      (new state with the proposals pending, list of configurations).
    """
    X_obs, y_obs = _observations(state)
    pending = list(state.pending)
    proposals = []
    for t in range(state.issued, state.issued + n):
        if t < state.n_initial or len(y_obs) < 2:
            x = from_unit(state.space, sobol_unit(state.space.unit_dim, t, 1, state.seed))[0]
        else:
            x = _propose_ei(state, X_obs, y_obs, pending, t)
        config = decode(state.space, x)
        proposals.append(config)
        pending.append(config)
    return dataclasses.replace(state, issued=state.issued + n, pending=tuple(pending)), proposals


def tell(state: BayesOptState, results: Iterable[tuple[Mapping[str, Any], float]]) -> BayesOptState:
    """Record (config, value) observations; lower is better, non-finite means failed."""
    history, pending = list(state.history), list(state.pending)
    for config, value in results:
        config = canonical(state.space, config)
        if config in pending:
            pending.remove(config)
        history.append((config, float(value)))
    return dataclasses.replace(state, history=tuple(history), pending=tuple(pending))


def best(state: BayesOptState) -> tuple[Config, float] | None:
    """The (config, value) of lowest finite value, or None before any."""
    finite = [(c, v) for c, v in state.history if math.isfinite(v)]
    return min(finite, key=lambda cv: cv[1]) if finite else None


def recover(space: Space, history: Iterable[tuple[Mapping[str, Any], float]], key_or_seed,
            **settings) -> BayesOptState:
    """The state after `history`, as if every trial in it had been asked and told in order.

    Args:
      space, key_or_seed, settings: as given to `init`.
      history: the (config, value) trials, e.g. read back from a trial store.
    """
    state = tell(init(space, key_or_seed, **settings), history)
    return dataclasses.replace(state, issued=len(state.history))


def to_dict(state: BayesOptState) -> dict:
    """A JSON-ready dict of the state."""
    return dataclasses.asdict(state)


def from_dict(d: Mapping[str, Any]) -> BayesOptState:
    """The state of `to_dict`, also after a JSON round trip (lists back to tuples)."""
    def param(p):
        p = dict(p)
        p["layers"] = tuple(p["layers"])
        if isinstance(p["r"], list):
            p["r"] = tuple(p["r"])
        return Hyperparameter(**p)

    space = Space(tuple(param(p) for p in d["space"]["params"]), d["space"]["kernel"])
    return BayesOptState(
        space=space, seed=int(d["seed"]), n_initial=int(d["n_initial"]), n_candidates=int(d["n_candidates"]),
        xi=float(d["xi"]), gp_grid=tuple(tuple(float(v) for v in g) for g in d["gp_grid"]),
        issued=int(d["issued"]),
        history=tuple((canonical(space, c), float(v)) for c, v in d["history"]),
        pending=tuple(canonical(space, c) for c in d["pending"]))


__all__ = ["BayesOptState", "ask", "best", "from_dict", "init", "recover", "tell", "to_dict"]
