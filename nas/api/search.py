"""A search as one call: `search(x, y)` from Python, `search_configured` under nas-search.

Both run the same steps on a composed config (`nas.api.config`): check every
setting, read the data, pose the space, measure c_0, open (or resume) the
run in the trial store, run the engine with a progress bar and
``search.log``, export ``best/``, ``trials.jsonl``, ``trials.csv`` and
``summary.txt``, score the best model on the test split and summarise. The
CLI only prints; Python gets a `SearchResult`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import time
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from nas.api import config as api_config
from nas.api.datasource import DataSpec, from_data_config
from nas.api.model import Model, load
from nas.api.progress import SearchProgress, bars_enabled, logging_trials_to
from nas.atomic_io import write_json_atomic, write_text_atomic
from nas.api import settings
from nas.data import from_arrays
from nas.lde.recorder import recorder as lde_recorder
from nas.search import best_model, reference_complexity, run_search, search_summary
from nas.search import engine  # export_artefacts by module attribute: the fault injector patches it there
from nas.store import STORE_FILENAME, RunLock, SqliteTrialStore, to_csv, to_jsonl
from nas.tracking import RunLogger

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("trial", "status", "val_score", "objective", "num_params", "depth", "t_tr", "epochs", "pareto")


@dataclasses.dataclass(frozen=True, eq=False)
class SearchResult:
    """What a search leaves: its best model, every trial as a flat row, its Pareto set and run directory.

    Attributes:
      best: the best trial's model (read back from ``best/``), or None when no trial finished.
      trial_rows: one flat dict per trial (status, val_score, error,
        objective, num_params, depth, t_tr, epochs, pareto, parent, start and
        one key per hyperparameter; list-valued ones as ``name[i]``).
      pareto_checkpoints: trial -> model directory of the Pareto-front trials.
      run_dir: the run directory (``store.sqlite``, ``best/``, ``trials/``...).
      summary: the dict nas-search reports (``results.json``).
      table: the trials table nas-search prints (``summary.txt``).
    """

    best: Model | None
    trial_rows: tuple[dict[str, Any], ...]
    pareto_checkpoints: dict[int, str]
    run_dir: str
    summary: dict[str, Any] = dataclasses.field(repr=False)
    table: str = dataclasses.field(repr=False, default="")

    @property
    def trials(self):
        """`trial_rows` as a pandas DataFrame (needs the ``pandas`` extra)."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError("SearchResult.trials needs pandas: pip install nas[pandas] (or use "
                              "SearchResult.trial_rows, the same rows as dicts)") from exc
        return pandas.DataFrame(list(self.trial_rows))

    @property
    def pareto(self) -> list[Model]:
        """The Pareto-front trials' models ((error, complexity) front), by trial."""
        return [load(path) for _, path in sorted(self.pareto_checkpoints.items())]


def fingerprint_config(cfg: DictConfig, strategy) -> dict:
    """What identifies a run: budgets may grow on resume, so they are left out.

    Configs named the space class beside the strategy (``space_class``) until
    strategies named their own; the fingerprint keeps that key, spelled as
    they did, so runs stored before still resume and an unchanged config
    keeps its fingerprint.
    """
    search_node = {k: v for k, v in settings.plain(cfg.search).items()
                   if k not in ("max_trials", "max_time", "target", "max_attempts")}
    search_node["space_class"] = f"{strategy.space.__module__}.{strategy.space.__qualname__}"
    out = {"search": search_node, "train": settings.plain(cfg.train), "optimizer": settings.plain(cfg.optimizer),
           "schedule": settings.plain(cfg.schedule)}
    if search_node.get("repair"):  # the repair's table and thresholds are part of what the run is
        out["dream"] = settings.plain(cfg.dream)
    if settings.needs_tap(cfg):  # so is the predictor's neighbourhood and keep fraction
        out["tapas"] = {k: v for k, v in settings.plain(cfg.tapas).items() if k != "cache"}
    return out


def _predictor(cfg: DictConfig, data, directory: str) -> str | None:
    """The run's frozen TAP directory when the run screens or ranks by it (None otherwise, or when none exists).

    Raises:
      ValueError: search=tapas and the LDE holds no networks of similar datasets.
    """
    if not settings.needs_tap(cfg):
        return None
    from nas.tapas.service import prepare

    prepared = prepare(os.path.expanduser(str(cfg.lde.path)), data, directory, settings.tapas(cfg.tapas))
    if prepared.directory is None:
        if cfg.search.strategy == "nas.search.tapas.TAPAS":
            raise ValueError(f"search=tapas has no predictor to rank with: {prepared.note}")
        log.warning("search.prefilter=tap steps aside, every proposal trains: %s", prepared.note)
    else:
        log.info("TAP (DCN %.3f, %d networks of %s): %s", prepared.dcn, prepared.examples,
                 ", ".join(n for n, _, _ in prepared.neighbours), prepared.note)
    return prepared.directory


def _write_screened(path: str, state) -> None:
    """``screened.csv``: the proposals a prefilter kept from training, with their predicted accuracy."""
    from nas.search.prefilter import screened_rows

    rows = screened_rows(state)
    if not rows:
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def table(rows: list[dict]) -> str:
    """The trials table nas-search prints and writes to summary.txt."""
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [[cell(row.get(c, "")) for c in TABLE_COLUMNS] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) if cells else len(c) for i, c in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(TABLE_COLUMNS, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def search_configured(cfg: DictConfig, directory: str, data_source: Callable[[], DataSpec] | None = None, *,
                      check_stop: Callable[[], None] = lambda: None) -> SearchResult:
    """Runs (or resumes, with ``resume=true``) the search `cfg` describes in `directory`.

    The caller holds the directory (`nas.store.RunLock`).

    Args:
      cfg: a composed ``search`` config.
      directory: the run directory.
      data_source: makes the data, called once every setting is checked
        (None: the ``data`` config group's dataset).
      check_stop: raises `nas.search.engine.Interrupted` when the user asked to stop.

    Raises:
      FileExistsError: `directory` holds a search and ``resume`` is false.
      Whatever the settings, the data or the engine refuse (`nas.cli.run` lists the bad-input errors).
    """
    start = time.perf_counter()
    store_path = os.path.join(directory, STORE_FILENAME)
    if os.path.exists(store_path) and not cfg.resume:
        raise FileExistsError(f"{directory} already holds a search ({STORE_FILENAME}); pass resume=true to "
                              "continue it, or choose another hydra.run.dir")
    if os.path.exists(store_path):  # a damaged store is refused before any work is done
        SqliteTrialStore(store_path).close()
    strategy = settings.strategy(cfg.search)
    max_attempts = settings.max_attempts(cfg.search)
    config = settings.train_config(cfg)  # settings are checked before any data is read
    strategy = settings.repair(cfg, strategy, config)
    if settings.needs_tap(cfg):  # search.prefilter and the tapas group are checked before any data is read
        settings.tapas(cfg.tapas)
    spec = data_source() if data_source is not None else from_data_config(cfg.data)
    data = spec.dataset
    predictor = _predictor(cfg, data, directory)
    strategy = settings.prefilter(cfg, strategy, predictor)
    space = settings.search_space(cfg.search, data, predictor)
    budget = settings.budget(cfg.search)
    c_0 = reference_complexity(space, data, config, w_c=cfg.search.objective.w_c,
                               complexity=cfg.search.objective.complexity, c_0=cfg.search.objective.c_0,
                               cache_dir=directory)
    objective = settings.objective(cfg.search.objective, c_0)
    logger = RunLogger(settings.logger_config(cfg.logger), directory, settings.plain(cfg), job="search")
    store = SqliteTrialStore.in_run_dir(directory)
    lde = lde_recorder(cfg, data)  # every trial trained here goes to the lifelong database too (nas.lde)
    try:
        search_run = store.open_run(fingerprint_config(cfg, strategy),
                                    data.metadata() | {"data_args": spec.data_args}, strategy.name,
                                    int(cfg.search.seed), resume=True)
        done_before = store.counts(search_run).finished
        progress = SearchProgress(total=budget.max_trials, name=strategy.name, max_time=budget.max_time,
                                  enabled=bars_enabled(cfg.progress))

        def on_trial(candidate, result, evaluation) -> None:
            check_stop()  # a stop request whose exception was swallowed stops here
            progress.on_trial(result, None if evaluation is None else evaluation.seconds)
            if evaluation is None:  # replayed from the store: logged when it ran
                return
            logger.log_metrics({f"trial/{k}": v for k, v in {
                "trial": result.trial, "val_score": result.score, "objective": result.objective,
                "num_params": result.num_params, "t_tr": result.t_tr, "epochs": result.epochs,
                "seconds": evaluation.seconds}.items() if isinstance(v, (int, float)) and math.isfinite(v)})
            lde.search_trial(run_dir=directory, run_id=search_run.id, trial=result.trial, arch=candidate.arch,
                             base=search_run.config, hyperparameters=candidate.hyperparameters(),
                             history=result.history, status=result.status, epochs=result.epochs, t_tr=result.t_tr,
                             num_params=result.num_params)  # never raises: a failed write is a warning

        with logging_trials_to(directory):
            outcome = run_search(strategy, space, int(cfg.search.seed), data, config, budget, store, search_run,
                                 objective=objective, run_dir=directory, on_trial=on_trial, on_epoch=progress.on_epoch,
                                 max_attempts=max_attempts, checkpoint_metadata=spec.describe(directory))
        check_stop()  # the search ended before a swallowed request was seen: stop before exporting
        progress.close()
        artefacts = engine.export_artefacts(outcome, store, directory)
        to_jsonl(store, os.path.join(directory, "trials.jsonl"), search_run)
        to_csv(store, os.path.join(directory, "trials.csv"), search_run)
        _write_screened(os.path.join(directory, "screened.csv"), outcome.state)
        counts = store.counts(search_run).as_dict()
    finally:
        store.close()
        lde.close()
    rows = engine.candidates_summary(outcome, objective)
    text = table(rows)
    write_text_atomic(os.path.join(directory, "summary.txt"), text + "\n")
    logger.log_table("trials", rows)
    best = best_model(outcome, data, config, artefacts)
    summary = search_summary(outcome, objective, data, best, artefacts, strategy=cfg.search.name, counts=counts,
                             finished_before=done_before)
    summary.update(wall_seconds=time.perf_counter() - start, run_dir=directory, store=store_path,
                   trials_log=os.path.join(directory, "trials.jsonl"), metrics_log=logger.path,
                   wandb_dir=logger.wandb_dir)
    logger.finish({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
    flat = tuple(_flat_row(row, outcome.candidate(row["trial"]).choices) for row in rows)
    return SearchResult(load(best.checkpoint) if best is not None else None, flat, dict(artefacts["pareto"]),
                        directory, summary, text)


def _flat_row(row: dict[str, Any], choices: dict[str, Any]) -> dict[str, Any]:
    """A table row with every hyperparameter as its own column (list values as ``name[i]``)."""
    flat = dict(row)
    for key, value in choices.items():
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                flat[f"{key}[{i}]"] = v
        elif key not in flat and value is not None and not isinstance(value, dict):
            flat[key] = str(value)
    return flat


def default_run_dir(job: str) -> str:
    """``runs/<job>/<date>/<time>`` under the working directory, as the CLI names its runs (never an existing one)."""
    base = os.path.join("runs", job, time.strftime("%Y-%m-%d"), time.strftime("%H-%M-%S"))
    path, n = base, 1
    while os.path.exists(path):
        path, n = f"{base}-{n}", n + 1
    return os.path.abspath(path)


def data_overrides(data: str | None) -> list[str]:
    """A named source -> the overrides that select it: a config group (``digits``) or an ``.npz`` path."""
    if data is None:
        return []
    if not isinstance(data, str):
        raise TypeError(f"data must be a data config name (digits, fashion_mnist...) or an .npz path, got "
                        f"{type(data).__name__}; pass arrays as x and y")
    if data.endswith(".npz") or os.path.isfile(data):
        return ["data=npz", f"data.path={os.path.abspath(os.path.expanduser(data))}"]
    return [f"data={data}"]


def arrays_source(cfg: DictConfig, x, y, **arrays) -> Callable[[], DataSpec]:
    """Makes a `DataSpec` of in-memory arrays with the config's split fractions and data seed."""

    def make() -> DataSpec:
        made = from_arrays(x, y, val_fraction=float(cfg.data.val_fraction),
                           test_fraction=float(cfg.data.test_fraction), seed=int(cfg.data.seed), **arrays)
        return DataSpec(made.dataset, None, made.class_names)

    return make


def search(
    x: Any = None,
    y: Any = None,
    *,
    data: str | None = None,
    task: str | None = None,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    strategy: str = "random",
    max_trials: int | None = None,
    max_time: float | None = None,
    target: float | None = None,
    run_dir: str | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> SearchResult:
    """Searches architectures for (x, y), or for a named dataset, as ``nas-search`` would.

    Examples::

        result = nas.search(x, y, max_trials=5, overrides=["train.epochs=3"])
        result.best.predict(x_new)
        result = nas.search(data="digits", strategy="dnc")

    Args:
      x, y: training inputs and targets (see `nas.data.from_arrays` for
        shapes, dtypes and how the task is inferred). Validation and test
        splits not given are carved from them with the configured
        ``data.val_fraction`` / ``data.test_fraction`` and ``data.seed``.
      data: instead of arrays, a data config (``digits``, ``fashion_mnist``)
        or an ``.npz`` path; neither: the CLI's default (digits).
      task: ``classification`` or ``regression`` (None: inferred).
      x_val, y_val, x_test, y_test: your own splits.
      strategy: a ``search`` config (random, dnc, ncevolve, hyperband, manas...).
      max_trials, max_time, target: budgets (None: the strategy config's).
      run_dir: the run directory (None: a new ``runs/search/<date>/<time>``).
      resume: continue the search stored in `run_dir`.
      seed: the search's and training's seed (``search.seed``, ``train.seed``).
      progress: show the progress bar (only on a terminal).
      overrides: any other setting, as on the nas-search command line
        (``["train.epochs=5", "search.space.families=[mlp]"]``).

    Returns:
      A `SearchResult`; the run directory also holds what nas-search writes.

    Raises:
      nas.api.settings.SettingsError, nas.train.TrainConfigError: a bad
        setting, naming the key, before any data is read or trained.
      nas.data.DatasetError: bad arrays, naming which.
      FileExistsError: `run_dir` holds a search and `resume` is false.
    """
    chosen = [f"search={strategy}"] + data_overrides(data) + [
        f"search.{key}={value}" for key, value in (("max_trials", max_trials), ("max_time", max_time),
                                                    ("target", target)) if value is not None]
    chosen += [f"search.seed={int(seed)}", f"train.seed={int(seed)}", f"resume={str(bool(resume)).lower()}",
               f"progress={str(bool(progress)).lower()}"]
    user = list(overrides)
    cfg = api_config.compose("search", chosen + user)
    api_config.check(cfg, search=True)
    api_config.configure_jax(cfg.runtime)
    if x is not None or y is not None:
        if data is not None:
            raise TypeError("give either arrays (x, y) or data=..., not both")
        source = arrays_source(cfg, x, y, task=task, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test)
    else:
        source = lambda: from_data_config(cfg.data)  # noqa: E731
    spec = source()
    _fit_space_to_inputs(cfg, spec, user)
    directory = api_config.check_writable_directory(run_dir or default_run_dir("search"), "run_dir")
    with RunLock(directory):
        result = search_configured(cfg, directory, lambda: spec)
    write_json_atomic(os.path.join(directory, "results.json"),
                      dict(result.summary, results_path=os.path.join(directory, "results.json")), default=str)
    return result


def _fit_space_to_inputs(cfg: DictConfig, spec: DataSpec, user: Sequence[str]) -> None:
    """Inputs that are not images cannot feed a CNN: a space of MLPs and CNNs searches only MLPs on them.

    Only when the user did not choose the families (``search.space.families=...``).
    """
    families = OmegaConf.select(cfg, "search.space.families")
    chose = any(o.split("=", 1)[0].lstrip("+~") == "search.space.families" for o in user)
    if families is None or chose or len(spec.dataset.input_shape) == 3:
        return
    kept = [f for f in families if f != "cnn"]
    if kept and len(kept) < len(families):
        OmegaConf.update(cfg, "search.space.families", kept)
