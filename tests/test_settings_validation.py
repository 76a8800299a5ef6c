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
    from nas.api import settings

    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        return settings.train_config(compose(config_name, overrides=list(overrides)))


@pytest.mark.parametrize("config_name,override,key", [
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
    from nas.api import settings

    with pytest.raises(ValueError, match=r"unknown train setting\(s\) \['train.epoch'\]"):
        _train_config("train", "+train.epoch=3")
    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        cfg = compose("train")
    old = OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg).items() if k != "limits"})
    assert settings.train_config(old).limits == SizeLimits()  # a config written before the limits group
    clashing = OmegaConf.merge(old, {"train": {"optimizer": {"name": "sgd"}}})
    with pytest.raises(ValueError, match="its own config group"):
        settings.train_config(clashing)


# ------------------------------------------------------------------ schemas: types and keys at compose time
def _compose(config_name, *overrides):
    from nas.api import settings  # noqa: F401  registers the schemas

    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


@pytest.mark.parametrize("config_name,override,key,message", [
    ("train", "train.epochs=abc", "train.epochs", "train.epochs must be an integer >= 1, got 'abc' (str)"),
    ("train", "train.epochs=2.5", "train.epochs", "train.epochs must be an integer >= 1, got 2.5 (float)"),
    ("search", "optimizer.momentum=x", "optimizer.momentum", "optimizer.momentum must be a number in [0, 1), got 'x'"),
    ("train", "limits.max_bytes=1.5e9", "limits.max_bytes", "limits.max_bytes must be null (no limit) or an integer"),
    ("train", "progress=maybe", "progress", "progress must be true or false, got 'maybe' (str)"),
    ("search", "resume=often", "resume", "resume must be true or false, got 'often' (str)"),
    ("search", "search.max_trials=many", "search.max_trials", "search.max_trials must be an integer, got 'many'"),
    ("search", "search.objective.c_0=abc", "search.objective.c_0", "search.objective.c_0 must be null or a number"),
    ("train", "data.seed=x", "data.seed", "data.seed must be an integer, got 'x' (str)"),
    ("train", "logger.tags=x", "logger.tags", "logger.tags must be a list"),
    ("eval", "eval_batch_size=x", "eval_batch_size", "eval_batch_size must be an integer, got 'x' (str)"),
    ("train", "train.epochs=null", "train.epochs", "train.epochs must not be null"),
])
def test_a_wrong_type_fails_while_hydra_composes_naming_the_key(config_name, override, key, message):
    from hydra.errors import ConfigCompositionException

    from nas.api.config_errors import describe

    with pytest.raises(ConfigCompositionException) as info:
        _compose(config_name, override)
    assert info.value.__cause__.full_key == key
    assert describe(info.value).startswith(message)


@pytest.mark.parametrize("config_name,override,key", [
    ("train", "optimizer.lr=0.1", "optimizer.lr"),        # learning_rate
    ("search", "train.epoch=3", "train.epoch"),
    ("search", "search.objective.wc=1", "search.objective.wc"),
])
def test_an_unknown_key_fails_while_hydra_composes_listing_the_known_ones(config_name, override, key):
    from hydra.errors import ConfigCompositionException

    from nas.api.config_errors import describe

    with pytest.raises(ConfigCompositionException) as info:
        _compose(config_name, override)
    message = describe(info.value)
    assert message.startswith(f"{key}: no such setting; ") and "has [" in message


def test_schemas_follow_the_specs_and_add_no_values():
    """Every spec field is typed in its group; a key no YAML sets stays missing and the spec default applies."""
    from nas.api import schema, settings
    from nas.tracking import LoggerConfig
    from nas.train import OptimizerConfig

    assert [f.name for f in dataclasses.fields(schema.OptimizerSchema)] == [
        f.name for f in dataclasses.fields(OptimizerConfig)]
    assert {f.name for f in dataclasses.fields(schema.TrainSchema)} == {
        f.name for f in dataclasses.fields(TrainConfig)} - set(schema.TRAIN_GROUPS)
    assert {f.name for f in dataclasses.fields(schema.LoggerSchema)} == {
        f.name for f in dataclasses.fields(LoggerConfig)}
    cfg = _compose("train")
    assert OmegaConf.is_missing(cfg.optimizer, "momentum")  # adam.yaml does not set it
    assert "momentum" not in settings.plain(cfg.optimizer)  # so nothing new enters fingerprints or records
    assert settings.plain(cfg.optimizer) == OmegaConf.to_container(
        OmegaConf.load(os.path.join(REPO, "conf", "optimizer", "adam.yaml")))
    assert settings.train_config(cfg).optimizer.momentum == OptimizerConfig().momentum
    assert _compose("train", "optimizer.momentum=0.5").optimizer.momentum == 0.5  # no + needed for a spec field


def test_every_search_config_composes_and_its_space_is_checked_before_data():
    from nas.api import settings

    for path in sorted(os.listdir(os.path.join(REPO, "conf", "search"))):
        cfg = _compose("search", f"search={path[:-5]}")
        settings.strategy(cfg.search)  # builds the space spec: no dataset needed
    with pytest.raises(settings.SettingsError, match=r"search\.space\.mlp_widht"):
        settings.strategy(_compose("search", "+search.space.mlp_widht=[1,2]").search)


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
    # The schema types learning_rate as a float, so Hydra hands the spec -1.0.
    ("search", "optimizer.learning_rate=-1", "optimizer.learning_rate must be a finite number >= 0, got -1.0 (float)"),
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


def _cli(module, *overrides, tmp_path, env=None):
    env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", f"nas.cli.{module}", *overrides, f"hydra.run.dir={tmp_path}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module,program,overrides,message", [
    ("train", "nas-train", ["data=fashion_mnist", "train.epochs=abc"],
     "train.epochs must be an integer >= 1, got 'abc' (str)"),
    ("search", "nas-search", ["data=fashion_mnist", "search.max_trials=abc"],
     "search.max_trials must be an integer, got 'abc' (str)"),
    ("evaluate", "nas-eval", ["checkpoint=/nonexistent/model", "data=fashion_mnist", "eval_batch_size=abc"],
     "eval_batch_size must be an integer, got 'abc' (str)"),
])
def test_a_config_error_is_one_line_exit_2_before_any_data_is_read(tmp_path, module, program, overrides, message):
    """Fashion-MNIST's directory is missing and the checkpoint does not exist: a program that read data (or
    the checkpoint) before checking its config would report those instead."""
    proc = _cli(module, *overrides, tmp_path=tmp_path / "run",
                env={"NAS_FASHION_MNIST_DIR": str(tmp_path / "missing"), "TFDS_DATA_DIR": str(tmp_path / "none")})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip() == f"{program}: error: {message}"
    assert not os.path.exists(tmp_path / "run")  # Hydra never created the run directory


def test_the_same_command_with_a_good_config_reads_the_data_and_fails_there(tmp_path):
    """The control for the test above: its missing Fashion-MNIST directory is an error once the config is right."""
    proc = _cli("train", "data=fashion_mnist", "logger=console", tmp_path=tmp_path / "run",
                env={"NAS_FASHION_MNIST_DIR": str(tmp_path / "missing")})
    assert proc.returncode == 2 and "NAS_FASHION_MNIST_DIR" in proc.stderr and "train.epochs" not in proc.stderr


def test_a_missing_config_option_and_a_missing_mandatory_value_exit_2_naming_them(tmp_path):
    proc = _cli("train", "data=fashion", tmp_path=tmp_path / "a")
    assert proc.returncode == 2 and proc.stderr.startswith("nas-train: error: ")
    assert "Could not find 'data/fashion'" in proc.stderr and "fashion_mnist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = _cli("evaluate", tmp_path=tmp_path / "b")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "nas-eval: error: checkpoint is not set (???); pass checkpoint=<value>"
