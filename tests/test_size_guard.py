"""The trainer refuses, before compiling, models that cannot fit (issue 12 #7).

An IR with a 10^9-unit layer, or data whose labels imply 10^9 classes, used to
reach gigabytes of resident memory before JAX failed to allocate hundreds of
GiB; a head that does not match the classes trained into NaNs and was called
``diverged``. Both are now errors from shape inference alone, with the
numbers, and in a search they are one failed trial.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from nas.ir import Arch, Node, mlp
from nas.ir.size import ActivationSize, activation_size
from nas.search import Candidate, evaluate_candidates
from nas.train import (
    ModelTooLargeError, OptimizerConfig, OutputShapeError, SizeLimits, TrainConfig, check_size, estimate_size, train,
    train_population,
)
from nas.train.guards import EVAL_ACTIVATION_FACTOR, EXTRA_PARAM_COPIES, STATE_COPIES, TRAIN_ACTIVATION_FACTOR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = TrainConfig(epochs=1, batch_size=64)


# ------------------------------------------------------------------ the estimate
def test_activation_size_counts_every_output_per_example():
    # input 8x8x1 = 64, flatten 64, dense 32, relu 32, head 10
    assert activation_size(mlp([32], 10), (8, 8, 1)) == ActivationSize(total=202, largest=64)
    separable = Arch((
        Node("x", "Input"),
        Node("s", "SeparableConv2D", ("x",), {"filters": 4, "kernel_size": 3, "depth_multiplier": 2}),
    ), ("x",), ("s",))
    # input 8*8*3, the depthwise intermediate 8*8*6, the output 8*8*4
    assert activation_size(separable, (8, 8, 3)) == ActivationSize(total=64 * 13, largest=64 * 6)


@pytest.mark.parametrize("optimizer,slots", [
    (OptimizerConfig("sgd", momentum=0.0), 0), (OptimizerConfig("sgd"), 1), (OptimizerConfig("adam"), 2),
    (OptimizerConfig("adam", amsgrad=True), 3), (OptimizerConfig("adamw"), 2),
    (OptimizerConfig("rmsprop", momentum=0.0), 1), (OptimizerConfig("rmsprop"), 2),
])
def test_estimate_is_params_times_copies_plus_one_batch_of_activations(optimizer, slots):
    arch, shape = mlp([32], 10), (8, 8, 1)
    config = TrainConfig(batch_size=16, eval_batch_size=100, optimizer=optimizer)
    params, copies = 2080 + 330, STATE_COPIES * (1 + slots) + EXTRA_PARAM_COPIES
    train_acts = 16 * TRAIN_ACTIVATION_FACTOR * (202 + 64)
    eval_acts = 100 * EVAL_ACTIVATION_FACTOR * 64
    single = estimate_size(arch, shape, config)
    assert single.params == params
    assert single.state_bytes == 4 * copies * params
    assert single.activation_bytes == 4 * max(train_acts, eval_acts)
    three64 = estimate_size(arch, shape, config, population=3, itemsize=8)
    assert three64.total_bytes == 3 * 2 * single.total_bytes


# ------------------------------------------------------------------ refusals, before anything is built
def test_a_billion_unit_layer_is_refused_in_milliseconds_with_the_numbers(digits):
    arch = mlp([10**9], 10)
    params = 64 * 10**9 + 10**9 + 10 * 10**9 + 10
    start = time.perf_counter()
    with pytest.raises(ModelTooLargeError) as info:
        train(arch, digits, FAST)
    assert time.perf_counter() - start < 2.0  # shape inference only: nothing allocated or compiled
    message = str(info.value)
    assert f"{params:,} trainable parameters exceed limits.max_params = 200,000,000" in message
    assert "exceeds limits.max_bytes = 17,179,869,184 (16.00 GiB)" in message
    assert "raise limits.max_params / limits.max_bytes" in message


def test_labels_implying_a_billion_classes_are_refused(digits):
    """A dataset whose labels span 0..10^9-1 sizes the head at 10^9 units (settings.arch does this)."""
    huge = dataclasses.replace(digits, num_classes=10**9)
    arch = mlp([32], huge.num_outputs)
    with pytest.raises(ModelTooLargeError, match=r"33,000,002,080 trainable parameters exceed limits.max_params"):
        train(arch, huge, FAST)


def test_the_byte_limit_counts_the_whole_population(digits):
    arch = mlp([64], 10)
    config = dataclasses.replace(FAST, optimizer=OptimizerConfig(learning_rate=1e-3))
    one = estimate_size(arch, digits.input_shape, config, eval_batch=len(digits.y_val))
    limited = dataclasses.replace(config, limits=SizeLimits(max_bytes=2 * one.total_bytes))
    assert train(arch, digits, limited).status == "done"
    members = [dataclasses.replace(limited, seed=s) for s in range(3)]
    with pytest.raises(ModelTooLargeError) as info:
        train_population(arch, digits, members)
    assert f"estimated training memory 0.00 GiB ({3 * one.total_bytes:,} bytes" in str(info.value)
    assert "3 members" in str(info.value) and f"limits.max_bytes = {2 * one.total_bytes:,}" in str(info.value)
    # float64 training doubles every byte
    with jax.enable_x64(True):
        data64 = dataclasses.replace(digits, **{k: getattr(digits, k).astype(np.float64)
                                                for k in ("x_train", "x_val", "x_test")})
        with pytest.raises(ModelTooLargeError, match="8-byte floats"):
            train(arch, data64, dataclasses.replace(limited, limits=SizeLimits(max_bytes=one.total_bytes + 1)))
    assert check_size(arch, digits.input_shape, dataclasses.replace(config, limits=SizeLimits(None, None)),
                      population=10**6).params == one.params  # null: no limit


# ------------------------------------------------------------------ the head must fit the data
def test_a_head_that_does_not_match_the_classes_is_a_shape_error_not_a_divergence(digits, digits_regression):
    with pytest.raises(OutputShapeError) as info:
        train(mlp([16], 3), digits, FAST)
    message = str(info.value)
    assert "output node 'head' has shape [3]" in message and "'digits' has 10 classes" in message
    assert "shape [10]" in message
    regression = r"has shape \[10\].*regression task, so the output must have shape \[1\]"
    with pytest.raises(OutputShapeError, match=regression):
        train_population(mlp([16], 10), digits_regression, [FAST, dataclasses.replace(FAST, seed=1)])


# ------------------------------------------------------------------ in a search: one failed trial
def test_an_oversized_or_misshaped_candidate_is_a_failed_trial_not_a_crash(digits):
    shape = digits.input_shape
    huge = Candidate(0, mlp([10**9], 10, input_shape=shape), 1e-3)
    wrong_head = Candidate(1, mlp([16], 3, input_shape=shape), 1e-3)
    fine = Candidate(2, mlp([16], 10, input_shape=shape), 1e-3)
    evaluations = evaluate_candidates([huge, wrong_head, fine], digits, FAST)
    assert evaluations[0].result is None and "ModelTooLargeError" in evaluations[0].error
    assert "limits.max_params" in evaluations[0].error
    assert evaluations[1].result is None and "OutputShapeError" in evaluations[1].error
    assert evaluations[2].result.status == "done"


def test_nas_search_records_refused_trials_and_nas_train_names_the_limit(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true")
    common = ["logger=console", "progress=false", "runtime.compilation_cache=null"]
    searched = subprocess.run(
        [sys.executable, "-m", "nas.cli.search", "search.max_trials=2", "train.epochs=1", "limits.max_params=100",
         *common, f"hydra.run.dir={tmp_path}/search"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert searched.returncode == 0, searched.stderr[-3000:]
    summary = json.loads(searched.stdout.strip().splitlines()[-1])
    assert summary["status"] == "no finite trial" and summary["trials"] == 2
    with open(summary["trials_log"]) as f:
        trials = [json.loads(line) for line in f]
    assert [t["status"] for t in trials] == ["failed", "failed"]
    assert all("exceed limits.max_params = 100" in t["error"] for t in trials)

    trained = subprocess.run(
        [sys.executable, "-m", "nas.cli.train", "model.hidden=[64]", "limits.max_bytes=1000", *common,
         f"hydra.run.dir={tmp_path}/train"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert trained.returncode != 0
    assert "exceeds limits.max_bytes = 1,000" in trained.stderr
    assert not os.path.exists(os.path.join(tmp_path, "train", "model"))
