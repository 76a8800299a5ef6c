"""DictConfig -> typed objects, at the edge (library code never reads config)."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas.data import Dataset, load_dataset
from nas.ir import Arch, builtin, cnn, mlp
from hydra.utils import get_object

from nas.search import Budget, Objective, Strategy
from nas.tracking import LoggerConfig
from nas.train import OptimizerConfig, ScheduleConfig, TrainConfig


def plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def _typed(cls, cfg: Any, **extra):
    """Builds dataclass `cls` from a config node; unknown keys are an error."""
    values = dict(plain(cfg) or {}, **extra)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; known: {sorted(names)}")
    for f in dataclasses.fields(cls):  # YAML lists -> the tuples frozen specs hold
        value = values.get(f.name)
        if isinstance(value, list):
            values[f.name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        elif isinstance(value, dict) and dataclasses.is_dataclass(f.default):  # a nested spec
            values[f.name] = _typed(type(f.default), value)
    return cls(**values)


def data_arguments(cfg: DictConfig) -> dict[str, Any]:
    """The `load_dataset` keyword arguments a data config stands for (recorded in checkpoints)."""
    args = {k: v for k, v in plain(cfg).items() if k not in ("path", "dataset")}
    if args.get("image_size") is not None:
        args["image_size"] = tuple(args["image_size"])
    return args


def dataset(args: dict[str, Any]) -> Dataset:
    args = dict(args)
    return load_dataset(args.pop("name"), **args)


def arch(cfg: DictConfig, data: Dataset) -> Arch:
    """The architecture a model config names, sized for `data`."""
    spec = dict(plain(cfg))
    builder = spec.pop("builder")
    if builder == "file":
        with open(spec["path"]) as f:
            return Arch.from_json(f.read()).validate(data.input_shape)
    if builder == "builtin":
        return builtin(spec["name"], data.num_outputs, data.input_shape)
    if builder == "mlp":
        return mlp(spec.pop("hidden"), data.num_outputs, input_shape=data.input_shape, **spec)
    if builder == "cnn":
        return cnn(spec.pop("channels"), data.num_outputs, input_shape=data.input_shape, **spec)
    raise ValueError(f"unknown model.builder {builder!r}; use mlp, cnn, builtin or file")


def train_config(cfg: DictConfig) -> TrainConfig:
    return _typed(
        TrainConfig, cfg.train,
        optimizer=_typed(OptimizerConfig, cfg.optimizer),
        schedule=_typed(ScheduleConfig, cfg.schedule),
    )


def logger_config(cfg: DictConfig) -> LoggerConfig:
    return _typed(LoggerConfig, cfg)


def strategy(cfg: DictConfig) -> Strategy:
    """The `Strategy` object a search config names (``strategy: module.NAME``)."""
    found = get_object(cfg.strategy)
    if not isinstance(found, Strategy):
        raise ValueError(f"search.strategy {cfg.strategy!r} is a {type(found).__name__}, not a nas.search.Strategy")
    return found


def search_space(cfg: DictConfig, data: Dataset) -> Any:
    """The strategy's space spec (``space_class``) from ``space``, sized for `data`."""
    return _typed(get_object(cfg.space_class), cfg.space).for_data(data.input_shape, data.num_outputs)


def objective(cfg: DictConfig, c_0: float) -> Objective:
    return Objective(w_c=float(cfg.w_c), complexity=cfg.complexity, c_0=float(c_0))


def budget(cfg: DictConfig) -> Budget:
    return Budget(max_trials=cfg.max_trials, max_time=cfg.max_time, target=cfg.target, batch=cfg.batch)
