"""The on-device trainer: determinism, divergence, population = alone, schedules, feedback."""

import dataclasses

import jax
import numpy as np
import pytest

from nas.ir import cnn, mlp
from nas.train import (
    DIVERGED, DONE, OptimizerConfig, ScheduleConfig, TrainConfig, evaluate, learning_rate_multiplier,
    train, train_population,
)

FAST = TrainConfig(epochs=4, batch_size=64, seed=3)


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_training_learns_digits(digits):
    result = train(mlp([128], 10), digits, dataclasses.replace(FAST, epochs=10))
    assert result.status == DONE
    assert result.best_val_score >= 0.93
    test = evaluate(mlp([128], 10), result.variables, digits.x_test, digits.y_test)
    assert test["accuracy"] >= 0.9
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] / 3


def test_same_seed_same_run_other_seed_other_run(digits):
    arch = cnn([8], 10, batchnorm=True, dropout=0.1)
    first = train(arch, digits, FAST)
    again = train(arch, digits, FAST)
    assert first.history == tuple(dict(h, epoch_seconds=a["epoch_seconds"]) for h, a in zip(again.history, first.history))
    assert _leaves_equal(first.variables, again.variables)
    other = train(arch, digits, dataclasses.replace(FAST, seed=4))
    assert not _leaves_equal(first.variables, other.variables)


def test_nan_learning_rate_is_diverged_not_a_crash(digits):
    config = dataclasses.replace(FAST, optimizer=OptimizerConfig(name="sgd", learning_rate=1e12))
    result = train(mlp([32], 10), digits, config)
    assert result.status == DIVERGED
    assert result.epochs < FAST.epochs or result.feedback[-1]["nonfinite"]
    assert result.feedback[-1]["nonfinite"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_population_equals_each_member_alone(digits, optimizer):
    arch = mlp([64, 32], 10, batchnorm=True)
    configs = [
        dataclasses.replace(FAST, seed=s, optimizer=OptimizerConfig(name=optimizer, learning_rate=lr, weight_decay=wd))
        for s, lr, wd in [(0, 1e-3, 0.0), (1, 3e-3, 1e-4), (2, 1e-2, 0.0)]
    ]
    together = train_population(arch, digits, configs)
    for config, member in zip(configs, together):
        alone = train(arch, digits, config)
        assert member.status == alone.status == DONE
        # Adam may flip a borderline validation example; SGD agrees exactly.
        one_example = 1.0 / len(digits.y_val) if optimizer == "adam" else 0.0
        assert abs(member.best_val_score - alone.best_val_score) <= one_example + 1e-7
        for a, b in zip(alone.history, member.history):
            np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-5)
            assert abs(b["val_accuracy"] - a["val_accuracy"]) <= one_example + 1e-7
        if optimizer == "sgd":
            assert member.best_epoch == alone.best_epoch
            # Batched and unbatched matmuls sum in different orders; SGD keeps
            # that at float32 rounding. (Adam divides by sqrt(v), so weights
            # whose gradients are ~0 amplify it; its metrics above still agree.)
            for a, b in zip(jax.tree.leaves(alone.variables), jax.tree.leaves(member.variables)):
                np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_a_diverging_member_leaves_the_others_untouched(digits):
    arch = mlp([32], 10)
    good = dataclasses.replace(FAST, optimizer=OptimizerConfig(name="sgd", learning_rate=0.05))
    bad = dataclasses.replace(good, optimizer=OptimizerConfig(name="sgd", learning_rate=1e12))
    together = train_population(arch, digits, [good, bad])
    alone = train(arch, digits, good)
    assert [r.status for r in together] == [DONE, DIVERGED]
    np.testing.assert_allclose(together[0].best_val_score, alone.best_val_score, atol=1e-6)


def test_population_rejects_members_that_cannot_share_a_program(digits):
    with pytest.raises(ValueError, match="differ only in seed"):
        train_population(mlp([8], 10), digits, [FAST, dataclasses.replace(FAST, batch_size=32)])


def test_early_stopping_without_learning_stops_after_patience(digits):
    frozen = dataclasses.replace(FAST, epochs=10, patience=2, optimizer=OptimizerConfig(learning_rate=0.0))
    result = train(mlp([16], 10), digits, frozen)
    assert result.best_epoch == 1
    assert result.epochs == 1 + 2


def test_warm_start_keeps_the_parent_accuracy(digits):
    arch = mlp([64], 10)
    parent = train(arch, digits, FAST)
    child = train(arch, digits, dataclasses.replace(FAST, epochs=1, optimizer=OptimizerConfig(learning_rate=1e-4)),
                  variables=parent.variables)
    assert child.history[0]["val_accuracy"] >= parent.best_val_score - 0.02


def test_step_schedule_drops_80_percent_at_half_and_three_quarters():
    multiplier = learning_rate_multiplier(ScheduleConfig(name="step"), total_steps=100)
    assert [float(multiplier(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.2, 0.2, 0.04, 0.04])
    cosine = learning_rate_multiplier(ScheduleConfig(name="cosine"), total_steps=100)
    assert float(cosine(0)) == pytest.approx(1.0) and float(cosine(100)) == pytest.approx(0.0, abs=1e-6)
    inverse = learning_rate_multiplier(ScheduleConfig(name="inverse_time", decay=0.01), total_steps=100)
    assert float(inverse(100)) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_trains(digits, name):
    config = dataclasses.replace(FAST, epochs=3, optimizer=OptimizerConfig(name=name, learning_rate=0.01 if name == "sgd" else 1e-3))
    assert train(mlp([64], 10), digits, config).best_val_score > 0.8


def test_feedback_names_layers_and_stays_in_range(digits):
    arch = cnn([8, 8], 10)
    result = train(arch, digits, FAST)
    trainable = {n.id for n in arch.nodes if n.spec.trainable}
    relus = {n.id for n in arch.nodes if n.op == "Activation" and n.attrs["fn"] == "relu"}
    for epoch in result.feedback:
        assert set(epoch["grad_norm"]) == trainable
        assert set(epoch["dead_relu"]) == relus
        assert all(0.0 <= v <= 1.0 for v in epoch["dead_relu"].values())
        assert all(np.isfinite(v) and v >= 0 for v in epoch["grad_norm"].values())
        assert epoch["nonfinite"] is False


def test_regression_minimises_mse(digits_regression):
    result = train(mlp([64], 1), digits_regression, dataclasses.replace(FAST, epochs=6))
    assert result.status == DONE
    mses = [h["val_mse"] for h in result.history]
    assert mses[-1] < mses[0]
    assert result.best_val_score == pytest.approx(-min(mses))


def test_t_tr_and_params_are_reported(digits):
    arch = mlp([32], 10)
    result = train(arch, digits, FAST)
    assert result.num_params == arch.num_params(digits.input_shape)
    assert 0 < result.t_tr < 5
