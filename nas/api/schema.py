"""Hydra structured-config schemas for conf/: key names and value types, checked when Hydra composes.

Each schema is derived from the spec that the group's settings build
(`TrainConfig`, `OptimizerConfig`, `ScheduleConfig`, `SizeLimits`,
`LoggerConfig`, `RuntimeConfig`, `load_dataset`'s arguments, `Budget` and
`Objective`), so a field added to a spec is typed in its config group with no
second list to keep. Each app's primary config names its schema first in its
defaults list (``- schema/train``); the schema types the app's own keys and
every group it reads, so the group YAMLs stay plain files (nas-eval reads
conf/data/*.yaml directly). Hydra then refuses ``train.epochs=abc``
or ``optimizer.lr=0.1`` while it composes, before any data is read;
`nas.cli.run` rewords Hydra's error into one line naming the key.

A schema types keys but adds no values: every field defaults to ``???``
(missing), a key the YAML leaves out stays missing, and `nas.api.settings.plain`
drops missing keys, so the spec's own default applies and the composed
settings (and with them run fingerprints and recorded data arguments) are
exactly what the YAML says. Ranges and choices (``train.epochs >= 1``,
``optimizer.name``) are the specs' own checks, which run on the composed
values (`nas.api.settings`).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from nas.data import load_dataset
from nas.search import Objective
from nas.search.dream.conditions import Thresholds
from nas.search.dream.planner import DreamSettings
from nas.tapas.service import TapasSettings
from nas.search.engine import Budget
from nas.tracking import LoggerConfig
from nas.train import OptimizerConfig, ScheduleConfig, SizeLimits, TrainConfig

# The ConfigStore group the schemas live in: outside every group an app selects from.
SCHEMA_GROUP = "schema"


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """The ``runtime`` group (`nas.cli.run.configure_jax`).

    Attributes:
      compilation_cache: JAX's persistent compilation cache directory (None: off).
      enable_x64: float64 everywhere (JAX's ``jax_enable_x64``).
    """

    compilation_cache: str | None = None
    enable_x64: bool = False


def _omegaconf_type(annotation: Any) -> Any:
    """The OmegaConf-supported type for a spec annotation.

    Literal choices become str (the spec names the allowed values when it
    checks them); tuples become lists (YAML has no tuples); `X | None`
    becomes Optional[X]; anything OmegaConf cannot type becomes Any.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation in (int, float, bool, str):
        return annotation
    if origin is typing.Literal:
        return str
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and len(args) == 2:
            return Optional[_omegaconf_type(inner[0])]
        return Any
    if origin in (tuple, list):
        items = {a for a in args if a is not Ellipsis}
        item = _omegaconf_type(items.pop()) if len(items) == 1 else Any
        return List[item] if item in (int, float, bool, str) else List[Any]
    return Any


def _schema(name: str, fields: dict[str, Any], nullable: frozenset[str] = frozenset()) -> type:
    """A mutable dataclass with these typed fields, each defaulting to MISSING."""
    made = []
    for field, annotation in fields.items():
        kind = _omegaconf_type(annotation)
        if field in nullable and typing.get_origin(kind) is not typing.Union:
            kind = Optional[kind]
        made.append((field, kind, dataclasses.field(default=MISSING)))
    return dataclasses.make_dataclass(name, made)


def spec_fields(spec: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass spec's field annotations, resolved (the specs use postponed annotations)."""
    hints = typing.get_type_hints(spec)
    return {f.name: hints[f.name] for f in dataclasses.fields(spec) if f.name not in exclude}


def _data_fields() -> dict[str, Any]:
    """`load_dataset`'s keyword arguments, plus the keys a data config derives its name from."""
    hints = typing.get_type_hints(load_dataset)
    fields = {p: hints[p] for p in inspect.signature(load_dataset).parameters}
    return dict(fields, path=str, dataset=str)  # npz/image_folder's path, tfds's dataset


# The groups of the train section's spec that come from their own config groups.
TRAIN_GROUPS = ("optimizer", "schedule", "limits")

OptimizerSchema = _schema("OptimizerSchema", spec_fields(OptimizerConfig))
ScheduleSchema = _schema("ScheduleSchema", spec_fields(ScheduleConfig))
LimitsSchema = _schema("LimitsSchema", spec_fields(SizeLimits))
TrainSchema = _schema("TrainSchema", spec_fields(TrainConfig, exclude=TRAIN_GROUPS))
LoggerSchema = _schema("LoggerSchema", spec_fields(LoggerConfig))
RuntimeSchema = _schema("RuntimeSchema", spec_fields(RuntimeConfig))
DataSchema = _schema("DataSchema", _data_fields())
# c_0 null: measured on the space's most complex configuration (nas.search.reference).
ObjectiveSchema = _schema("ObjectiveSchema", spec_fields(Objective), nullable=frozenset({"c_0"}))
SearchSchema = dataclasses.make_dataclass("SearchSchema", [
    *((f, _omegaconf_type(t), dataclasses.field(default=MISSING)) for f, t in {
        "name": str, "strategy": str, "seed": int, "max_attempts": int, **spec_fields(Budget)}.items()),
    ("objective", ObjectiveSchema, dataclasses.field(default_factory=ObjectiveSchema)),
    # Each strategy's own space spec (Strategy.space) checks this node: nas.api.settings.strategy.
    ("space", Dict[str, Any], dataclasses.field(default=MISSING)),
    # null or dream (nas.search.dream.repair); missing in the strategy files, so their fingerprints stay.
    ("repair", Optional[str], dataclasses.field(default=MISSING)),
    # null or tap (nas.search.prefilter); missing in the strategy files, so their fingerprints stay.
    ("prefilter", Optional[str], dataclasses.field(default=MISSING)),
])
ThresholdsSchema = _schema("ThresholdsSchema", spec_fields(Thresholds))
DreamSchema = dataclasses.make_dataclass("DreamSchema", [
    ("thresholds", ThresholdsSchema, dataclasses.field(default_factory=ThresholdsSchema)),
    *((f, _omegaconf_type(t), dataclasses.field(default=MISSING))
      for f, t in spec_fields(DreamSettings, exclude=("thresholds",)).items()),
])
# The lifelong database of experiments (conf/lde, nas.lde) that nas-train and nas-search append to.
LdeSchema = _schema("LdeSchema", {"enabled": bool, "path": str})

TapasSchema = _schema("TapasSchema", spec_fields(TapasSettings), nullable=frozenset({"cache"}))


def _group(schema: type, optional: bool = False) -> Any:
    """A typed field for a config group: the group's YAML merges into a node of this schema."""
    if optional:  # nas-eval's data: null (the dataset recorded in the checkpoint) unless data=... is given
        return dataclasses.field(default=None)
    return dataclasses.field(default_factory=schema)


@dataclasses.dataclass
class TrainAppSchema:
    """nas-train's primary config: its own keys and the schema of every group it reads."""

    train: TrainSchema = _group(TrainSchema)  # type: ignore[valid-type]
    progress: bool = MISSING
    data: DataSchema = _group(DataSchema)  # type: ignore[valid-type]
    model: Any = MISSING  # mlp/cnn/builtin/file take different keys (nas.api.settings.arch)
    optimizer: OptimizerSchema = _group(OptimizerSchema)  # type: ignore[valid-type]
    schedule: ScheduleSchema = _group(ScheduleSchema)  # type: ignore[valid-type]
    logger: LoggerSchema = _group(LoggerSchema)  # type: ignore[valid-type]
    runtime: RuntimeSchema = _group(RuntimeSchema)  # type: ignore[valid-type]
    limits: LimitsSchema = _group(LimitsSchema)  # type: ignore[valid-type]
    lde: LdeSchema = _group(LdeSchema)  # type: ignore[valid-type]


@dataclasses.dataclass
class SearchAppSchema(TrainAppSchema):
    """nas-search's primary config (nas-train's, plus the strategy and resume)."""

    search: SearchSchema = _group(SearchSchema)  # type: ignore[valid-type]
    dream: DreamSchema = _group(DreamSchema)  # type: ignore[valid-type]
    tapas: TapasSchema = _group(TapasSchema)  # type: ignore[valid-type]
    resume: bool = MISSING


@dataclasses.dataclass
class EvalAppSchema:
    """nas-eval's primary config."""

    checkpoint: str = MISSING
    split: str = MISSING
    data_overrides: Dict[str, Any] = MISSING
    eval_batch_size: int = MISSING
    data: Optional[DataSchema] = _group(DataSchema, optional=True)  # type: ignore[valid-type]
    logger: LoggerSchema = _group(LoggerSchema)  # type: ignore[valid-type]
    runtime: RuntimeSchema = _group(RuntimeSchema)  # type: ignore[valid-type]


@dataclasses.dataclass
class PredictAppSchema:
    """nas-predict's primary config."""

    checkpoint: str = MISSING
    key: Optional[str] = MISSING
    out: str = MISSING
    proba: bool = MISSING
    batch_size: int = MISSING
    data: Optional[DataSchema] = _group(DataSchema, optional=True)  # type: ignore[valid-type]
    runtime: RuntimeSchema = _group(RuntimeSchema)  # type: ignore[valid-type]


# Config path (as in a key: ``train.epochs``) -> the spec whose checks name that key's range.
SPEC_OF_KEY_PREFIX: dict[str, type] = {
    "train": TrainConfig, "optimizer": OptimizerConfig, "schedule": ScheduleConfig, "limits": SizeLimits,
}

APP_SCHEMAS: dict[str, type] = {"train": TrainAppSchema, "search": SearchAppSchema, "eval": EvalAppSchema,
                                "predict": PredictAppSchema}


def register(store: ConfigStore | None = None) -> None:
    """Stores each app's schema as ``schema/<app>`` (idempotent)."""
    store = store or ConfigStore.instance()
    for app, node in APP_SCHEMAS.items():
        store.store(group=SCHEMA_GROUP, name=app, node=node)


register()
