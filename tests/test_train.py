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


def _float64(dataset):
    """The dataset with float64 inputs: the trainer then computes in float64 (under x64)."""
    return dataclasses.replace(dataset, **{k: getattr(dataset, k).astype(np.float64)
                                           for k in ("x_train", "x_val", "x_test")})


def _population_configs(optimizer):
    return [
        dataclasses.replace(FAST, seed=s, optimizer=OptimizerConfig(name=optimizer, learning_rate=lr, weight_decay=wd))
        for s, lr, wd in [(0, 1e-3, 0.0), (1, 3e-3, 1e-4), (2, 1e-2, 0.0)]
    ]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_population_equals_each_member_alone_in_float64(digits, optimizer):
    """vmapped and unbatched programs are the same computation; in float64 they agree to rounding.

    Measured (this 2-core Xeon, both optimizers, 3 members x 4 epochs): train loss relative
    difference <= 2.1e-15, validation loss <= 3.4e-12, weights <= 1.6e-11 absolute, and no
    validation prediction differs. The bounds below leave 300-600x headroom for another CPU's
    rounding (float32 runs vary 7x between seeds) and are still 100-1e6 times tighter than float32
    rounding itself (see the float32 test): a member that trained with another's seed or learning
    rate, or any cross-talk between members, is far outside them. Validation accuracy is compared
    exactly: an example flips only if its two top logits lie within ~1e-11 of each other.
    """
    arch = mlp([64, 32], 10, batchnorm=True)
    configs = _population_configs(optimizer)
    with jax.enable_x64(True):
        data = _float64(digits)
        together = train_population(arch, data, configs)
        alone = [train(arch, data, c) for c in configs]
    for a, member in zip(alone, together):
        assert jax.tree.leaves(member.variables)[0].dtype == np.float64
        assert member.status == a.status == DONE
        assert member.best_epoch == a.best_epoch and member.epochs == a.epochs
        assert member.best_val_score == a.best_val_score
        for x, y in zip(a.history, member.history):
            assert y["val_accuracy"] == x["val_accuracy"]
            np.testing.assert_allclose(y["train_loss"], x["train_loss"], rtol=1e-12)
            np.testing.assert_allclose(y["val_loss"], x["val_loss"], rtol=1e-9)
        for x, y in zip(jax.tree.leaves(a.variables), jax.tree.leaves(member.variables)):
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-8)


# float32 tolerances for a population member against the same member alone. Batched and unbatched
# matmuls sum in different orders, so the programs differ by float32 rounding, which SGD keeps at
# that level and Adam amplifies (it divides by sqrt(v), so weights whose gradients are ~0 take
# different steps). Measured on this machine, 4 epochs, over sets of member seeds (SGD: 4 sets,
# 12 members; Adam: 10 sets, 30 members; the seeds stand in for another CPU's rounding pattern):
#   SGD:  train loss rel <= 2.2e-7, val loss rel <= 1.8e-7, val accuracy: 0 examples differ;
#   Adam: train loss rel <= 2.1e-4, val loss rel <= 6.3e-3, val accuracy: <= 2 examples (of 270);
#   this test's seeds, Adam: 6.6e-6, 8.9e-4, 2 examples (the old one-example bound failed here).
# The bounds leave 45x (SGD losses), 8-10x (Adam losses) and 4x (Adam accuracy) headroom. They
# still catch real faults: a member trained with another member's seed differs by train loss
# rel >= 4.3e-2, val loss rel >= 0.19 and >= 20 examples; with a neighbour's learning rate by
# >= 0.58, >= 0.61 and >= 106 examples.
FLOAT32_TOLERANCE = {
    "sgd": dict(train_loss=1e-5, val_loss=1e-5, examples=1),
    "adam": dict(train_loss=2e-3, val_loss=5e-2, examples=8),
}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_population_matches_each_member_alone_in_float32(digits, optimizer):
    arch = mlp([64, 32], 10, batchnorm=True)
    configs = _population_configs(optimizer)
    tol = FLOAT32_TOLERANCE[optimizer]
    examples = tol["examples"] / len(digits.y_val) + 1e-7
    together = train_population(arch, digits, configs)
    for config, member in zip(configs, together):
        alone = train(arch, digits, config)
        assert member.status == alone.status == DONE and member.epochs == alone.epochs
        assert abs(member.best_val_score - alone.best_val_score) <= examples
        for a, b in zip(alone.history, member.history):
            np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=tol["train_loss"])
            np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=tol["val_loss"])
            assert abs(b["val_accuracy"] - a["val_accuracy"]) <= examples


def test_a_diverging_member_leaves_the_others_untouched(digits):
    arch = mlp([32], 10)
    good = dataclasses.replace(FAST, optimizer=OptimizerConfig(name="sgd", learning_rate=0.05))
    bad = dataclasses.replace(good, optimizer=OptimizerConfig(name="sgd", learning_rate=1e12))
    together = train_population(arch, digits, [good, bad])
    alone = train(arch, digits, good)
    assert [r.status for r in together] == [DONE, DIVERGED]
    # SGD keeps vmapped-vs-alone differences at float32 rounding (FLOAT32_TOLERANCE["sgd"]); a NaN
    # leaking from the diverged member would fail these by far.
    tol = FLOAT32_TOLERANCE["sgd"]
    for a, b in zip(alone.history, together[0].history):
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=tol["train_loss"])
        np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=tol["val_loss"])
    assert abs(together[0].best_val_score - alone.best_val_score) <= tol["examples"] / len(digits.y_val) + 1e-7


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
