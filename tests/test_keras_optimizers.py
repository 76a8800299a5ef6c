"""Keras's optimizers in the trainer and in Manas's translation, against Keras's own update rules.

A mined model trains with the optimizer its author wrote: every optimizer the
miner recognises (SGD, Adam, RMSprop, Adagrad, Adadelta, Adamax, Nadam, FTRL,
AdamW) has a trainer config, and Adagrad, Adadelta, Adamax, Nadam, FTRL and
centred RMSprop train by Keras's exact rule (`nas.train.keras_optimizers`).
Each is checked step by step against Keras's update rule written out by hand
in NumPy, on a small quadratic in float64: the Keras-exact transformations
(`to_optax`) and the trainer's `make_optimizer` to 1e-6 over 25 steps, and
the trainer's Adadelta and Nadam from a mined source to 1e-12.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nas.mining import mine_source, write_zoo
from nas.mining.optimizers import OPTIMIZER_TYPES
from nas.search import Problem
from nas.search.evaluator import config_for
from nas.search.manas import ManasSpace, mined_setup, starting_points
from nas.search.manas.optimizer_translation import (
    KERAS_DEFAULTS, KERAS_OPTIMIZERS, OptimizerTranslationError, parse_keras_optimizer, to_optax, to_train_config,
)
from nas.search.strategy import Candidate
from nas.train import DONE, TrainConfig, TrainConfigError, train
from nas.train.config import OptimizerConfig, ScheduleConfig
from nas.train.optim import make_optimizer

TOL64 = 1e-6
EXACT64 = 1e-12  # float64 rounding over a few steps: the same arithmetic, not an approximation of it


# ====================================================================== optimizers: Keras 2 by hand
def _quadratic():
    """f(p) = 1/2 sum a (p - c)^2 over a two-leaf pytree; grad = a (p - c)."""
    a = {"w": np.array([1.0, 4.0, 0.25]), "b": np.array([[2.0, 0.5]])}
    c = {"w": np.array([1.0, -2.0, 3.0]), "b": np.array([[-1.0, 0.5]])}
    p0 = {"w": np.array([0.3, 0.1, -0.7]), "b": np.array([[0.9, -0.4]])}
    return p0, (lambda p: {k: a[k] * (p[k] - c[k]) for k in p})


def _keras_reference(name: str, h: dict, steps: int) -> dict:
    """Keras's update rules, one leaf at a time, in NumPy float64.

    Keras 2's keras/optimizers.py (2.2.x) for SGD, Adam, RMSprop, Adagrad,
    Adadelta, Adamax and Nadam; tf.keras's optimizer_v2 for RMSprop's momentum
    and centred forms; Keras 3's keras/src/optimizers for FTRL and AdamW.
    """
    p0, grad = _quadratic()
    params = {k: v.copy() for k, v in p0.items()}
    state = {k: {} for k in params}
    for it in range(steps):
        t = it + 1
        lr = h["learning_rate"] / (1.0 + h.get("decay", 0.0) * it)
        grads = grad(params)
        for k in params:
            p, g, s = params[k], grads[k], state[k]
            zeros = np.zeros_like(p)
            if name == "sgd":
                v = h["momentum"] * s.get("v", zeros) - lr * g
                s["v"] = v
                p = p + h["momentum"] * v - lr * g if h["nesterov"] else p + v
            elif name == "adam":
                m = h["beta_1"] * s.get("m", zeros) + (1 - h["beta_1"]) * g
                v = h["beta_2"] * s.get("v", zeros) + (1 - h["beta_2"]) * g * g
                lr_t = lr * math.sqrt(1 - h["beta_2"] ** t) / (1 - h["beta_1"] ** t)
                if h["amsgrad"]:
                    s["vhat"] = np.maximum(s.get("vhat", zeros), v)
                    p = p - lr_t * m / (np.sqrt(s["vhat"]) + h["epsilon"])
                else:
                    p = p - lr_t * m / (np.sqrt(v) + h["epsilon"])
                s["m"], s["v"] = m, v
            elif name == "rmsprop":
                a = h["rho"] * s.get("a", zeros) + (1 - h["rho"]) * g * g
                denominator = a
                if h.get("centered"):  # tf.keras: the mean gradient's square comes off the mean square
                    s["mg"] = h["rho"] * s.get("mg", zeros) + (1 - h["rho"]) * g
                    denominator = a - s["mg"] ** 2
                if h.get("momentum"):  # tf.keras's momentum form: epsilon inside the root
                    mom = h["momentum"] * s.get("mom", zeros) + lr * g / np.sqrt(denominator + h["epsilon"])
                    p = p - mom
                    s["mom"] = mom
                else:
                    p = p - lr * g / (np.sqrt(denominator) + h["epsilon"])
                s["a"] = a
            elif name == "adagrad":
                a = s.get("a", zeros + h["initial_accumulator_value"]) + g * g
                p = p - lr * g / (np.sqrt(a) + h["epsilon"])
                s["a"] = a
            elif name == "adadelta":
                a = h["rho"] * s.get("a", zeros) + (1 - h["rho"]) * g * g
                d_a = s.get("d_a", zeros)
                update = g * np.sqrt(d_a + h["epsilon"]) / np.sqrt(a + h["epsilon"])
                p = p - lr * update
                s["a"], s["d_a"] = a, h["rho"] * d_a + (1 - h["rho"]) * update * update
            elif name == "adamax":
                m = h["beta_1"] * s.get("m", zeros) + (1 - h["beta_1"]) * g
                u = np.maximum(h["beta_2"] * s.get("u", zeros), np.abs(g))
                p = p - lr / (1 - h["beta_1"] ** t) * m / (u + h["epsilon"])
                s["m"], s["u"] = m, u
            elif name == "nadam":
                b1, b2 = h["beta_1"], h["beta_2"]
                cache_t = b1 * (1 - 0.5 * 0.96 ** (t * h["schedule_decay"]))
                cache_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * h["schedule_decay"]))
                schedule = s.get("schedule", 1.0) * cache_t
                schedule_next = schedule * cache_next
                m = b1 * s.get("m", zeros) + (1 - b1) * g
                v = b2 * s.get("v", zeros) + (1 - b2) * g * g
                m_bar = (1 - cache_t) * g / (1 - schedule) + cache_next * m / (1 - schedule_next)
                p = p - lr * m_bar / (np.sqrt(v / (1 - b2 ** t)) + h["epsilon"])
                s["m"], s["v"], s["schedule"] = m, v, schedule
            elif name == "adamw":  # Keras 3: the decoupled decay, then Adam's step, both from the old weights
                m = h["beta_1"] * s.get("m", zeros) + (1 - h["beta_1"]) * g
                v = h["beta_2"] * s.get("v", zeros) + (1 - h["beta_2"]) * g * g
                if h["amsgrad"]:
                    v_used = s["vhat"] = np.maximum(s.get("vhat", zeros), v)
                else:
                    v_used = v
                lr_t = lr * math.sqrt(1 - h["beta_2"] ** t) / (1 - h["beta_1"] ** t)
                p = p - p * h["weight_decay"] * lr
                p = p - lr_t * m / (np.sqrt(v_used) + h["epsilon"])
                s["m"], s["v"] = m, v
            elif name == "ftrl":  # Keras 3's Ftrl.update_step (tf.keras's ApplyFtrlV2)
                power = -h["learning_rate_power"]
                l2 = h["l2_regularization_strength"] + h["beta"] / (2.0 * lr)
                n = s.get("n", zeros + h["initial_accumulator_value"])
                n_new = n + g * g
                z = s.get("z", zeros) + g + 2 * h["l2_shrinkage_regularization_strength"] * p - (
                    n_new ** power - n ** power) / lr * p
                l1 = h["l1_regularization_strength"]
                p = (np.clip(z, -l1, l1) - z) / (n_new ** power / lr + 2 * l2)
                s["n"], s["z"] = n_new, z
            else:
                raise ValueError(f"no reference for {name}")
            params[k] = p
    return params


def _run(tx: optax.GradientTransformation, steps: int) -> dict:
    p0, grad = _quadratic()
    with jax.enable_x64(True):
        params = jax.tree.map(jnp.asarray, p0)
        state = tx.init(params)
        for _ in range(steps):
            updates, state = tx.update(jax.tree.map(jnp.asarray, grad(params)), state, params)
            params = optax.apply_updates(params, updates)
        return jax.tree.map(np.asarray, params)


KERAS_CASES = [
    {"type": "SGD", "lr": 0.05},
    {"type": "SGD", "lr": 0.05, "decay": 0.1},
    {"type": "SGD", "learning_rate": 0.05, "momentum": 0.9, "decay": 0.05},
    {"type": "SGD", "lr": 0.01, "momentum": 0.9, "decay": 1e-2, "nesterov": True},
    {"type": "Adam"},
    {"type": "Adam", "lr": 0.05, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3, "decay": 0.01},
    {"type": "Adam", "lr": 0.05, "amsgrad": True, "decay": 0.01, "epsilon": None},
    {"type": "RMSprop", "lr": 0.01},
    {"type": "RMSprop", "lr": 0.01, "rho": 0.8, "epsilon": 1e-4, "decay": 0.05},
    {"type": "RMSprop", "lr": 0.01, "momentum": 0.5, "decay": 0.05},
    {"type": "Adagrad", "lr": 0.1, "decay": 0.01},
    {"type": "Adadelta", "rho": 0.9},
    {"type": "Adamax", "decay": 0.01},
    {"type": "Nadam", "lr": 0.01},
    {"type": "RMSprop", "lr": 0.01, "centered": True},
    {"type": "RMSprop", "lr": 0.01, "rho": 0.8, "momentum": 0.5, "centered": True, "decay": 0.05},
    {"type": "Ftrl", "learning_rate": 0.1},
    {"type": "Ftrl", "learning_rate": 0.2, "learning_rate_power": -0.3, "l1_regularization_strength": 0.01,
     "l2_regularization_strength": 0.02, "l2_shrinkage_regularization_strength": 0.05, "beta": 0.1,
     "initial_accumulator_value": 0.5, "decay": 0.01},
    {"type": "AdamW", "lr": 0.05, "weight_decay": 0.1, "decay": 0.01},
    {"type": "AdamW", "learning_rate": 0.05, "amsgrad": True, "epsilon": None},
]


@pytest.mark.parametrize("mined", KERAS_CASES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_translated_optimizer_takes_kerass_steps(mined):
    steps = 25
    parsed = parse_keras_optimizer(mined)
    expected = _keras_reference(parsed.name, dict(parsed.arguments), steps)
    got = _run(to_optax(mined), steps)
    moved = max(np.abs(expected[k] - _quadratic()[0][k]).max() for k in expected)
    assert moved > 1e-3  # the comparison is not between two parameter sets that stayed put
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=TOL64)


@pytest.mark.parametrize("name", sorted(KERAS_DEFAULTS))
def test_translated_optimizers_jit_in_float32(name):
    tx = to_optax({"type": name, "decay": 0.01, "clipnorm": 1.0})
    params = {"w": jnp.ones((3,), jnp.float32)}
    state = tx.init(params)
    updates, state = jax.jit(tx.update)({"w": jnp.full((3,), 0.5, jnp.float32)}, state, params)
    assert updates["w"].dtype == jnp.float32 and bool(jnp.all(updates["w"] < 0))


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_the_learning_rate_can_live_in_the_state_for_populations(name):
    # As nas.train.optim does: inject the learning rate, keep the rest static.
    arguments = dict(KERAS_DEFAULTS[name], momentum=0.5, decay=0.01) if name != "adam" else dict(
        KERAS_DEFAULTS[name], decay=0.01)
    build = KERAS_OPTIMIZERS[name]
    injected = optax.inject_hyperparams(build, static_args=tuple(k for k in arguments if k != "learning_rate"))
    steps = 10
    got = _run(injected(**arguments), steps)
    expected = _run(build(**arguments), steps)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=TOL64)


def test_missing_arguments_take_kerass_defaults():
    parsed = parse_keras_optimizer({"type": "sgd"})
    assert dict(parsed.arguments) == dict(KERAS_DEFAULTS["sgd"], clipnorm=None, clipvalue=None)
    assert parse_keras_optimizer({"type": "Adam", "lr": 1})["learning_rate"] == 1.0
    assert parse_keras_optimizer(None) is None


def test_what_the_miner_could_not_resolve_takes_the_defaults():
    parsed = parse_keras_optimizer({"type": "SGD", "learning_rate": {"unresolved": "args.lr"}, "momentum": 0.9})
    assert parsed["learning_rate"] == 0.01 and parsed["momentum"] == 0.9 and parsed.unresolved == ("learning_rate",)
    assert parse_keras_optimizer({"unresolved": "make_optimizer()"}) is None
    translated = to_train_config({"unresolved": "make_optimizer()"})
    assert translated.optimizer == OptimizerConfig() and "could not resolve" in translated.differences[0]
    sgd = to_train_config({"type": "SGD", "lr": {"unresolved": "args.lr"}})
    assert sgd.optimizer.learning_rate == 0.01 and "['learning_rate'] take Keras's defaults" in sgd.differences[0]


def test_clipping_is_applied_before_the_optimizer():
    steps = 5
    clipped = _run(to_optax({"type": "SGD", "lr": 0.1, "clipnorm": 0.5}), steps)
    by_hand = _run(optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1)), steps)
    for k in clipped:
        np.testing.assert_allclose(clipped[k], by_hand[k], rtol=0, atol=TOL64)
    valued = _run(to_optax({"type": "SGD", "lr": 0.1, "clipvalue": 0.2}), 1)
    p0, grad = _quadratic()
    for k in valued:
        np.testing.assert_allclose(valued[k], p0[k] - 0.1 * np.clip(grad(p0)[k], -0.2, 0.2), atol=TOL64)


@pytest.mark.parametrize("mined, message", [
    ({"type": "LBFGS"}, "unknown optimizer type 'LBFGS'"),
    ({"type": "SGD", "momentun": 0.9}, "unknown argument 'momentun'"),
    ({"type": "SGD", "lr": 0.1, "learning_rate": 0.2}, "both 'lr' and 'learning_rate'"),
    ({"type": "Adam", "lr": "learning_rate"}, "'lr' must be a non-negative number"),
    ({"type": "Adam", "amsgrad": 1}, "'amsgrad' must be True or False"),
    ({"lr": 0.1}, "with a 'type'"),
])
def test_bad_mined_optimizers_are_named(mined, message):
    with pytest.raises(OptimizerTranslationError, match=message):
        parse_keras_optimizer(mined)


def test_no_mined_optimizer_means_the_projects_default():
    steps = 5
    default = _run(make_optimizer(OptimizerConfig(), ScheduleConfig(), 1), steps)
    translated = _run(to_optax(None), steps)
    for k in default:
        np.testing.assert_allclose(translated[k], default[k], rtol=0, atol=TOL64)
    assert to_train_config(None).optimizer == OptimizerConfig() and to_train_config(None).exact


# ====================================================================== optimizers: as trainer configs
@pytest.mark.parametrize("mined", [
    {"type": "SGD", "lr": 0.05, "decay": 0.1},
    {"type": "SGD", "lr": 0.05, "momentum": 0.9},
    {"type": "SGD", "lr": 0.01, "momentum": 0.9, "nesterov": True},
    {"type": "RMSprop", "lr": 0.01, "momentum": 0.5},
    {"type": "RMSprop", "lr": 0.01, "centered": True, "decay": 0.05},
    {"type": "RMSprop", "lr": 0.01, "momentum": 0.5, "centered": True},
    {"type": "Adagrad", "lr": 0.1, "decay": 0.01},
    {"type": "Adagrad", "lr": 0.1, "initial_accumulator_value": 0.1, "epsilon": 1e-3},
    {"type": "Adadelta"},
    {"type": "Adadelta", "lr": 0.5, "rho": 0.9, "epsilon": 1e-6, "decay": 0.02},
    {"type": "Adamax", "lr": 0.05, "beta_1": 0.8, "decay": 0.01},
    {"type": "Nadam", "lr": 0.01},
    {"type": "Nadam", "lr": 0.02, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6, "schedule_decay": 0.01},
    {"type": "Ftrl", "learning_rate": 0.1},
    {"type": "Ftrl", "learning_rate": 0.2, "learning_rate_power": -0.3, "l1_regularization_strength": 0.01,
     "l2_regularization_strength": 0.02, "l2_shrinkage_regularization_strength": 0.05, "beta": 0.1,
     "initial_accumulator_value": 0.5, "decay": 0.01},
], ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_configs_called_exact_train_exactly_as_keras(mined):
    steps = 25
    translated = to_train_config(mined)
    assert translated.exact, translated.differences
    with jax.enable_x64(True):
        got = _run(make_optimizer(translated.optimizer, translated.schedule, steps), steps)
    parsed = parse_keras_optimizer(mined)
    expected = _keras_reference(parsed.name, dict(parsed.arguments), steps)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=TOL64)


def test_configs_say_where_they_depart_from_keras():
    sgd = to_train_config({"type": "SGD", "lr": 0.01, "momentum": 0.9, "decay": 1e-6, "nesterov": True})
    assert sgd.optimizer == OptimizerConfig("sgd", 0.01, momentum=0.9, nesterov=True)
    assert sgd.schedule == ScheduleConfig("inverse_time", decay=1e-6)
    assert not sgd.exact and "momentum trace" in sgd.differences[0]
    adam = to_train_config({"type": "Adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                            "epsilon": 1e-7, "amsgrad": True})
    assert adam.optimizer == OptimizerConfig("adam", 0.001, b1=0.9, b2=0.999, eps=1e-7, amsgrad=True)
    assert len(adam.differences) == 2
    rms = to_train_config({"type": "RMSprop", "lr": 0.002, "rho": 0.8})
    assert rms.optimizer.momentum == 0.0 and rms.optimizer.rho == 0.8  # not the config's default momentum 0.9
    adadelta = to_train_config({"type": "Adadelta"})  # Keras 2's defaults, not the config's
    assert adadelta.optimizer == OptimizerConfig("adadelta", 1.0, rho=0.95, eps=1e-7) and adadelta.exact
    centred = to_train_config({"type": "RMSprop", "centered": True})
    assert centred.optimizer.centered and centred.exact
    adamw = to_train_config({"type": "AdamW", "weight_decay": 0.01})
    assert adamw.optimizer == OptimizerConfig("adamw", 0.001, weight_decay=0.01) and "epsilon" in adamw.differences[0]
    clipped = to_train_config({"type": "Nadam", "clipnorm": 1.0})
    assert clipped.optimizer.name == "nadam" and "clipping" in clipped.differences[0]


# ====================================================================== the trainer: every optimizer the miner reads
def test_the_translation_reads_every_optimizer_the_miner_recognises():
    assert {t.lower() for t in OPTIMIZER_TYPES} == set(KERAS_DEFAULTS) == set(KERAS_OPTIMIZERS)


@pytest.mark.parametrize("kind", OPTIMIZER_TYPES)
def test_the_trainer_builds_every_optimizer_the_miner_recognises(kind):
    translated = to_train_config({"type": kind})
    assert translated.optimizer.name == kind.lower()
    setup, note = mined_setup({"type": kind}, learning_rate=3e-3)
    assert setup.optimizer == translated.optimizer and note.startswith(f"mined {kind.lower()}")
    tx = make_optimizer(translated.optimizer, translated.schedule, total_steps=10)
    params = {"w": jnp.ones((3,), jnp.float32)}
    state = tx.init(params)
    # The learning rate lives in the state, so a population's members can each have their own.
    assert float(state[0].hyperparams["learning_rate"]) == pytest.approx(translated.optimizer.learning_rate)
    updates, state = jax.jit(tx.update)({"w": jnp.full((3,), 0.5, jnp.float32)}, state, params)
    assert updates["w"].dtype == jnp.float32 and bool(jnp.all(updates["w"] < 0))


NEW_CONFIGS = [
    OptimizerConfig("adagrad", 0.1, eps=1e-3, initial_accumulator_value=0.1),
    OptimizerConfig("adadelta", 0.5, rho=0.9, eps=1e-6),
    OptimizerConfig("adamax", 0.05, b1=0.8, b2=0.99),
    OptimizerConfig("nadam", 0.02, b1=0.8, b2=0.99, eps=1e-6, schedule_decay=0.01),
    OptimizerConfig("rmsprop", 0.01, momentum=0.0, rho=0.8, centered=True),
    OptimizerConfig("ftrl", 0.2, initial_accumulator_value=0.5, lr_power=-0.3, l1=0.01, l2=0.02, l2_shrinkage=0.05,
                    beta=0.1),
]
# The same settings under Keras's names, for the reference.
KERAS_NAMES = {"learning_rate": "learning_rate", "eps": "epsilon", "rho": "rho", "b1": "beta_1", "b2": "beta_2",
               "momentum": "momentum", "centered": "centered", "schedule_decay": "schedule_decay",
               "initial_accumulator_value": "initial_accumulator_value", "lr_power": "learning_rate_power",
               "l1": "l1_regularization_strength", "l2": "l2_regularization_strength",
               "l2_shrinkage": "l2_shrinkage_regularization_strength", "beta": "beta"}


def _keras_arguments(cfg: OptimizerConfig) -> dict:
    defaults = KERAS_DEFAULTS[cfg.name]
    chosen = {KERAS_NAMES[f]: getattr(cfg, f) for f in KERAS_NAMES if KERAS_NAMES[f] in defaults}
    return dict(defaults, **chosen)


@pytest.mark.parametrize("cfg", NEW_CONFIGS, ids=lambda c: c.name + ("-centred" if c.centered else ""))
@pytest.mark.parametrize("schedule", [ScheduleConfig(), ScheduleConfig("inverse_time", decay=0.05)],
                         ids=["constant", "inverse_time"])
def test_the_trainer_takes_kerass_own_steps(cfg, schedule):
    steps = 8
    with jax.enable_x64(True):
        got = _run(make_optimizer(cfg, schedule, steps), steps)
    expected = _keras_reference(cfg.name, dict(_keras_arguments(cfg), decay=schedule.decay), steps)
    p0 = _quadratic()[0]
    assert max(np.abs(expected[k] - p0[k]).max() for k in expected) > 1e-3  # the parameters moved
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=EXACT64, atol=EXACT64)


SOURCE = '''
from keras.models import Sequential
from keras.layers import Conv2D, MaxPooling2D, Flatten, Dense
from keras.optimizers import {name}

model = Sequential()
model.add(Conv2D(16, (3, 3), activation="relu", input_shape=(8, 8, 1)))
model.add(MaxPooling2D((2, 2)))
model.add(Flatten())
model.add(Dense(10, activation="softmax"))
model.compile(loss="categorical_crossentropy", optimizer={name}({arguments}), metrics=["accuracy"])
'''


@pytest.mark.parametrize("name, arguments, expected", [
    ("Adadelta", "lr=0.5, rho=0.9, epsilon=1e-6", OptimizerConfig("adadelta", 0.5, rho=0.9, eps=1e-6)),
    ("Nadam", "0.01, 0.8, 0.99, 1e-8, 0.005",
     OptimizerConfig("nadam", 0.01, b1=0.8, b2=0.99, eps=1e-8, schedule_decay=0.005)),
])
def test_a_mined_model_trains_with_the_optimizer_its_source_compiles_with(name, arguments, expected, tmp_path):
    mined = mine_source(SOURCE.format(name=name, arguments=arguments), f"{name.lower()}_cnn.py")
    (model,) = mined.models
    zoo = str(tmp_path / "zoo.sqlite")
    write_zoo(zoo, [model])
    space = ManasSpace(zoo=zoo, max_models=1, repairs=(), learning_rate=3e-3)
    (start,), _, _ = starting_points(space, Problem((8, 8, 1), 10))
    assert start.setup.optimizer == expected and start.setup.learning_rate is None
    assert dict(start.choices)["optimizer"] == f"mined {name.lower()}"
    assert dict(start.choices)["optimizer_note"] == f"mined {name.lower()}"  # no difference from Keras to note

    candidate = Candidate(0, start.arch, start.setup.learning_rate, dict(start.choices),
                          optimizer=start.setup.optimizer, schedule=start.setup.schedule)
    config = config_for(candidate, TrainConfig(seed=1))
    assert config.optimizer == expected and config.schedule == ScheduleConfig()

    steps = 6
    with jax.enable_x64(True):
        got = _run(make_optimizer(config.optimizer, config.schedule, steps), steps)
    parsed = parse_keras_optimizer(model.optimizer)
    expected_params = _keras_reference(parsed.name, dict(parsed.arguments), steps)
    for k in expected_params:
        np.testing.assert_allclose(got[k], expected_params[k], rtol=EXACT64, atol=EXACT64)


@pytest.mark.parametrize("cfg", NEW_CONFIGS, ids=lambda c: c.name + ("-centred" if c.centered else ""))
def test_the_trainer_trains_with_each_new_optimizer(cfg, digits):
    from nas.ir import mlp

    result = train(mlp((16,), 10, input_shape=digits.input_shape), digits,
                   TrainConfig(epochs=2, batch_size=64, optimizer=cfg))
    assert result.status == DONE and all(math.isfinite(h["train_loss"]) for h in result.history)


def test_a_value_the_trainer_refuses_is_a_translation_error():
    with pytest.raises(OptimizerTranslationError, match="momentum"):
        to_train_config({"type": "SGD", "momentum": 1.0})
    setup, note = mined_setup({"type": "SGD", "momentum": 1.0}, learning_rate=3e-3)
    assert setup.optimizer is None and "unusable" in note
    with pytest.raises(OptimizerTranslationError, match="must be a number <= 0"):
        parse_keras_optimizer({"type": "Ftrl", "learning_rate_power": 0.5})


@pytest.mark.parametrize("field, value", [
    ("name", "lbfgs"), ("centered", 1), ("initial_accumulator_value", -0.1), ("schedule_decay", -1.0),
    ("lr_power", 0.5), ("l1", -1.0), ("l2", float("nan")), ("l2_shrinkage", -1.0), ("beta", "0"),
])
def test_optimizer_settings_are_checked(field, value):
    with pytest.raises(TrainConfigError, match=f"optimizer.{field}"):
        OptimizerConfig(**{field: value})
