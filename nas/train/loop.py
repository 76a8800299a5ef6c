"""On-device training: one jitted epoch is a `lax.scan` over shuffled batches.

The whole split lives on the device; a step gathers its batch by index. A
population of K candidates that share an architecture trains as one program:
the epoch function is vmapped over stacked parameters, optimiser states
(which hold each member's learning rate and weight decay) and PRNG keys.
A single candidate runs the same epoch function without vmap.

Per epoch, the step also collects cheap feedback for DREAM-style monitors
(`TrainConfig.feedback`): per layer (node id with parameters) the L2 norm of
its gradient, averaged over the epoch's steps; per ReLU node the fraction of
its units (output elements per example: features, or (position, channel)
cells of a feature map) whose loss gradient at the pre-activation is exactly
zero for every example of the step's batch, averaged over the steps; and,
always, whether the loss or weights went non-finite. A candidate whose loss or
weights go non-finite is frozen and reported as ``diverged``; it never raises.

A fine-tuning run (`TrainConfig.finetune` names a pre-trained body) adds
`nas.train.finetune`'s transformation to the optimiser and keeps frozen
BatchNorm nodes' running statistics; without one the program is exactly
what it was before fine-tuning existed.

Before compiling anything, training checks that the architecture's output
fits the dataset's targets and that its estimated memory is within
`TrainConfig.limits` (`nas.train.guards`); a bad setting cannot get this far
(`TrainConfig` validates itself).

The trainer computes in the training inputs' dtype: float32, or float64 when
the data is float64 under JAX's x64 mode (the tests compare programs there,
where their rounding is 1e-16 instead of 1e-7).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas.compile import PROBES, ArchModule, init_variables, to_flax
from nas.data import Dataset
from nas.ir import Arch
from nas.status import DIVERGED, DONE, NO_SCORE
from nas.train import finetune as fine_tuning
from nas.train.config import TrainConfig
from nas.train.guards import check_output_shape, check_size
from nas.train.optim import learning_rate_multiplier, make_optimizer



class DeviceSplits(NamedTuple):
    """A dataset's splits as device arrays (put there once, shared by all trials)."""

    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array


def to_device(dataset: Dataset) -> DeviceSplits:
    return DeviceSplits(*(jnp.asarray(a) for a in (
        dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val, dataset.x_test, dataset.y_test)))


class CandidateState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What one candidate's training produced.

    Attributes:
      status: ``done`` or ``diverged``.
      epochs: epochs actually trained (early stopping and divergence end sooner).
      best_epoch: 1-based epoch of the best validation score (0: none finite).
      best_val_score: validation accuracy, or minus validation MSE for
        regression (higher is better either way); -inf (`nas.status.NO_SCORE`)
        when no epoch had a finite one.
      best_val_metrics: validation loss and accuracy/MSE at `best_epoch`.
      history: per epoch: train and validation metrics, lr multiplier, seconds.
      feedback: per epoch: ``grad_norm`` and ``dead_relu`` per node id
        (empty when `TrainConfig.feedback` is off), ``nonfinite`` (loss or
        weights) and ``nonfinite_weights`` (weights alone).
      t_tr: median seconds of one training epoch (robust to the first
        call's warm-up), compilation and evaluation excluded; in a
        population, the shared epoch time divided by K.
      num_params: trainable parameters.
      variables: the best epoch's ``params`` (and ``batch_stats``), on host.
      config: the settings it trained with.
    """

    status: str
    epochs: int
    best_epoch: int
    best_val_score: float
    best_val_metrics: dict
    history: tuple[dict, ...]
    feedback: tuple[dict, ...]
    t_tr: float
    num_params: int
    variables: dict
    config: TrainConfig


# ------------------------------------------------------------------ losses
def _loss_and_metric(outputs, targets, task: str):
    """Mean loss and the per-example metric sum (correct count or squared error)."""
    if task == "classification":
        losses = optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
        return losses, (jnp.argmax(outputs, -1) == targets).astype(outputs.dtype)
    errors = (outputs[..., 0] - targets) ** 2
    return errors, errors


def _metric_names(task: str) -> tuple[str, str]:
    return ("loss", "accuracy") if task == "classification" else ("loss", "mse")


def _variables(params, batch_stats) -> dict:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


# ------------------------------------------------------------------ one epoch, one candidate
def _zero_probes(module: ArchModule, variables: dict, x, dropout_key) -> dict:
    """Zeros shaped like every ReLU's pre-activation for batch `x` (shapes are traced, never run)."""
    def probe_shapes(variables, x, dropout_key):
        _, created = module.apply(variables, x, train=True, rngs={"dropout": dropout_key},
                                  mutable=["batch_stats", PROBES])
        return created.get(PROBES, {})
    shapes = jax.eval_shape(probe_shapes, variables, x, dropout_key)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _make_epoch(module: ArchModule, tx: optax.GradientTransformation, task: str, batch_size: int,
                feedback: bool = True, fine_tune: fine_tuning.FineTunePlan | None = None):
    def step(carry, inputs):
        state, x_all, y_all = carry
        batch_index, dropout_key = inputs
        x, y = x_all[batch_index], y_all[batch_index]
        mutable = ["batch_stats"] if state.batch_stats else []
        probes = _zero_probes(module, _variables(state.params, state.batch_stats), x, dropout_key) if feedback else {}

        def loss_fn(params, probes):
            variables = _variables(params, state.batch_stats)
            if probes:
                variables = dict(variables, **{PROBES: probes})
            out, updates = module.apply(variables, x, train=True, rngs={"dropout": dropout_key}, mutable=mutable)
            losses, metric = _loss_and_metric(out, y, task)
            return jnp.mean(losses), (metric, updates)

        (loss, (metric, updates)), (grads, probe_grads) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(state.params, probes)
        step_updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, step_updates)
        batch_stats = updates.get("batch_stats", state.batch_stats)
        if fine_tune is not None:  # frozen BatchNorm keeps its running statistics (this step's state, as tx read)
            batch_stats = fine_tuning.freeze_batch_stats(fine_tune, state.opt_state, state.batch_stats, batch_stats)
        new_state = CandidateState(params, batch_stats, opt_state, state.key)
        signals = {"loss": loss, "metric": jnp.mean(metric), "grad_norm": {}, "dead_relu": {}}
        if feedback:
            signals["grad_norm"] = {name: optax.tree.norm(g) for name, g in grads.items()}
            # A unit's gradient is zero on this batch when dL/d(pre-activation) is exactly 0 for every example.
            signals["dead_relu"] = {name: jnp.mean(jnp.all(g == 0, axis=0)) for name, g in probe_grads.items()}
        return (new_state, x_all, y_all), signals

    def epoch(state: CandidateState, x_train, y_train):
        key, shuffle_key, dropout_key = jax.random.split(state.key, 3)
        steps = x_train.shape[0] // batch_size
        order = jax.random.permutation(shuffle_key, x_train.shape[0])[: steps * batch_size]
        batches = order.reshape(steps, batch_size)
        dropout_keys = jax.random.split(dropout_key, steps)
        (state, _, _), signals = jax.lax.scan(
            step, (state._replace(key=key), x_train, y_train), (batches, dropout_keys))
        finite_weights = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(state.params)]))
        summary = {
            "train_loss": jnp.mean(signals["loss"]),
            "train_metric": jnp.mean(signals["metric"]),
            "grad_norm": jax.tree.map(jnp.mean, signals["grad_norm"]),
            "dead_relu": jax.tree.map(jnp.mean, signals["dead_relu"]),
            "nonfinite": jnp.logical_or(~jnp.all(jnp.isfinite(signals["loss"])), ~finite_weights),
            "nonfinite_weights": ~finite_weights,
        }
        return state, summary

    return epoch


def _make_evaluate(module: ArchModule, task: str, batch_size: int):
    """(params, batch_stats, x, y) -> summed loss, summed metric, count; batched with a mask."""

    def evaluate(params, batch_stats, x, y, mask):
        def body(totals, batch):
            xb, yb, mb = batch
            out = module.apply(_variables(params, batch_stats), xb, train=False)
            losses, metric = _loss_and_metric(out, yb, task)
            return (totals[0] + jnp.sum(losses * mb), totals[1] + jnp.sum(metric * mb)), None

        shape = (-1, batch_size)
        batches = (x.reshape(shape + x.shape[1:]), y.reshape(shape + y.shape[1:]), mask.reshape(shape))
        zero = jnp.zeros((), _compute_dtype(x))
        (loss, metric), _ = jax.lax.scan(body, (zero, zero), batches)
        count = jnp.sum(mask)
        return loss / count, metric / count

    return evaluate


def _padded(x: jax.Array, y: jax.Array, batch_size: int):
    """Pads a split to whole batches; the mask marks the real examples."""
    n = x.shape[0]
    pad = (-n) % batch_size
    dtype = _compute_dtype(x)
    mask = jnp.concatenate([jnp.ones(n, dtype), jnp.zeros(pad, dtype)])
    x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    y = jnp.concatenate([y, jnp.zeros((pad,) + y.shape[1:], y.dtype)])
    return x, y, mask


# ------------------------------------------------------------------ compiled programs, reused
@functools.lru_cache(maxsize=64)
def _programs(module: ArchModule, training: tuple, task: str, steps: int, eval_batch: int,
              population: int | None):
    """Jitted (epoch, evaluate) for one architecture and (epochs, batch size, optimizer, schedule, feedback,
    fine-tuning).

    Cached so repeated trials of one architecture (seeds, Hyperband rungs,
    resumed runs) reuse the compiled program instead of compiling again.
    `population` None means a single candidate, run without vmap.
    """
    epochs, batch_size, optimizer, schedule, feedback, finetune = training
    # The learning rate and weight decay are read from each member's state, so
    # one program serves every member (and every later trial) of this shape.
    fine_tune = fine_tuning.plan(finetune, module.arch, steps * epochs)
    tx = make_optimizer(optimizer, schedule, steps * epochs, finetune=fine_tune)
    epoch = _make_epoch(module, tx, task, batch_size, feedback, fine_tune)
    evaluate = _make_evaluate(module, task, eval_batch)
    if population is None:
        unbatched_epoch, unbatched_eval = epoch, evaluate
        epoch = lambda s, x, y: jax.tree.map(lambda a: a[None], unbatched_epoch(jax.tree.map(lambda a: a[0], s), x, y))
        evaluate = lambda p, b, x, y, m: jax.tree.map(
            lambda a: a[None], unbatched_eval(jax.tree.map(lambda a: a[0], p), jax.tree.map(lambda a: a[0], b), x, y, m))
    else:
        epoch = jax.vmap(epoch, in_axes=(0, None, None))
        evaluate = jax.vmap(evaluate, in_axes=(0, 0, None, None, None))
    return jax.jit(epoch), jax.jit(evaluate)


def _compute_dtype(x) -> Any:
    """float64 for float64 inputs (only possible under x64), else float32."""
    return jnp.float64 if x.dtype == jnp.float64 else jnp.float32


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _select(mask: np.ndarray, new: Any, old: Any) -> Any:
    """Per member: `new` where mask is true, else `old` (leading axis = member)."""
    m = jnp.asarray(mask)
    return jax.tree.map(lambda a, b: jnp.where(m.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


# ------------------------------------------------------------------ public API
def train(
    arch: Arch,
    dataset: Dataset,
    config: TrainConfig,
    *,
    variables: dict | None = None,
    splits: DeviceSplits | None = None,
    on_epoch: Callable[[int, list[dict]], None] | None = None,
) -> TrainResult:
    """Trains one candidate. See `train_population` for the arguments."""
    return _train(arch, dataset, [config], [variables] if variables else None, splits, on_epoch, vmapped=False)[0]


def train_population(
    arch: Arch,
    dataset: Dataset,
    configs: Sequence[TrainConfig],
    *,
    variables: Sequence[dict] | None = None,
    splits: DeviceSplits | None = None,
    on_epoch: Callable[[int, list[dict]], None] | None = None,
) -> list[TrainResult]:
    """Trains K candidates of one architecture together (vmap over members).

    Args:
      arch: the shared architecture.
      dataset: the data (its train split trains, val selects the best epoch).
      configs: one per member; they may differ in seed, learning rate and
        weight decay only (`TrainConfig.shared_part` must agree).
      variables: optional warm-start ``params``/``batch_stats`` per member
        (e.g. a morphism child's inherited weights); else fresh from the seed.
      splits: the dataset already on device (saves a copy per trial).
      on_epoch: called after every epoch with (epoch, per-member history rows).
    Returns:
      One `TrainResult` per member, in order.
    Raises:
      OutputShapeError: the architecture's output does not fit the dataset's
        targets.
      ModelTooLargeError: the population's estimated memory or a member's
        parameter count exceeds `TrainConfig.limits`; nothing was compiled.
      nas.ir.InvalidArchError: the architecture is invalid for the data.
      ValueError: the configs cannot share one program, the batch exceeds the
        training split, or the validation split is empty.
    """
    return _train(arch, dataset, list(configs), variables, splits, on_epoch, vmapped=True)


def _train(arch, dataset, configs, variables, splits, on_epoch, vmapped: bool) -> list[TrainResult]:
    """`train_population`'s work: check, build and compile once, run the epochs, assemble the results."""
    shared = _shared_settings(configs)
    base = configs[0]
    splits = splits or to_device(dataset)
    steps, eval_batch = _check_splits(base, dataset, splits)
    k = len(configs)
    dtype = _compute_dtype(splits.x_train)
    # Shape inference only: a mis-shaped head or an oversized model fails here,
    # before anything is initialised or compiled.
    arch.validate(dataset.input_shape)
    check_output_shape(arch, dataset)
    check_size(arch, dataset.input_shape, base, population=k, itemsize=jnp.dtype(dtype).itemsize,
               eval_batch=eval_batch)
    module = to_flax(arch, dtype=dtype, input_shape=dataset.input_shape)
    epoch_fn, eval_fn = _programs(module, shared[:4] + (base.feedback, base.finetune), dataset.task, steps,
                                  eval_batch, k if vmapped else None)
    state = _initial_state(module, configs, variables, dataset.input_shape, steps)
    val = _padded(splits.x_val, splits.y_val, eval_batch)
    # Compile ahead of time so no epoch's timing includes compilation.
    epoch_exec = epoch_fn.lower(state, splits.x_train, splits.y_train).compile()
    eval_exec = eval_fn.lower(state.params, state.batch_stats, *val).compile()
    progress = _fit(epoch_exec, eval_exec, state, splits, val, configs, dataset.task, steps, on_epoch, arch)
    return _results(progress, configs, arch.num_params(dataset.input_shape))


def _shared_settings(configs: Sequence[TrainConfig]) -> tuple:
    """The settings every member shares (one compiled program), or ValueError."""
    if not configs:
        raise ValueError("train_population needs at least one TrainConfig")
    shared = configs[0].shared_part()
    for c in configs[1:]:
        if c.shared_part() != shared:
            raise ValueError("population members may differ only in seed, learning_rate and weight_decay")
    return shared


def _check_splits(base: TrainConfig, dataset: Dataset, splits: DeviceSplits) -> tuple[int, int]:
    """(steps per epoch, evaluation batch size), or ValueError when the splits cannot train."""
    n_train = splits.x_train.shape[0]
    if n_train < base.batch_size:
        raise ValueError(f"batch_size {base.batch_size} exceeds the {n_train} training examples")
    if splits.x_val.shape[0] == 0:
        raise ValueError(f"{dataset.name}: the validation split is empty; training selects its best epoch "
                         "on validation data (set val_fraction > 0)")
    return n_train // base.batch_size, max(1, min(base.eval_batch_size, splits.x_val.shape[0]))


def _initial_state(module: ArchModule, configs: Sequence[TrainConfig], variables: Sequence[dict] | None,
                   input_shape: tuple, steps: int) -> CandidateState:
    """The members' stacked states: given or seeded weights, fresh optimiser states, run keys."""
    members = []
    for i, c in enumerate(configs):
        init_key, run_key = jax.random.split(jax.random.PRNGKey(c.seed))
        v = variables[i] if variables else init_variables(module, init_key, input_shape)
        member_tx = make_optimizer(c.optimizer, c.schedule, steps * c.epochs,
                                   finetune=fine_tuning.plan(c.finetune, module.arch, steps * c.epochs))
        members.append(CandidateState(v["params"], v.get("batch_stats", {}), member_tx.init(v["params"]), run_key))
    return _stack(members)


@dataclasses.dataclass
class _Progress:
    """Host-side bookkeeping of a population's training, updated after every epoch (never traced).

    Per member: whether it still trains, its status, best validation score,
    epoch and metrics, epochs trained, history and feedback rows; for all:
    the best epoch's variables (stacked, on device) and each epoch's seconds.
    """

    active: np.ndarray
    status: list[str]
    best_score: np.ndarray
    best_epoch: np.ndarray
    best_metrics: list[dict]
    epochs_run: np.ndarray
    best_vars: Any
    histories: list[list[dict]]
    feedbacks: list[list[dict]]
    epoch_seconds: list[float]

    @classmethod
    def start(cls, k: int, state: CandidateState) -> "_Progress":
        return cls(active=np.ones(k, bool), status=[DONE] * k, best_score=np.full(k, -np.inf),
                   best_epoch=np.zeros(k, int), best_metrics=[{} for _ in range(k)], epochs_run=np.zeros(k, int),
                   best_vars=(state.params, state.batch_stats), histories=[[] for _ in range(k)],
                   feedbacks=[[] for _ in range(k)], epoch_seconds=[])


def _fit(epoch_exec, eval_exec, state: CandidateState, splits: DeviceSplits, val: tuple,
         configs: Sequence[TrainConfig], task: str, steps: int,
         on_epoch: Callable[[int, list[dict]], None] | None, arch: Arch) -> _Progress:
    """The epoch loop: train, time, validate, book-keep, until the epochs run out or no member trains."""
    base = configs[0]
    progress = _Progress.start(len(configs), state)
    schedule_at = _schedule_multiplier(base, steps, arch)
    for epoch in range(1, base.epochs + 1):
        start = time.perf_counter()
        new_state, summary = epoch_exec(state, splits.x_train, splits.y_train)
        summary = jax.block_until_ready(summary)
        progress.epoch_seconds.append(time.perf_counter() - start)
        val_loss, val_metric = jax.device_get(eval_exec(new_state.params, new_state.batch_stats, *val))
        summary = jax.device_get(summary)
        state, rows = _record_epoch(progress, epoch, state, new_state, summary, val_loss, val_metric,
                                    configs, schedule_at(epoch * steps), task)
        _stop_members(progress, epoch, base.patience)
        if on_epoch is not None:
            on_epoch(epoch, rows)
        if not progress.active.any():
            break
    return progress


def _record_epoch(progress: _Progress, epoch: int, state: CandidateState, new_state: CandidateState,
                  summary: dict, val_loss: np.ndarray, val_metric: np.ndarray, configs: Sequence[TrainConfig],
                  lr_multiplier: float, task: str) -> tuple[CandidateState, list[dict]]:
    """Marks divergence, keeps the best epoch, appends history and feedback rows.

    Returns:
      The state to continue from (members that stopped keep theirs) and one
      history row per member (empty for members no longer training).
    """
    k = len(progress.status)
    loss_name, metric_name = _metric_names(task)
    sign = 1.0 if task == "classification" else -1.0
    diverged_now = progress.active & (np.asarray(summary["nonfinite"]) | ~np.isfinite(val_loss))
    for i in np.flatnonzero(diverged_now):
        progress.status[i] = DIVERGED
    # Members that stopped keep their last state: a population member ends
    # exactly as it would have alone.
    training = progress.active & ~diverged_now
    state = _select(training, new_state, state)
    score = sign * np.asarray(val_metric, float)
    improved = training & (score > progress.best_score)
    progress.best_vars = _select(improved, (state.params, state.batch_stats), progress.best_vars)
    rows = []
    for i in range(k):
        if not progress.active[i]:
            rows.append({})
            continue
        progress.epochs_run[i] = epoch
        row = {
            "epoch": epoch,
            f"train_{loss_name}": float(summary["train_loss"][i]),
            f"train_{metric_name}": float(summary["train_metric"][i]),
            f"val_{loss_name}": float(val_loss[i]),
            f"val_{metric_name}": float(val_metric[i]),
            "lr": float(configs[i].optimizer.learning_rate * lr_multiplier),
            "epoch_seconds": progress.epoch_seconds[-1] / k,
        }
        progress.histories[i].append(row)
        progress.feedbacks[i].append(_feedback_row(epoch, i, summary))
        if improved[i]:
            progress.best_score[i], progress.best_epoch[i] = score[i], epoch
            progress.best_metrics[i] = {f"val_{loss_name}": row[f"val_{loss_name}"],
                                        f"val_{metric_name}": row[f"val_{metric_name}"]}
        rows.append(row)
    progress.active &= ~diverged_now
    return state, rows


def _feedback_row(epoch: int, i: int, summary: dict) -> dict:
    """Member i's DREAM-style feedback of one epoch, as host floats."""
    return {
        "epoch": epoch,
        "grad_norm": {n: float(v[i]) for n, v in summary["grad_norm"].items()},
        "dead_relu": {n: float(v[i]) for n, v in summary["dead_relu"].items()},
        "nonfinite": bool(summary["nonfinite"][i]),
        "nonfinite_weights": bool(summary["nonfinite_weights"][i]),
    }


def _stop_members(progress: _Progress, epoch: int, patience: int | None) -> None:
    """Early stopping: a member stops `patience` epochs after its best one."""
    if patience is not None:
        progress.active &= (epoch - progress.best_epoch) < patience


def _results(progress: _Progress, configs: Sequence[TrainConfig], num_params: int) -> list[TrainResult]:
    """One `TrainResult` per member, its best epoch's variables on host."""
    host_params, host_stats = jax.device_get(progress.best_vars)
    t_tr = float(np.median(progress.epoch_seconds)) / len(configs)
    results = []
    for i, c in enumerate(configs):
        member_vars = {"params": jax.tree.map(lambda a: a[i], host_params)}
        if host_stats:
            member_vars["batch_stats"] = jax.tree.map(lambda a: a[i], host_stats)
        results.append(TrainResult(
            status=progress.status[i], epochs=int(progress.epochs_run[i]), best_epoch=int(progress.best_epoch[i]),
            best_val_score=float(progress.best_score[i]) if progress.best_epoch[i] else NO_SCORE,
            best_val_metrics=progress.best_metrics[i], history=tuple(progress.histories[i]),
            feedback=tuple(progress.feedbacks[i]), t_tr=t_tr, num_params=num_params, variables=member_vars, config=c,
        ))
    return results


def _schedule_multiplier(config: TrainConfig, steps: int, arch: Arch) -> Callable[[int], float]:
    """The learning-rate factor the history reports after `step` optimiser steps (fine-tuning's included)."""
    schedule = learning_rate_multiplier(config.schedule, steps * config.epochs)
    fine_tune = fine_tuning.plan(config.finetune, arch, steps * config.epochs)
    if fine_tune is None:
        return lambda step: float(schedule(step))
    return lambda step: float(schedule(step)) * fine_tune.lr_factor_at(step - 1)


@functools.lru_cache(maxsize=64)
def _eval_program(module: ArchModule, task: str, batch_size: int):
    return jax.jit(_make_evaluate(module, task, batch_size))


def evaluate(arch: Arch, variables: dict, x: np.ndarray, y: np.ndarray, task: str = "classification",
             batch_size: int = 1000) -> dict[str, float]:
    """Loss and accuracy (or MSE) of `variables` on (x, y), in eval mode."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    module = to_flax(arch, dtype=_compute_dtype(x), input_shape=x.shape[1:])
    batch_size = max(1, min(batch_size, len(x)))
    xs, ys, mask = _padded(x, y, batch_size)
    loss, metric = _eval_program(module, task, batch_size)(
        variables["params"], variables.get("batch_stats", {}), xs, ys, mask)
    loss_name, metric_name = _metric_names(task)
    return {loss_name: float(loss), metric_name: float(metric)}
