"""Multi-step fine-tuning of a pre-trained body: which weights train at which step (`FineTuneConfig`).

DREAM's fine-tuning actions (TOSEM'24 s4.1, Table 1 rows 6-10) follow the
Keras transfer-learning guide (the paper's refs [6], [10]): train a new head
on a frozen pre-trained body, then unfreeze (part of) the body and train on
at a lower learning rate. Here one run does all steps in one compiled
program: `plan` turns a `FineTuneConfig` and the architecture into a
`FineTunePlan` (per body node, whether it trains in each step; where each
step begins, in optimiser steps; each step's learning-rate factor), and

- `transformation(plan)` is an optax transformation that `make_optimizer`
  appends to its chain: it counts optimiser steps in its own state, reads the
  current step from that count, multiplies every update by the step's
  learning-rate factor (step k: ``step_lr ** (k - 1)``) and replaces the
  updates of frozen nodes by exact zeros. Being last in the chain, it masks
  weight decay too: a frozen weight does not change at all.
- `freeze_batch_stats` keeps the running statistics of frozen BatchNorm
  nodes (the epoch step calls it with the optimiser state it is about to
  update, so both read the same step).

What differs from Keras: Keras runs a frozen BatchNormalization layer in
inference mode (its moving statistics normalise the batch); here a frozen
BatchNorm keeps its scale, bias and running statistics unchanged but still
normalises each training batch with the batch's own statistics, as the
compiled module has one training mode for the whole graph. And Keras builds
a fresh optimiser at each step's ``compile``; here the optimiser state runs
on through the steps (a frozen weight's moment estimates keep seeing its
gradients, so it thaws with warm moments). Evaluation is the same in both.

Every member of a population shares its `FineTuneConfig` (it is part of
`TrainConfig.shared_part`), so one plan serves the vmapped program; each
member's step count lives in its own optimiser state.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nas.ir import Arch
from nas.train.config import FineTuneConfig


@dataclasses.dataclass(frozen=True)
class FineTunePlan:
    """What trains when, for one architecture and run length.

    Attributes:
      trainable: body node id -> whether it trains in step 1, 2, ...; nodes
        that train in every step (the head, new layers, thawed nodes under
        ``freeze=no`` with one step) are left out, so they cost nothing.
      boundaries: the optimiser step at which each later step begins
        (steps - 1 increasing counts; empty for one step).
      lr_factors: each step's learning-rate factor (step k: step_lr ** (k - 1)).
      batchnorm: the BatchNorm nodes among `trainable` (their running
        statistics freeze with them).
    """

    trainable: Mapping[str, tuple[bool, ...]]
    boundaries: tuple[int, ...]
    lr_factors: tuple[float, ...]
    batchnorm: frozenset[str]

    def __hash__(self) -> int:  # Mapping is not hashable; the plan keys compiled programs' helpers
        return hash((tuple(sorted(self.trainable.items())), self.boundaries, self.lr_factors, self.batchnorm))

    def step_at(self, count: int) -> int:
        """The 0-based fine-tuning step that optimiser step `count` (0-based) belongs to (host side)."""
        return sum(count >= b for b in self.boundaries)

    def lr_factor_at(self, count: int) -> float:
        return self.lr_factors[self.step_at(count)]


def body_halves(config: FineTuneConfig, arch: Arch) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The body's nodes with weights, in topological order, split into (earlier half, later half).

    The split is over the weight layers (every op with weights but BatchNorm):
    the later half is the last ceil(n / 2) of them; a BatchNorm node goes with
    the weight layer before it (before any: the earlier half).
    """
    body = set(config.body)
    nodes = [n for n in arch.topological_order() if n.id in body and n.spec.trainable]
    layers = [n for n in nodes if n.op != "BatchNorm"]
    if not layers:
        return tuple(n.id for n in nodes), ()
    first_late = layers[len(layers) // 2].id
    cut = next(i for i, n in enumerate(nodes) if n.id == first_late)
    return tuple(n.id for n in nodes[:cut]), tuple(n.id for n in nodes[cut:])


def plan(config: FineTuneConfig, arch: Arch, total_steps: int) -> FineTunePlan | None:
    """The plan of `config` for `arch` over a run of `total_steps` optimiser steps (None: not fine-tuning).

    Step k of s: steps = 1 trains the body per `freeze` throughout; with
    more, step 1 trains the head only, step 2 of 3 thaws the body's later
    half (`body_halves`) and the last step the whole body, each minus what
    `freeze` keeps frozen (``all``: the body; ``bn``: its BatchNorm nodes).
    Thawing never reverses: under ``freeze=all`` the later half stays frozen
    in step 2 of 3 too, as it would be frozen again in step 3.

    Raises:
      ValueError: `config.body` names no node with weights of `arch`.
    """
    if not config.enabled:
        return None
    earlier, later = body_halves(config, arch)
    body = earlier + later
    if not body:
        raise ValueError(f"train.finetune.body {list(config.body)} names no node with weights of "
                         f"{arch.name or 'the architecture'}")
    batchnorm = frozenset(i for i in body if arch.node(i).op == "BatchNorm")
    kept_frozen = {"no": frozenset(), "all": frozenset(body), "bn": batchnorm}[config.freeze]
    thawed = {1: [frozenset(body)], 2: [frozenset(), frozenset(body)],
              3: [frozenset(), frozenset(later), frozenset(body)]}[config.steps]
    trainable = {}
    for node_id in body:
        by_step = tuple(node_id in t and node_id not in kept_frozen for t in thawed)
        if not all(by_step):
            trainable[node_id] = by_step
    boundaries = tuple(int(j * config.step_fraction * total_steps + 0.5) for j in range(1, config.steps))
    lr_factors = tuple(config.step_lr ** k for k in range(config.steps))
    return FineTunePlan(trainable, boundaries, lr_factors, frozenset(batchnorm & set(trainable)))


# ------------------------------------------------------------------ on device
class FineTuneState(NamedTuple):
    """The transformation's state: optimiser steps taken (int32)."""

    count: jax.Array


def _step(fine_tune: FineTunePlan, count: jax.Array) -> jax.Array | int:
    """The 0-based step of optimiser step `count` (traced); a Python 0 for one-step plans (static masks)."""
    if not fine_tune.boundaries:
        return 0
    return jnp.sum(count >= jnp.asarray(fine_tune.boundaries, jnp.int32)).astype(jnp.int32)


def _allowed(fine_tune: FineTunePlan, node_id: str, step) -> Any:
    by_step = fine_tune.trainable[node_id]
    return by_step[step] if isinstance(step, int) else jnp.asarray(by_step)[step]


def _node_of(path) -> str:
    """The node id a params leaf belongs to (the first key of its path)."""
    first = path[0]
    return getattr(first, "key", getattr(first, "name", None))


def transformation(fine_tune: FineTunePlan) -> optax.GradientTransformation:
    """Scales updates by the step's learning-rate factor and zeroes those of frozen nodes (append it last)."""

    def init(params):
        del params
        return FineTuneState(jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        step = _step(fine_tune, state.count)
        factors = fine_tune.lr_factors
        factor = None if all(f == 1.0 for f in factors) else (
            factors[step] if isinstance(step, int) else jnp.asarray(factors)[step])

        def leaf(path, u):
            if factor is not None:
                u = u * jnp.asarray(factor, u.dtype)
            node_id = _node_of(path)
            if node_id in fine_tune.trainable:
                allowed = _allowed(fine_tune, node_id, step)
                # where, not a product: a frozen weight gets exactly 0 even from a non-finite update.
                u = (u if allowed else jnp.zeros_like(u)) if isinstance(allowed, bool) else \
                    jnp.where(allowed, u, jnp.zeros_like(u))
            return u

        return jax.tree_util.tree_map_with_path(leaf, updates), FineTuneState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def _fine_tune_state(opt_state: Any) -> FineTuneState:
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, FineTuneState))
             if isinstance(s, FineTuneState)]
    if len(found) != 1:
        raise ValueError(f"the optimiser state holds {len(found)} fine-tuning states; build the optimiser with "
                         "make_optimizer(..., finetune=plan)")
    return found[0]


def freeze_batch_stats(fine_tune: FineTunePlan, opt_state: Any, old: dict, new: dict) -> dict:
    """`new` running statistics, with frozen BatchNorm nodes' kept at `old` (step read from `opt_state`)."""
    if not fine_tune.batchnorm:
        return new
    step = _step(fine_tune, _fine_tune_state(opt_state).count)
    out = dict(new)
    for node_id in fine_tune.batchnorm & set(new):
        allowed = _allowed(fine_tune, node_id, step)
        if isinstance(allowed, bool):
            out[node_id] = new[node_id] if allowed else old[node_id]
        else:
            out[node_id] = jax.tree.map(lambda a, b: jnp.where(allowed, a, b), new[node_id], old[node_id])
    return out


__all__ = ["FineTunePlan", "FineTuneState", "body_halves", "freeze_batch_stats", "plan", "transformation"]
