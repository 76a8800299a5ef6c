"""Training settings check themselves (issue 12 #6): type and range, named by config path.

`TrainConfig`, `OptimizerConfig`, `ScheduleConfig` and `SizeLimits` refuse a bad
field when built (and on `dataclasses.replace`), so nas-train, nas-search and
Python users all fail at composition time with the key, what it accepts and
what was given, instead of training nothing and reporting ``done``.
"""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nas.train import OptimizerConfig, ScheduleConfig, SizeLimits, TrainConfig, TrainConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (spec, field, bad value, config path, what the message says it accepts)
BAD = [
    (TrainConfig, "epochs", 0, "train.epochs", "an integer >= 1"),
    (TrainConfig, "epochs", -1, "train.epochs", "an integer >= 1"),
    (TrainConfig, "epochs", "abc", "train.epochs", "an integer >= 1"),
    (TrainConfig, "epochs", 2.5, "train.epochs", "an integer >= 1"),
    (TrainConfig, "epochs", True, "train.epochs", "an integer >= 1"),  # a bool is not a count
    (TrainConfig, "batch_size", 0, "train.batch_size", "an integer >= 1"),
    (TrainConfig, "batch_size", "64", "train.batch_size", "an integer >= 1"),
    (TrainConfig, "eval_batch_size", 0, "train.eval_batch_size", "an integer >= 1"),
    (TrainConfig, "patience", -1, "train.patience", "null (never stop early) or an integer >= 1"),
    (TrainConfig, "patience", 0, "train.patience", "null (never stop early) or an integer >= 1"),
    (TrainConfig, "seed", -1, "train.seed", "an integer in [0, 4294967296)"),
    (TrainConfig, "seed", 2**32, "train.seed", "an integer in [0, 4294967296)"),  # would alias seed 0
    (TrainConfig, "optimizer", {"name": "adam"}, "optimizer", "of type OptimizerConfig"),
    (TrainConfig, "schedule", "step", "schedule", "of type ScheduleConfig"),
    (TrainConfig, "limits", None, "limits", "of type SizeLimits"),
    (OptimizerConfig, "name", "adagrd", "optimizer.name",
     "one of ['sgd', 'adam', 'adamw', 'rmsprop', 'adagrad', 'adadelta', 'adamax', 'nadam', 'ftrl']"),
    (OptimizerConfig, "learning_rate", -1, "optimizer.learning_rate", "a finite number >= 0"),
    (OptimizerConfig, "learning_rate", float("nan"), "optimizer.learning_rate", "a finite number >= 0"),
    (OptimizerConfig, "learning_rate", float("inf"), "optimizer.learning_rate", "a finite number >= 0"),
    (OptimizerConfig, "learning_rate", "1e-3", "optimizer.learning_rate", "a finite number >= 0"),
    (OptimizerConfig, "weight_decay", -1e-4, "optimizer.weight_decay", "a finite number >= 0"),
    (OptimizerConfig, "momentum", 1.0, "optimizer.momentum", "a number in [0, 1)"),
    (OptimizerConfig, "momentum", -0.1, "optimizer.momentum", "a number in [0, 1)"),
    (OptimizerConfig, "nesterov", 1, "optimizer.nesterov", "true or false"),
    (OptimizerConfig, "b1", 1.0, "optimizer.b1", "a number in [0, 1)"),
    (OptimizerConfig, "b2", 1.5, "optimizer.b2", "a number in [0, 1)"),
    (OptimizerConfig, "eps", 0.0, "optimizer.eps", "a finite number > 0"),
    (OptimizerConfig, "rho", 1.0, "optimizer.rho", "a number in [0, 1)"),
    (OptimizerConfig, "amsgrad", "false", "optimizer.amsgrad", "true or false"),
    (ScheduleConfig, "name", "linear", "schedule.name", "one of ['constant', 'step', 'cosine', 'inverse_time']"),
    (ScheduleConfig, "drop_at", (0.75, 0.5), "schedule.drop_at", "increasing fractions in (0, 1)"),
    (ScheduleConfig, "drop_at", (0.5, 0.5), "schedule.drop_at", "increasing fractions in (0, 1)"),
    (ScheduleConfig, "drop_at", (0.5, 1.0), "schedule.drop_at", "increasing fractions in (0, 1)"),
    (ScheduleConfig, "drop_at", 0.5, "schedule.drop_at", "increasing fractions in (0, 1)"),
    (ScheduleConfig, "drop_factor", 0.0, "schedule.drop_factor", "a number in (0, 1]"),
    (ScheduleConfig, "drop_factor", 2.0, "schedule.drop_factor", "a number in (0, 1]"),
    (ScheduleConfig, "decay", -1e-6, "schedule.decay", "a finite number >= 0"),
    (SizeLimits, "max_params", 0, "limits.max_params", "null (no limit) or an integer >= 1"),
    (SizeLimits, "max_bytes", 1.5e9, "limits.max_bytes", "null (no limit) or an integer >= 1"),
]


@pytest.mark.parametrize("spec,field,value,key,accepts", BAD, ids=[f"{k}={v!r}" for _, _, v, k, _ in BAD])
def test_a_bad_setting_is_refused_with_its_key_range_and_value(spec, field, value, key, accepts):
    with pytest.raises(TrainConfigError) as info:
        spec(**{field: value})
    assert info.value.key == key
    message = str(info.value)
    assert message.startswith(f"{key} must be ") and accepts in message
    assert repr(value) in message and type(value).__name__ in message


def test_replace_checks_again_so_no_code_path_builds_a_bad_config():
    config = TrainConfig(epochs=4)
    with pytest.raises(TrainConfigError, match=r"train\.epochs must be an integer >= 1, got 0"):
        dataclasses.replace(config, epochs=0)
    with pytest.raises(TrainConfigError, match="optimizer.learning_rate"):
        dataclasses.replace(config.optimizer, learning_rate=-1.0)


def test_defaults_are_valid_and_numbers_are_normalised():
    TrainConfig(), OptimizerConfig(), ScheduleConfig(), SizeLimits()
    # A zero learning rate is a legitimate frozen-weights probe (the early-stopping test uses it).
    assert OptimizerConfig(learning_rate=0).learning_rate == 0.0
    opt = OptimizerConfig(learning_rate=1, weight_decay=np.float32(0.5), momentum=0)
    assert type(opt.learning_rate) is float and type(opt.weight_decay) is float and opt.momentum == 0.0
    config = TrainConfig(epochs=np.int64(3), batch_size=np.int32(16), patience=None)
    assert type(config.epochs) is int and type(config.batch_size) is int
    assert ScheduleConfig(drop_at=[0.25, 0.5, 0.9]).drop_at == (0.25, 0.5, 0.9)  # hashable: keys compiled programs
    assert ScheduleConfig(drop_at=()).drop_at == ()
    assert SizeLimits(max_params=None, max_bytes=None) == SizeLimits(None, None)
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1


def test_search_code_that_derives_configs_still_works(digits):
    """The evaluator derives every trial's config with dataclasses.replace: proposals stay valid."""
    from nas.search import Posed, Problem, SearchSpace
    from nas.search.evaluator import config_for
    from nas.search.hyperband import HYPERBAND
    from nas.search.hyperband_space import HyperbandSpace
    from nas.search.random_search import RANDOM, SOBOL

    base = TrainConfig(epochs=3, batch_size=64, patience=2)
    for strategy, space in [(RANDOM, SearchSpace()), (SOBOL, SearchSpace()), (HYPERBAND, HyperbandSpace())]:
        state = strategy.init(Posed(space, Problem.of(digits)), 0)
        _, candidates = strategy.ask(state, 6)
        for c in candidates:
            config = config_for(c, base)
            assert config.epochs >= 1 and config.optimizer.learning_rate > 0 and config.seed == c.trial
    bad = dataclasses.replace(candidates[0], learning_rate=-1e-3)
    with pytest.raises(TrainConfigError, match="optimizer.learning_rate"):
        config_for(bad, base)


# ------------------------------------------------------------------ composition from Hydra configs
def _train_config(config_name, *overrides):
    from nas.cli import settings

    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        return settings.train_config(compose(config_name, overrides=list(overrides)))


@pytest.mark.parametrize("config_name,override,key", [
    ("train", "train.epochs=abc", "train.epochs"),
    ("train", "train.epochs=0", "train.epochs"),
    ("train", "train.batch_size=0", "train.batch_size"),
    ("search", "train.patience=-1", "train.patience"),
    ("train", "optimizer.learning_rate=-1", "optimizer.learning_rate"),
    ("train", "optimizer.b2=1", "optimizer.b2"),
    ("search", "schedule=step", "schedule.drop_at"),  # with the override below
    ("train", "limits.max_bytes=-5", "limits.max_bytes"),
])
def test_composition_names_the_config_key(config_name, override, key):
    extra = ["schedule.drop_at=[0.8,0.4]"] if override == "schedule=step" else []
    with pytest.raises(TrainConfigError) as info:
        _train_config(config_name, override, *extra)
    assert info.value.key == key and str(info.value).startswith(key)


def test_composed_defaults_and_limits():
    train, search = _train_config("train"), _train_config("search")
    assert train.limits == search.limits == SizeLimits()
    assert _train_config("train", "limits.max_params=1000", "limits.max_bytes=null").limits == SizeLimits(1000, None)
    assert _train_config("train", "optimizer=sgd", "optimizer.learning_rate=0").optimizer.learning_rate == 0.0


def test_unknown_keys_are_named_by_path_and_old_configs_without_limits_compose():
    from nas.cli import settings

    with pytest.raises(ValueError, match=r"unknown train setting\(s\) \['train.epoch'\]"):
        _train_config("train", "+train.epoch=3")
    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        cfg = compose("train")
    old = OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg).items() if k != "limits"})
    assert settings.train_config(old).limits == SizeLimits()  # a config written before the limits group
    clashing = OmegaConf.merge(old, {"train": {"optimizer": {"name": "sgd"}}})
    with pytest.raises(ValueError, match="its own config group"):
        settings.train_config(clashing)


# ------------------------------------------------------------------ the entry points
def _fails(module, *overrides, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true")
    proc = subprocess.run(
        [sys.executable, "-m", f"nas.cli.{module}", *overrides, "logger=console", "progress=false",
         "runtime.compilation_cache=null", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert not os.path.exists(os.path.join(tmp_path, "model")) and not os.path.exists(
        os.path.join(tmp_path, "results.json"))  # nothing trained, nothing reported done
    return proc.stderr


@pytest.mark.parametrize("module,override,message", [
    ("train", "train.epochs=0", "train.epochs must be an integer >= 1, got 0 (int)"),
    ("train", "train.epochs=abc", "train.epochs must be an integer >= 1, got 'abc' (str)"),
    ("search", "optimizer.learning_rate=-1", "optimizer.learning_rate must be a finite number >= 0, got -1 (int)"),
])
def test_entry_points_exit_non_zero_naming_the_key(tmp_path, module, override, message):
    stderr = _fails(module, "model=mlp", "model.hidden=[8]", override, tmp_path=tmp_path) if module == "train" \
        else _fails(module, "search.max_trials=1", override, tmp_path=tmp_path)
    assert message in stderr


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam"])
def test_every_optimizer_config_composes_into_the_optimizer_it_names(name):
    from nas.train import make_optimizer

    config = _train_config("train", f"optimizer={name}")
    assert config.optimizer.name == name
    make_optimizer(config.optimizer, config.schedule, total_steps=10)  # the trainer can build it
