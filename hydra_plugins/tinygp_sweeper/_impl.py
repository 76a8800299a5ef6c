"""The tinygp sweeper's logic: overrides -> a BO space, batches through the launcher, a JSON record.

A sweep is the init/ask/tell loop of `nas.search.bo` with Hydra's launcher as
the evaluator (Deep-n-Cheap's GP + EI, section 2.2, on a stationary kernel):

1. The swept overrides become a `Space` (`parse_search_space`):
   `interval(a, b)` a float, `tag(log, interval(a, b))` a float on log scale,
   `int(interval(a, b))` an integer (log too when tagged), `range(a, b, step)`
   an ordered integer index into its grid, `choice(...)` / `a,b,c` / `glob(...)`
   a categorical (one-hot). Anything else is a fixed override passed through.
2. Each round asks the optimiser for `batch_size` configurations (the kriging
   believer spreads a batch out), launches them as one batch, reads each job's
   return value (a number, or `return[metric]`), and tells the optimiser. A
   job that raised, or returned something non-finite or without the metric, is
   told as a failure, which the optimiser scores as the worst value seen so far.
3. After every batch the trials are written to `<sweep dir>/<storage>`; a
   second invocation with the same sweep directory recovers the optimiser from
   that file (`bo.recover`) and continues the job numbering.

Stops after `n_trials` trials in all, or once one reaches `target`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.tinygp_sweeper.config import TinygpSweeperConf
from nas.search import bo
from nas.search.bo.space import KERNELS, Hyperparameter, Space, SpaceError, categorical

log = logging.getLogger(__name__)

FORMAT = "tinygp_sweeper/1"
DIRECTIONS = ("minimize", "maximize")


class SweepError(Exception):
    """Base class of the tinygp sweeper's errors."""


class SearchSpaceError(SweepError, ValueError):
    """An override cannot be turned into a search dimension."""


class ResumeError(SweepError):
    """The sweep directory holds a record this sweep cannot continue."""


class MetricError(SweepError, ValueError):
    """A job returned a dict, but no `metric` says which entry to optimise."""


# ---------------------------------------------------------------------------
# Settings

def _settings_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    """`TinygpSweeperConf`'s fields, as the checked settings hold them.

    The structured config is the one list of settings and defaults; the
    checked form only changes two types: the `Direction` enum becomes its
    name and the `params` mapping a tuple of pairs (hashable, frozen).
    """
    fields = []
    for f in dataclasses.fields(TinygpSweeperConf):
        if f.name.startswith("_"):
            continue
        if f.name == "direction":
            fields.append((f.name, str, dataclasses.field(default=f.default.name)))
        elif f.name == "params":
            fields.append((f.name, tuple, dataclasses.field(default=())))
        else:
            fields.append((f.name, f.type, dataclasses.field(default=f.default)))
    return fields


_SweepFields = dataclasses.make_dataclass("_SweepFields", _settings_fields(), frozen=True)


class SweepSettings(_SweepFields):
    """The sweeper config, checked (see `config.TinygpSweeperConf` for each field)."""

    @classmethod
    def create(cls, direction: Any = "minimize", params: Optional[Mapping[str, Any]] = None,
               **settings) -> "SweepSettings":
        """Settings from the config's values (an Enum direction, a DictConfig of params)."""
        direction = direction.name if isinstance(direction, Enum) else str(direction)
        settings = cls(direction=direction, params=tuple((str(k), str(v)) for k, v in (params or {}).items()),
                       **settings)
        if settings.direction not in DIRECTIONS:
            raise SweepError(f"hydra.sweeper.direction must be one of {DIRECTIONS}, got {direction!r}")
        if settings.n_trials < 1 or settings.batch_size < 1:
            raise SweepError(f"hydra.sweeper.n_trials and batch_size must be >= 1, got "
                             f"{settings.n_trials} and {settings.batch_size}")
        if settings.kernel not in KERNELS:
            raise SweepError(f"hydra.sweeper.kernel must be one of {KERNELS}, got {settings.kernel!r}")
        if settings.n_initial is not None and settings.n_initial < 1:
            raise SweepError(f"hydra.sweeper.n_initial must be >= 1 or null, got {settings.n_initial}")
        return settings

    def initial_trials(self, space: Space) -> int:
        """Sobol trials before the GP: `n_initial`, or 2 (d + 1) for d dimensions (at least 4)."""
        return self.n_initial if self.n_initial is not None else max(4, 2 * (len(space.params) + 1))

    def optimiser(self, space: Space) -> dict[str, Any]:
        """Keyword arguments of `bo.init` / `bo.recover`."""
        return {"n_initial": self.initial_trials(space), "n_candidates": self.n_candidates, "xi": self.xi}


# ---------------------------------------------------------------------------
# Overrides -> search space

@dataclasses.dataclass(frozen=True)
class Dimension:
    """One swept override: the hyperparameter the optimiser sees and how its value becomes override text.

    Attributes:
      key: the override's key as written, prefix included (`+lr`, `optimizer.lr`).
      hyperparameter: what the optimiser searches (named `key`).
      grid: range() only: the override text of each grid point; the
        hyperparameter is then the integer index into it.
    """

    key: str
    hyperparameter: Hyperparameter
    grid: tuple[str, ...] = ()

    def text(self, value) -> str:
        """The override value for an optimiser value."""
        p = self.hyperparameter
        if self.grid:
            return self.grid[int(value)]
        if p.kind == "categorical":
            return str(value)
        return str(int(value)) if p.integer else repr(float(value))

    def natural(self, value):
        """The value as the job sees it (for the record): a number, or a choice's text."""
        if self.grid:
            return _number(self.grid[int(value)])
        return value


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class SearchSpace(NamedTuple):
    """The swept dimensions as a BO `Space`, and the overrides passed through unchanged."""

    space: Space
    dimensions: tuple[Dimension, ...]
    fixed: tuple[str, ...]

    def overrides(self, config: Mapping[str, Any]) -> list[str]:
        """The job's override strings for an optimiser configuration."""
        swept = [f"{d.key}={d.text(config[d.hyperparameter.name])}" for d in self.dimensions]
        return list(self.fixed) + swept

    def natural(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {d.key: d.natural(config[d.hyperparameter.name]) for d in self.dimensions}


def dimension(override: Override) -> Optional[Dimension]:
    """The search dimension of a sweep override, or None for a fixed override.

    Raises:
      SearchSpaceError: the sweep cannot be searched (empty, log scale on a
        non-positive interval, a log tag on a range or choice, ...).
    """
    if not override.is_sweep_override():
        return None
    key, value = override.get_key_element(), override.value()
    tags = getattr(value, "tags", set()) or set()
    try:
        if override.is_interval_sweep():
            assert isinstance(value, IntervalSweep)
            # Hydra's grammar makes interval() bounds floats; int(interval(..)) keeps ints.
            integer = all(isinstance(v, int) and not isinstance(v, bool) for v in (value.start, value.end))
            return Dimension(key, Hyperparameter(key, float(value.start), float(value.end), log="log" in tags,
                                                 integer=integer))
        if "log" in tags:
            raise SearchSpaceError("tag(log, ...) applies to interval() only")
        texts = tuple(override.sweep_string_iterator())
        if len(texts) == 1:
            return None
        if not texts:
            raise SearchSpaceError("the sweep has no values")
        if override.is_range_sweep():
            assert isinstance(value, RangeSweep)
            # Equal steps: the grid index is as good a coordinate as the value.
            return Dimension(key, Hyperparameter(key, 0.0, float(len(texts) - 1), integer=True), grid=texts)
        return Dimension(key, categorical(key, texts))
    except (SpaceError, SearchSpaceError) as e:
        raise SearchSpaceError(f"override {override.input_line!r}: {e}") from e


def parse_search_space(arguments: Sequence[str], kernel: str = "matern52", config_loader=None) -> SearchSpace:
    """The search space of override strings (sweeper `params` first, then the command line).

    A later override of the same key replaces an earlier one, so the command
    line wins over `hydra.sweeper.params`.

    Args:
      arguments: override strings, e.g. ["optimizer.lr=tag(log, interval(1e-4, 1e-1))", "data=digits"].
      kernel: the GP kernel (categorical dimensions need matern52 or rbf).
      config_loader: Hydra's, to expand glob() over config groups; None otherwise.

    Raises:
      SearchSpaceError: an override cannot be searched, or nothing is swept.
    """
    parser = OverridesParser.create(config_loader=config_loader)
    by_key: dict[tuple[str, Optional[str]], Override] = {}
    for override in parser.parse_overrides(list(arguments)):
        by_key[(override.key_or_group, override.package)] = override
    dimensions, fixed = [], []
    for override in by_key.values():
        d = dimension(override)
        if d is None:
            text = override.input_line
            if override.is_sweep_override():  # a one-value sweep is that value
                text = f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"
            fixed.append(text)
        else:
            dimensions.append(d)
    if not dimensions:
        raise SearchSpaceError(f"nothing to search in {list(arguments)}: give at least one override a "
                               "sweep such as interval(0, 1), tag(log, interval(1e-4, 1e-1)) or choice(a, b)")
    try:
        space = Space(tuple(d.hyperparameter for d in dimensions), kernel=kernel)
    except SpaceError as e:
        raise SearchSpaceError(str(e)) from e
    return SearchSpace(space, tuple(dimensions), tuple(fixed))


# ---------------------------------------------------------------------------
# Job returns -> observations

class Outcome(NamedTuple):
    """What one job gave: its value in the metric's own direction (None if unusable) and why."""

    status: str  # completed | failed | non-finite | no-metric | not-a-number
    value: Optional[float]
    error: Optional[str] = None


def outcome(ret: JobReturn, metric: Optional[str]) -> Outcome:
    """Reads a job's return value.

    Raises:
      MetricError: the job returned a dict and `metric` is not set.
    """
    if ret.status != JobStatus.COMPLETED:
        return Outcome("failed", None, f"{type(ret._return_value).__name__}: {ret._return_value}")
    value = ret.return_value
    if isinstance(value, Mapping):
        if metric is None:
            raise MetricError(f"the job returned a dict with keys {sorted(map(str, value))}; "
                              "set hydra.sweeper.metric to the one to optimise")
        if metric not in value:
            return Outcome("no-metric", None, f"the job's return value has no {metric!r}; it has "
                                              f"{sorted(map(str, value))}")
        value = value[metric]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return Outcome("not-a-number", None, f"return value {value!r} is not a number")
    if not math.isfinite(number):
        return Outcome("non-finite", number, f"return value {number}")
    return Outcome("completed", number)


# ---------------------------------------------------------------------------
# The record in the sweep directory

def _space_json(space: Space) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(space)))


def _jsonable(value: Optional[float]):
    return value if value is None or math.isfinite(value) else str(value)  # JSON has no nan or inf


@dataclasses.dataclass
class SweepRecord:
    """Everything the sweep directory keeps: the space, the trials, the next job number.

    Each trial is a dict: job, config (the optimiser's view), params (the
    values the job saw), overrides, status, value (the metric as returned),
    error. It is the history `bo.recover` rebuilds the optimiser from.
    """

    space: dict
    fixed: list[str]
    trials: list[dict] = dataclasses.field(default_factory=list)
    next_job: int = 0
    propose_seconds: list[float] = dataclasses.field(default_factory=list)

    @classmethod
    def load(cls, path: Path, search: SearchSpace) -> "SweepRecord":
        """The record at `path`, or a new one; it must be over the same search space.

        Raises:
          ResumeError: the file is unreadable or its space differs.
        """
        if not path.exists():
            return cls(_space_json(search.space), list(search.fixed))
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ResumeError(f"cannot read the sweep record {path}: {e}; delete it to start afresh") from e
        if data.get("format") != FORMAT:
            raise ResumeError(f"{path} is not a {FORMAT} record (format {data.get('format')!r})")
        if data["space"] != _space_json(search.space):
            raise ResumeError(f"{path} holds a sweep over a different search space; give this sweep another "
                              "hydra.sweep.dir, or delete the file to start afresh")
        if data["fixed"] != list(search.fixed):
            log.warning(f"resuming {path}, whose fixed overrides were {data['fixed']}; now {list(search.fixed)}")
        return cls(data["space"], list(search.fixed), data["trials"], int(data["next_job"]),
                   list(data.get("propose_seconds", [])))

    def save(self, path: Path, settings: SweepSettings) -> None:
        """Writes the record atomically (a killed sweep leaves the previous one intact)."""
        data = {"format": FORMAT, "settings": dataclasses.asdict(settings), **dataclasses.asdict(self),
                "best": self.best(settings.direction)}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, path)

    def history(self, space: Space, direction: str) -> list[tuple[dict, float]]:
        """(config, value to minimise) pairs; unusable trials are nan, which the optimiser penalises."""
        sign = 1.0 if direction == "minimize" else -1.0
        return [(bo.canonical(space, t["config"]),
                 sign * t["value"] if t["status"] == "completed" else math.nan) for t in self.trials]

    def best(self, direction: str) -> Optional[dict]:
        done = [t for t in self.trials if t["status"] == "completed"]
        if not done:
            return None
        pick = min if direction == "minimize" else max
        return pick(done, key=lambda t: t["value"])

    def reached(self, target: Optional[float], direction: str) -> bool:
        best = self.best(direction)
        if target is None or best is None:
            return False
        return best["value"] <= target if direction == "minimize" else best["value"] >= target


# ---------------------------------------------------------------------------
# The sweeper

class TinygpSweeperImpl(Sweeper):
    """GP + EI over Hydra overrides; the plugin class `TinygpSweeper` delegates here."""

    def __init__(self, settings: SweepSettings) -> None:
        self.settings = settings
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> dict[str, Any]:
        """Runs the sweep; returns the best trial (or None) and the number of trials."""
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        s = self.settings
        search = parse_search_space([f"{k}={v}" for k, v in s.params] + list(arguments), s.kernel,
                                    self.hydra_context.config_loader)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        path = sweep_dir / s.storage
        record = SweepRecord.load(path, search)
        state = bo.recover(search.space, record.history(search.space, s.direction), s.seed,
                           **s.optimiser(search.space))
        if record.trials:
            log.info(f"Resuming {path}: {len(record.trials)} trials done, next job #{record.next_job}")
        log.info(f"tinygp sweeper: {len(search.dimensions)} dimensions "
                 f"({', '.join(f'{d.key}:{d.hyperparameter.kind}' for d in search.dimensions)}), "
                 f"{s.n_trials} trials in batches of {s.batch_size}, {s.direction} "
                 f"{s.metric or 'the return value'}")

        launcher_failures = 0
        while len(record.trials) < s.n_trials and not record.reached(s.target, s.direction):
            n = min(s.batch_size, s.n_trials - len(record.trials))
            tic = time.perf_counter()
            state, configs = bo.ask(state, n)
            record.propose_seconds.append((time.perf_counter() - tic) / n)
            batch = [search.overrides(c) for c in configs]
            self.validate_batch_is_legal(batch)
            first_job = record.next_job
            record.next_job += n  # saved before launching: a killed sweep never reuses these numbers
            record.save(path, s)
            try:
                outcomes = [outcome(ret, s.metric) for ret in self.launcher.launch(batch, initial_job_idx=first_job)]
                launcher_failures = 0
            except MetricError:
                raise
            except Exception as e:  # e.g. a SLURM job killed: submitit raises for the whole batch
                launcher_failures += 1
                if launcher_failures > 1:
                    raise SweepError(f"the launcher failed on two batches in a row; last error: {e}") from e
                log.exception(f"the launcher failed on jobs #{first_job}..#{first_job + n - 1}; "
                              "they count as failed trials")
                outcomes = [Outcome("failed", None, f"launcher: {type(e).__name__}: {e}")] * n
            sign = 1.0 if s.direction == "minimize" else -1.0
            state = bo.tell(state, [(c, sign * o.value if o.status == "completed" else math.nan)
                                    for c, o in zip(configs, outcomes)])
            for job, config, overrides, o in zip(range(first_job, first_job + n), configs, batch, outcomes):
                record.trials.append({"job": job, "config": config, "params": search.natural(config),
                                      "overrides": overrides, "status": o.status, "value": _jsonable(o.value),
                                      "error": o.error})
                if o.status != "completed":
                    log.warning(f"job #{job} {o.status} ({o.error}); it counts as the worst value seen")
            record.save(path, s)
            best = record.best(s.direction)
            log.info(f"{len(record.trials)}/{s.n_trials} trials; best {best['value'] if best else None} "
                     f"(job #{best['job'] if best else '-'})")

        best = record.best(s.direction)
        if best is not None:
            log.info(f"Best: {best['value']} at job #{best['job']}: {best['params']}")
        if record.reached(s.target, s.direction):
            log.info(f"Target {s.target} reached")
        return {"best": best, "n_trials": len(record.trials), "record": str(path)}
