"""DictConfig -> typed objects, at the edge (library code never reads config)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hydra.utils import get_object

from nas.api import schema  # noqa: F401  registers the configs' schemas before anything composes them
from nas.data import Dataset, load_dataset
from nas.ir import Arch, builtin, cnn, mlp
from nas.ir.errors import IRError
from nas.search import Budget, Objective, Posed, Problem, Strategy
from nas.tracking import LoggerConfig
from nas.train import OptimizerConfig, ScheduleConfig, TrainConfig


class SettingsError(ValueError):
    """A setting is wrong: a key its spec does not know (``+train.epoch=3``), a value its spec refuses."""


def plain(cfg: Any) -> Any:
    """A config node as plain Python, interpolations resolved, keys left missing (``???``) dropped.

    The schemas (`nas.api.schema`) give every group all of its spec's keys,
    missing unless the YAML or the command line sets them; dropping those
    leaves exactly what was configured, and the spec's default applies.
    """
    if not isinstance(cfg, DictConfig):
        return cfg
    return _without_missing(cfg, OmegaConf.to_container(cfg, resolve=True))


def _without_missing(node: DictConfig, container: dict) -> dict:
    out = {}
    for key, value in container.items():
        if OmegaConf.is_missing(node, key):
            continue
        child = node[key]
        out[key] = _without_missing(child, value) if isinstance(child, DictConfig) else value
    return out


def _typed(cls, cfg: Any, where: str = "", /, **extra):
    """Builds dataclass `cls` from a config node; unknown keys are an error.

    Args:
      cls: the dataclass (a frozen spec).
      cfg: its config node (None: all defaults).
      where: the node's config path (``train``, ``optimizer``) for messages;
        the spec's own checks name their keys the same way
        (`nas.train.TrainConfigError`).
      extra: fields built from other config groups (a TrainConfig's optimizer).
    Returns:
      The spec; its __post_init__ has checked types and ranges where it has one.
    Raises:
      SettingsError: unknown keys, or a key given both here and by its own group.
    """
    node = dict(plain(cfg) or {})
    where = where or cls.__name__
    clash = sorted(set(node) & set(extra))
    if clash:
        raise SettingsError(f"{where}: {clash} come(s) from its own config group (e.g. {clash[0]}.<key>=...); "
                         f"remove {where}.{clash[0]}")
    values = dict(node, **extra)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        if where == cls.__name__:
            raise SettingsError(f"unknown {where} setting(s) {unknown}; known: {sorted(names)}")
        raise SettingsError(f"unknown {where} setting(s) {[f'{where}.{k}' for k in unknown]} ({cls.__name__}); "
                         f"known: {sorted(names - set(extra))}")
    for f in dataclasses.fields(cls):  # YAML lists -> the tuples frozen specs hold
        value = values.get(f.name)
        if isinstance(value, list):
            values[f.name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        elif isinstance(value, dict) and dataclasses.is_dataclass(f.default):  # a nested spec
            values[f.name] = _typed(type(f.default), value, f"{where}.{f.name}")
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


class ModelFileError(ValueError):
    """``model=file``: model.path cannot be read as an architecture that fits the data."""


def arch(cfg: DictConfig, data: Dataset) -> Arch:
    """The architecture a model config names, sized for `data`.

    Raises:
      ModelFileError: for ``model=file``, naming model.path: a missing or
        unreadable file, bad JSON, an invalid architecture (the IR's message
        names the node), or one whose input or output does not fit `data`.
    """
    spec = dict(plain(cfg))
    builder = spec.pop("builder")
    if builder == "file":
        path = os.path.abspath(os.path.expanduser(str(spec["path"])))
        where = f"model.path={path}"
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            raise ModelFileError(f"{where}: no such file; pass model.path=<an architecture JSON file, e.g. the "
                                 "arch.json of a model directory>") from None
        except OSError as exc:
            raise ModelFileError(f"{where}: cannot be read ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise ModelFileError(f"{where}: not UTF-8 text, so not an architecture JSON file ({exc})") from exc
        try:
            loaded = Arch.from_json(text)
        except IRError as exc:  # bad JSON, not an architecture document, wrong schema version
            raise ModelFileError(f"{where}: not an architecture document: {exc}") from exc
        try:
            loaded.validate(data.input_shape)
            out = loaded.output_shape(data.input_shape)
        except IRError as exc:  # names the node at fault
            raise ModelFileError(f"{where}: invalid architecture for dataset {data.name!r} (input shape "
                                 f"{list(data.input_shape)}): {exc}") from exc
        if out[-1] != data.num_outputs:
            needs = f"{data.num_classes} classes" if data.task == "classification" else "1 regression output"
            raise ModelFileError(f"{where}: the architecture outputs {out[-1]} values per example but dataset "
                                 f"{data.name!r} has {needs}; change the output layer's width to {data.num_outputs}")
        return loaded
    if builder == "builtin":
        return builtin(spec["name"], data.num_outputs, data.input_shape)
    if builder == "mlp":
        return mlp(spec.pop("hidden"), data.num_outputs, input_shape=data.input_shape, **spec)
    if builder == "cnn":
        return cnn(spec.pop("channels"), data.num_outputs, input_shape=data.input_shape, **spec)
    raise ValueError(f"unknown model.builder {builder!r}; use mlp, cnn, builtin or file")


def train_config(cfg: DictConfig) -> TrainConfig:
    """The `TrainConfig` of the ``train``, ``optimizer``, ``schedule`` and ``limits`` groups.

    Every value is checked here, before any data or model work: a wrong type
    or range raises `nas.train.TrainConfigError` naming the key
    (``train.epochs``), what it accepts and what was given. A config without
    a ``limits`` group (written before it existed) gets `SizeLimits()`.
    """
    from nas.train import SizeLimits

    return _typed(
        TrainConfig, cfg.train, "train",
        optimizer=_typed(OptimizerConfig, cfg.optimizer, "optimizer"),
        schedule=_typed(ScheduleConfig, cfg.schedule, "schedule"),
        limits=_typed(SizeLimits, cfg.get("limits"), "limits"),
    )


def logger_config(cfg: DictConfig) -> LoggerConfig:
    return _typed(LoggerConfig, cfg)


def strategy(cfg: DictConfig) -> Strategy:
    """The `Strategy` object a search config names (``strategy: module.NAME``); it names its space class.

    Raises:
      SettingsError: the config names ``space_class``, a key that is gone
        (the strategy names its space; the message says which), or the
        strategy names no space class for the ``space`` node to build.
    """
    found = get_object(cfg.strategy)
    if not isinstance(found, Strategy):
        raise ValueError(f"search.strategy {cfg.strategy!r} is a {type(found).__name__}, not a nas.search.Strategy")
    if found.space is None:
        raise SettingsError(f"search.strategy {cfg.strategy!r} names no space class (Strategy.space), so the "
                            "config's space node cannot be built; give the strategy space=<its space spec class>")
    if "space_class" in cfg:
        space = found.space
        raise SettingsError(f"search.space_class is gone: the strategy names its space ({cfg.strategy} searches "
                            f"{space.__module__}.{space.__qualname__}); remove space_class from the search config "
                            "and keep its space: settings")
    _typed(found.space, cfg.get("space"), "search.space")  # its keys are checked here, before any data is read
    return found


def dream(cfg: DictConfig):
    """The ``dream`` group as `nas.search.dream.planner.DreamSettings` (thresholds, priority table, action space).

    Raises:
      ValueError: naming the ``dream.<key>`` that is wrong (a priority file
        that is missing, malformed, names unknown actions or conditions, or
        was measured with other thresholds).
    """
    from nas.search.dream.planner import DreamSettings

    node = plain(cfg)
    unknown = sorted(set(node) - {f.name for f in dataclasses.fields(DreamSettings)})
    if unknown:
        raise SettingsError(f"unknown dream setting(s) {[f'dream.{k}' for k in unknown]}")
    return DreamSettings(**node)


REPAIRS = (None, "dream")


def repair(cfg: DictConfig, inner: Strategy, base: TrainConfig) -> Strategy:
    """``search.repair``: null (the strategy as configured) or ``dream`` (`nas.search.dream.repair`).

    Raises:
      SettingsError: another value, or search=dream, which repairs by itself.
    """
    chosen = None if "repair" not in cfg.search or OmegaConf.is_missing(cfg.search, "repair") else cfg.search.repair
    if chosen not in REPAIRS:
        raise SettingsError(f"search.repair must be null or dream, got {chosen!r}")
    if chosen is None:
        return inner
    if inner.name == "dream":
        raise SettingsError("search.repair=dream: search=dream already takes DREAM's actions; remove search.repair")
    from nas.search.dream.repair import with_dream_repair

    return with_dream_repair(inner, dream(cfg.dream), base)


PREFILTERS = (None, "tap")


def tapas(cfg: DictConfig):
    """The ``tapas`` group as `nas.tapas.service.TapasSettings` (tau, keep, the DCN probe, TAP's training)."""
    from nas.tapas.service import TapasSettings

    return _typed(TapasSettings, cfg, "tapas")


def prefilter_name(cfg: DictConfig) -> str | None:
    """``search.prefilter``: null or tap.

    Raises:
      SettingsError: another value.
    """
    chosen = None if "prefilter" not in cfg or OmegaConf.is_missing(cfg, "prefilter") else cfg.prefilter
    if chosen not in PREFILTERS:
        raise SettingsError(f"search.prefilter must be null or tap, got {chosen!r}")
    return chosen


def needs_tap(cfg: DictConfig) -> bool:
    """Whether the run needs TAPAS's predictor: ``search.prefilter=tap`` or ``search=tapas``."""
    return prefilter_name(cfg.search) == "tap" or cfg.search.strategy == "nas.search.tapas.TAPAS"


def prefilter(cfg: DictConfig, inner: Strategy, predictor: str | None) -> Strategy:
    """``search.prefilter=tap``: `inner` screened by the run's TAP (`nas.search.prefilter`); else `inner`.

    `predictor` is the run's frozen TAP directory, or None when none could
    be trained (no dataset within tau): the prefilter then steps aside.
    """
    if prefilter_name(cfg.search) != "tap" or predictor is None:
        return inner
    from nas.search.prefilter import with_prefilter
    from nas.tapas.service import load_scorer

    return with_prefilter(inner, load_scorer(predictor), tapas(cfg.tapas).keep)


def search_space(cfg: DictConfig, data: Dataset, predictor: str | None = None) -> Posed:
    """The strategy's space spec (`Strategy.space`) from ``space``, posed on `data`'s problem.

    `predictor`: the run's frozen TAP, for a space that ranks by it (``search=tapas``)
    and was not pointed at one by the user.

    Raises:
      SettingsError: ``space`` has a key the spec does not know.
      ValueError: the space cannot search this data (e.g. a CNN-only space
        on tabular data); the message names the shape.
    """
    space = _typed(strategy(cfg).space, cfg.space)
    if predictor is not None and getattr(space, "predictor", "") is None:
        space = dataclasses.replace(space, predictor=predictor)
    return Posed(space, Problem.of(data))


def objective(cfg: DictConfig, c_0: float) -> Objective:
    return Objective(w_c=float(cfg.w_c), complexity=cfg.complexity, c_0=float(c_0))


def budget(cfg: DictConfig) -> Budget:
    return Budget(max_trials=cfg.max_trials, max_time=cfg.max_time, target=cfg.target, batch=cfg.batch)


def max_attempts(cfg: DictConfig) -> int:
    """``search.max_attempts``: a trial whose process died this often is given up (default 3)."""
    value = cfg.get("max_attempts", 3)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"search.max_attempts must be an integer >= 1, got {value!r}")
    return value
