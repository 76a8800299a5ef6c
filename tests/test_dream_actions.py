"""DREAM's action space: every applicable action yields a valid IR that compiles and trains, and
every action declared function-preserving keeps the parent's outputs.

Tolerance of the function-preservation check (float32): widening divides a
replicated unit's outgoing weights by its replica count and sums the copies
back, so the child's output differs from the parent's by rounding only;
measured over 60 random architectures of `tests/strategies.py` (166 action
checks; the slow test) the largest difference was 3.9e-7 relative to the
output's magnitude (run with -s to print it); the bound is
1e-5 * max(1, max |parent output|).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.compile import init_variables, to_flax
from nas.data import Dataset
from nas.ir import cnn, mlp
from nas.search.dream import ACTIONS, ActionError, get_action
from nas.search.dream.conditions import architecture_family
from nas.train import OptimizerConfig, TrainConfig, train
from tests.strategies import archs, random_input

SETTINGS = st.builds(
    lambda name, lr, momentum, wd: TrainConfig(
        epochs=1, batch_size=4, optimizer=OptimizerConfig(name=name, learning_rate=lr, momentum=momentum,
                                                          weight_decay=wd)),
    st.sampled_from(["sgd", "adam", "adamw"]), st.sampled_from([1e-3, 0.01]),
    st.sampled_from([0.0, 0.9]), st.sampled_from([0.0, 0.01]))

FP_BOUND = 1e-5
_measured: list[float] = []


def _tiny_dataset(input_shape, outputs: int, seed: int = 0) -> Dataset:
    """Four examples per split of `input_shape`; `outputs` classes (1: regression)."""
    rng = np.random.default_rng(seed)
    if len(input_shape) == 1:  # token ids (the embedding family)
        x = rng.integers(0, 5, size=(12, *input_shape)).astype(np.int32)
    else:
        x = rng.standard_normal((12, *input_shape)).astype(np.float32)
    task = "classification" if outputs > 1 else "regression"
    y = (np.arange(12) % max(outputs, 2)).astype(np.int32 if outputs > 1 else np.float32)
    return Dataset("tiny", task, tuple(input_shape), max(outputs, 2), x[:4], y[:4], x[4:8], y[4:8], x[8:], y[8:],
                   np.zeros(1, np.float32), np.ones(1, np.float32))


def _compiles(arch, input_shape):
    module = to_flax(arch, input_shape=input_shape)
    variables = jax.eval_shape(lambda k: init_variables(module, k, input_shape), jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.int32 if len(input_shape) == 1 else jnp.float32)
    out = jax.eval_shape(lambda v, x: module.apply(v, x, train=False), variables, x)
    assert out.shape == (2, *arch.output_shape(input_shape))


# ------------------------------------------------------------------ the registry
def test_names_are_object_equals_value_and_cover_table_1():
    for name, action in ACTIONS.items():
        assert name == action.name and name.startswith(action.object + "=")
        assert get_action(name) is action
    objects = {a.object for a in ACTIONS.values()}
    assert {"initializer", "activation", "momentum", "end_learning_rate", "weight_decay", "optimizer",
            "schedule", "batchnorm", "dropout", "block_type", "width", "depth"} <= objects
    assert {a.value for a in ACTIONS.values() if a.object == "momentum"} == {0.0, 0.1, 0.5, 0.9}
    with pytest.raises(ActionError, match="activation=selu"):
        get_action("activation=sleu")


def test_settings_actions_change_exactly_their_setting():
    arch = mlp([8], 3, input_shape=(4,))
    sgd = TrainConfig(optimizer=OptimizerConfig(name="sgd", learning_rate=0.01, momentum=0.0))
    _, s = get_action("momentum=0.5")(arch, sgd)
    assert s.optimizer.momentum == 0.5 and dataclasses.replace(s.optimizer, momentum=0.0) == sgd.optimizer
    assert not get_action("momentum=0").applicable(arch, sgd)  # already in effect
    assert not get_action("weight_decay=0.01").applicable(arch, sgd)  # AdamW only
    adamw = TrainConfig(optimizer=OptimizerConfig(name="adamw", learning_rate=1e-3))
    _, s = get_action("end_learning_rate=1e-05")(arch, adamw)
    final = 1e-3 * s.schedule.drop_factor ** len(s.schedule.drop_at)
    assert final == pytest.approx(1e-5, rel=1e-9)
    _, s = get_action("optimizer=sgd")(arch, adamw)
    assert s.optimizer.name == "sgd" and s.epochs == adamw.epochs


def test_an_action_that_does_not_apply_says_why():
    arch = mlp([8], 3, input_shape=(4,))
    with pytest.raises(ActionError, match="already in effect"):
        get_action("activation=relu")(arch, TrainConfig())
    with pytest.raises(ActionError, match="adamw"):
        get_action("weight_decay=0.1")(arch, TrainConfig())
    with pytest.raises(ActionError, match="not function-preserving"):
        get_action("activation=selu").inherit(arch, TrainConfig(), {}, jax.random.key(0))


def test_block_types_give_the_family_they_name():
    arch = cnn([8, 8], 3, input_shape=(8, 8, 1))
    expect = {"separable": "XA", "depthwise": "EA", "residual": "RA"}
    for value, family in expect.items():
        child, _ = get_action(f"block_type={value}")(arch, TrainConfig())
        assert architecture_family(child) == family
        plain, _ = get_action("block_type=plain")(child, TrainConfig())
        assert architecture_family(plain) == "OA"
        plain.validate()


# ------------------------------------------------------------------ random architectures
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archs(max_blocks=3), SETTINGS)
def test_every_applicable_action_gives_a_valid_ir_that_compiles(pair, config):
    arch, input_shape = pair
    for action in ACTIONS.values():
        if not action.applicable(arch, config):
            with pytest.raises(ActionError):
                action(arch, config)
            continue
        child, child_settings = action(arch, config)
        child.validate(input_shape)
        _compiles(child, input_shape)
        assert isinstance(child_settings, TrainConfig)
        assert child.output_shape(input_shape) == arch.output_shape(input_shape)


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archs(max_blocks=2), SETTINGS)
def test_every_applicable_action_trains_a_step_on_random_archs(pair, config):
    _trains_one_step(*pair, config)


SGD = TrainConfig(epochs=1, batch_size=4, optimizer=OptimizerConfig(name="sgd", learning_rate=0.01))


def test_every_architecture_action_trains_a_step_mlp():
    _trains_one_step(mlp([8, 8], 3, input_shape=(4, 3)), (4, 3), SGD, architectures_only=True)


@pytest.mark.slow
def test_every_applicable_action_trains_a_step_mlp():
    _trains_one_step(mlp([8, 8], 3, input_shape=(4, 3)), (4, 3), SGD)


@pytest.mark.slow
def test_every_applicable_action_trains_a_step_cnn():
    _trains_one_step(cnn([4, 4], 3, input_shape=(6, 6, 1), batchnorm=True), (6, 6, 1), SGD)


def _program(child, settings: TrainConfig):
    """What makes a different training program: the graph, the optimizer's form and the schedule's."""
    o = settings.optimizer
    return child, o.name, o.momentum > 0, settings.schedule.name


def _trains_one_step(arch, input_shape, config, architectures_only=False):
    """One step of every applicable action's child; children that differ from an earlier one only in
    numbers the trainer reads at run time (learning rate, decay, momentum value) are not retrained.
    `architectures_only`: only the actions that change the architecture (the quick test)."""
    data = _tiny_dataset(input_shape, arch.output_shape(input_shape)[-1])
    trained = set()
    for action in ACTIONS.values():
        if not action.applicable(arch, config):
            continue
        child, child_settings = action(arch, config)
        if _program(child, child_settings) in trained or (architectures_only and child == arch):
            continue
        trained.add(_program(child, child_settings))
        result = train(child, data, dataclasses.replace(child_settings, epochs=1, batch_size=4))
        assert result.epochs == 1, action.name
        assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"]), action.name
    assert len(trained) >= 10


@pytest.mark.parametrize("arch, input_shape", [
    (mlp([8, 8], 3, input_shape=(4, 3)), (4, 3)),
    (cnn([4, 4], 3, input_shape=(6, 6, 1), batchnorm=True), (6, 6, 1)),
], ids=["mlp", "cnn"])
def test_function_preserving_actions_keep_the_outputs(arch, input_shape):
    _keeps_outputs(arch, input_shape, 0)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archs(max_blocks=3), st.integers(0, 2**16))
def test_function_preserving_actions_keep_the_outputs_of_random_archs(pair, seed):
    _keeps_outputs(*pair, seed)


def _keeps_outputs(arch, input_shape, seed):
    module = to_flax(arch)
    variables = init_variables(module, jax.random.key(seed), input_shape)
    if "batch_stats" in variables:  # non-trivial running statistics, so BatchNorm's are carried
        stats = variables["batch_stats"]
        keys = iter(jax.random.split(jax.random.key(seed + 1), 2 * len(stats)))
        variables = dict(variables, batch_stats={
            n: {"mean": 0.1 * jax.random.normal(next(keys), s["mean"].shape),
                "var": jax.random.uniform(next(keys), s["var"].shape, minval=0.5, maxval=2.0)}
            for n, s in stats.items()})
    x = random_input(input_shape, seed + 2, 4)
    parent_out = module.apply(variables, x, train=False)
    config = TrainConfig()
    for action in ACTIONS.values():
        if not action.function_preserving or not action.applicable(arch, config):
            continue
        child, child_settings, child_vars = action.inherit(arch, config, variables, jax.random.key(seed + 3))
        assert child != arch and child_settings == config
        child_out = to_flax(child, input_shape=input_shape).apply(child_vars, x, train=False)
        scale = max(1.0, float(jnp.max(jnp.abs(parent_out))))
        diff = float(jnp.max(jnp.abs(child_out - parent_out))) / scale
        _measured.append(diff)
        assert diff <= FP_BOUND, f"{action.name}: max difference {diff:.3g} (relative to {scale:.3g})"


def teardown_module(module):
    if _measured:
        print(f"\nfunction-preserving actions: {len(_measured)} checks, max relative difference "
              f"{max(_measured):.3g} (bound {FP_BOUND:g})")
