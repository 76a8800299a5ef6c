"""Checks the trainer runs before it compiles anything: does the model fit the data and the memory?

Both are pure functions of the IR's shape inference, so an oversized or
mis-shaped candidate fails in microseconds with the numbers, instead of
exhausting the machine's memory or training into NaNs that look like a
diverged run.
"""

from __future__ import annotations

import dataclasses

from nas.data import Dataset
from nas.ir import Arch
from nas.ir.size import activation_size
from nas.train.config import GiB, OptimizerConfig, TrainConfig
from nas.train.errors import ModelTooLargeError, OutputShapeError

# Calibrated against the peak RSS growth of CPU training runs (Adam, float32),
# fixed runtime overhead (a few hundred MiB: compiler, XLA buffers) excluded:
# - parameters: the trainer holds the state it passed in, the epoch's new
#   state and the selection of the two (3 x (params + optimiser slots)), plus
#   the best epoch's parameters and the step's gradients and updates: 12
#   copies for Adam; measured 10.7 (MLPs of 4.3M and 17.1M parameters).
# - training activations: 3 x (every node's output + the largest) per example;
#   measured 2.4-2.5 x (two CNNs on 28x28, with and without BatchNorm: the
#   backward pass holds gradients and ReLU/BatchNorm intermediates beside the
#   saved outputs).
# - evaluation activations: 3 x the largest output per example; measured 2.6 x.
STATE_COPIES = 3
EXTRA_PARAM_COPIES = 3
TRAIN_ACTIVATION_FACTOR = 3
EVAL_ACTIVATION_FACTOR = 3


# Per-parameter arrays each optimiser keeps beside the parameters.
_SLOTS = {"adam": 2, "adamw": 2, "adagrad": 1, "adadelta": 2, "adamax": 2, "nadam": 2}
_UNKNOWN_OPTIMIZER_SLOTS = 3  # an optimiser added without an entry here: count it high


def optimizer_slots(optimizer: OptimizerConfig) -> int:
    """Per-parameter arrays the optimiser keeps (Adam: first and second moments)."""
    momentum = optimizer.momentum > 0
    if optimizer.name == "sgd":
        return int(momentum)  # the momentum trace
    if optimizer.name == "rmsprop":  # the mean square, the momentum trace, the centred mean
        return 1 + int(momentum) + int(bool(getattr(optimizer, "centered", False)))
    if optimizer.name == "adam" and optimizer.amsgrad:
        return 3  # the running maximum of the second moment
    return _SLOTS.get(optimizer.name, _UNKNOWN_OPTIMIZER_SLOTS)


@dataclasses.dataclass(frozen=True)
class SizeEstimate:
    """Estimated memory of one training program.

    Attributes:
      params: trainable parameters of one member.
      population: members trained together.
      itemsize: bytes per element (4: float32, 8: float64).
      state_bytes: parameters, gradients, optimiser state and the trainer's
        copies, all members.
      activation_bytes: the larger of one training batch's activations
        (kept for the backward pass) and one evaluation batch's, all members.
      train_batch, eval_batch: the batch sizes the activations assume.
    """

    params: int
    population: int
    itemsize: int
    state_bytes: int
    activation_bytes: int
    train_batch: int
    eval_batch: int

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes


def estimate_size(arch: Arch, input_shape, config: TrainConfig, *, population: int = 1, itemsize: int = 4,
                  eval_batch: int | None = None) -> SizeEstimate:
    """What training `arch` with `config` needs, from shape inference alone.

    The estimate errs high by 10-25% against measured CPU runs (see the
    constants above); it leaves out the data splits and the runtime's fixed
    overhead (a few hundred MiB).

    Args:
      arch: the architecture.
      input_shape: per-example input shape.
      config: batch sizes and optimiser (its slots per parameter).
      population: members trained together (a vmapped population).
      itemsize: bytes per element of the training dtype.
      eval_batch: the evaluation batch actually used (default
        `config.eval_batch_size`; the trainer caps it at the split's size).
    Returns:
      A `SizeEstimate`.
    Raises:
      nas.ir.InvalidArchError: the architecture does not fit `input_shape`.
    """
    params = arch.num_params(input_shape)
    acts = activation_size(arch, input_shape)
    eval_batch = config.eval_batch_size if eval_batch is None else eval_batch
    copies = STATE_COPIES * (1 + optimizer_slots(config.optimizer)) + EXTRA_PARAM_COPIES
    # Training keeps every activation for the backward pass, with gradients
    # beside them; evaluation frees each layer's output once the next has read it.
    train_elements = config.batch_size * TRAIN_ACTIVATION_FACTOR * (acts.total + acts.largest)
    eval_elements = eval_batch * EVAL_ACTIVATION_FACTOR * acts.largest
    return SizeEstimate(
        params=params, population=population, itemsize=itemsize,
        state_bytes=population * copies * params * itemsize,
        activation_bytes=population * max(train_elements, eval_elements) * itemsize,
        train_batch=config.batch_size, eval_batch=eval_batch,
    )


def _gib(n: int) -> str:
    return f"{n / GiB:,.2f} GiB"


def check_size(arch: Arch, input_shape, config: TrainConfig, *, population: int = 1, itemsize: int = 4,
               eval_batch: int | None = None) -> SizeEstimate:
    """Refuses a model over `config.limits`; see `estimate_size` for the arguments.

    Returns:
      The estimate, when it is within the limits.
    Raises:
      ModelTooLargeError: naming the parameter count, the estimated bytes, the
        limits and the config keys that raise them.
    """
    estimate = estimate_size(arch, input_shape, config, population=population, itemsize=itemsize,
                             eval_batch=eval_batch)
    limits = config.limits
    faults = []
    if limits.max_params is not None and estimate.params > limits.max_params:
        faults.append(f"{estimate.params:,} trainable parameters exceed limits.max_params = {limits.max_params:,}")
    if limits.max_bytes is not None and estimate.total_bytes > limits.max_bytes:
        who = f"{population} members" if population > 1 else "one model"
        faults.append(
            f"its estimated training memory {_gib(estimate.total_bytes)} ({estimate.total_bytes:,} bytes: "
            f"{_gib(estimate.state_bytes)} of parameters, gradients and {config.optimizer.name} state, "
            f"{_gib(estimate.activation_bytes)} of activations at batch {estimate.train_batch} / eval batch "
            f"{estimate.eval_batch}; {who}, {estimate.itemsize}-byte floats) exceeds limits.max_bytes = "
            f"{limits.max_bytes:,} ({_gib(limits.max_bytes)})")
    if faults:
        raise ModelTooLargeError(
            f"architecture {arch.name or '(unnamed)'} ({estimate.params:,} parameters) is too large to train: "
            + "; ".join(faults) + ". Nothing was compiled. Shrink the model or the batch size, or raise "
            "limits.max_params / limits.max_bytes (null: no limit) if the machine has the memory.")
    return estimate


def check_output_shape(arch: Arch, dataset: Dataset) -> None:
    """Refuses an architecture whose output does not match the dataset's targets.

    A classifier needs one logit per class, a regressor one output: a 3-unit
    head on 10 classes would otherwise index past its logits and train into
    NaNs that look like divergence.

    Raises:
      OutputShapeError: naming the output's shape and the shape the data needs.
      nas.ir.InvalidArchError: the architecture does not fit the input shape.
    """
    shape = tuple(arch.output_shape(dataset.input_shape))
    wanted = (dataset.num_outputs,)
    if shape == wanted:
        return
    if dataset.task == "classification":
        need = f"dataset {dataset.name!r} has {dataset.num_classes} classes, so the output must have shape " \
               f"{list(wanted)} (one logit per class)"
    else:
        need = f"dataset {dataset.name!r} is a regression task, so the output must have shape [1]"
    raise OutputShapeError(
        f"architecture {arch.name or '(unnamed)'}: output node {arch.output_id!r} has shape {list(shape)} "
        f"but {need}; rebuild its head for this dataset (e.g. mlp(hidden, {dataset.num_outputs}))")
