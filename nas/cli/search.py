"""nas-search: search architectures on a dataset; checkpoint and report the best.

Writes to the run directory: ``store.sqlite`` (the trial store: the source of
truth a resumed run continues from), ``trials/<i>/`` (orbax checkpoints of
the Pareto-front trials), ``best/`` (the best model: IR + orbax variables),
``trials.jsonl`` and ``trials.csv`` (every trial), ``summary.txt`` (the
table), ``metrics.jsonl`` and ``results.json``. With no arguments it is the
embedded default: random search on scikit-learn's digits.

``nas-search ... hydra.run.dir=DIR resume=true`` continues the search in DIR.
One process at a time holds DIR (`nas.store.RunLock`). SIGINT and SIGTERM stop
it cleanly: the trials in training go back to the queue uncounted, and one
line says how to resume.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time

import hydra
from omegaconf import DictConfig
from tqdm import tqdm

from nas.cli import run, settings
from nas.atomic_io import write_text_atomic
from nas.search import best_model, export_artefacts, reference_complexity, run_search, search_summary
from nas.search.engine import Interrupted, candidates_summary
from nas.store import STORE_FILENAME, RunLock, SqliteTrialStore, to_csv, to_jsonl
from nas.tracking import RunLogger

TABLE_COLUMNS = ("trial", "status", "val_score", "objective", "num_params", "depth", "t_tr", "epochs", "pareto")


def _table(rows: list[dict]) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [[cell(row.get(c, "")) for c in TABLE_COLUMNS] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) if cells else len(c) for i, c in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(TABLE_COLUMNS, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def _fingerprint_config(cfg: DictConfig, strategy) -> dict:
    """What identifies a run: budgets may grow on resume, so they are left out.

    Configs named the space class beside the strategy (``space_class``) until
    strategies named their own; the fingerprint keeps that key, spelled as
    they did, so runs stored before still resume and an unchanged config
    keeps its fingerprint.
    """
    search = {k: v for k, v in settings.plain(cfg.search).items()
              if k not in ("max_trials", "max_time", "target", "max_attempts")}
    search["space_class"] = f"{strategy.space.__module__}.{strategy.space.__qualname__}"
    return {"search": search, "train": settings.plain(cfg.train), "optimizer": settings.plain(cfg.optimizer),
            "schedule": settings.plain(cfg.schedule)}


@hydra.main(config_path=run.CONFIG_DIR, config_name="search", version_base="1.3")
@run.exits_on_bad_input("nas-search")
def main(cfg: DictConfig) -> dict:
    run.configure_jax(cfg.runtime)
    directory = run.run_dir()
    stops = _StopRequests()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:  # nohup / a background job ignores SIGINT on purpose
            signal.signal(s, stops)
    try:
        with RunLock(directory):
            return _search(cfg, directory, stops.check)
    except KeyboardInterrupt as exc:
        name = getattr(exc, "signal_name", None) or stops.signal_name or "SIGINT"
        print(f"nas-search: interrupted ({name}); finished trials are kept and the ones in training are queued "
              f"again. Resume with: {_resume_command(directory)}", file=sys.stderr, flush=True)
        # os._exit, not sys.exit: interpreter shutdown while XLA's compile threads still run can
        # segfault (seen about 1 in 3 stops right after a compile). The store is closed and the
        # metrics flushed by now; the kernel releases the run lock.
        sys.stdout.flush()
        logging.shutdown()
        os._exit(143 if name == "SIGTERM" else 130)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _StopRequests:
    """SIGINT/SIGTERM as `Interrupted`, remembered.

    The exception a signal handler raises is lost when it lands inside a
    callback Python calls for its own reasons (JAX's garbage-collection hook
    prints "Exception ignored" and carries on), so the request is also kept
    and `check` raises it at the next trial boundary.
    """

    def __init__(self):
        self.signal_name: str | None = None

    def __call__(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        raise Interrupted(self.signal_name)

    def check(self) -> None:
        if self.signal_name is not None:
            raise Interrupted(self.signal_name)


def _resume_command(directory: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    overrides = [o for o in HydraConfig.get().overrides.task
                 if not o.split("=", 1)[0].lstrip("+~") in ("resume", "hydra.run.dir")]
    return " ".join(["nas-search", *overrides, f"hydra.run.dir={directory}", "resume=true"])


def _search(cfg: DictConfig, directory: str, check_stop=lambda: None) -> dict:
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
    data_args = settings.data_arguments(cfg.data)
    data = settings.dataset(data_args)
    space = settings.search_space(cfg.search, data)
    budget = settings.budget(cfg.search)
    c_0 = reference_complexity(space, data, config, w_c=cfg.search.objective.w_c,
                               complexity=cfg.search.objective.complexity, c_0=cfg.search.objective.c_0,
                               cache_dir=directory)
    objective = settings.objective(cfg.search.objective, c_0)
    logger = RunLogger(settings.logger_config(cfg.logger), directory, settings.plain(cfg), job="search")
    store = SqliteTrialStore.in_run_dir(directory)
    try:
        search_run = store.open_run(_fingerprint_config(cfg, strategy), data.metadata() | {"data_args": data_args},
                                    strategy.name, int(cfg.search.seed), resume=True)
        done_before = store.counts(search_run).finished
        bar = tqdm(total=budget.max_trials, initial=0, desc=f"{strategy.name} trials", unit="trial",
                   disable=not cfg.progress)

        def on_trial(candidate, result, evaluation) -> None:
            check_stop()  # a stop request whose exception was swallowed stops here
            bar.update(1)
            if evaluation is None:  # replayed from the store: logged when it ran
                return
            logger.log_metrics({f"trial/{k}": v for k, v in {
                "trial": result.trial, "val_score": result.score, "objective": result.objective,
                "num_params": result.num_params, "t_tr": result.t_tr, "epochs": result.epochs,
                "seconds": evaluation.seconds}.items() if isinstance(v, (int, float)) and math.isfinite(v)})
            bar.set_postfix(val=f"{result.score:.4f}", params=result.num_params)

        outcome = run_search(strategy, space, int(cfg.search.seed), data, config, budget, store, search_run,
                             objective=objective, run_dir=directory, on_trial=on_trial,
                             max_attempts=max_attempts,
                             checkpoint_metadata={"data_args": data_args})
        check_stop()  # the search ended before a swallowed request was seen: stop before exporting
        bar.close()
        artefacts = export_artefacts(outcome, store, directory)
        to_jsonl(store, os.path.join(directory, "trials.jsonl"), search_run)
        to_csv(store, os.path.join(directory, "trials.csv"), search_run)
        counts = store.counts(search_run).as_dict()
    finally:
        store.close()
    rows = candidates_summary(outcome, objective)
    table = _table(rows)
    write_text_atomic(os.path.join(directory, "summary.txt"), table + "\n")
    logger.log_table("trials", rows)
    print(table, flush=True)
    best = best_model(outcome, data, config, artefacts)
    if best is not None:
        print(best.arch.summary(data.input_shape), flush=True)
    summary = search_summary(outcome, objective, data, best, artefacts, strategy=cfg.search.name, counts=counts,
                             finished_before=done_before)
    summary.update(wall_seconds=time.perf_counter() - start, run_dir=directory, store=store_path,
                   trials_log=os.path.join(directory, "trials.jsonl"), metrics_log=logger.path,
                   wandb_dir=logger.wandb_dir)
    logger.finish({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
    if outcome.gave_up:
        print(f"warning: {len(outcome.gave_up)} trial(s) were given up because their process died in each of "
              f"their {max_attempts} attempts (search.max_attempts): trials "
              f"{list(outcome.gave_up)}; see their error in trials.jsonl", file=sys.stderr, flush=True)
    if outcome.best is not None:
        metric = "test_accuracy" if "test_accuracy" in summary else "test_mse"
        print(f"best: trial {summary['best_trial']} ({summary['num_params']:,} params), {metric} "
              f"{summary[metric]:.4f}; checkpoint {summary['checkpoint']}; store {store_path}", flush=True)
    return run.report(directory, summary)


if __name__ == "__main__":
    main()
