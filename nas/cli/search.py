"""nas-search: search architectures on a dataset; checkpoint and report the best.

Writes to the run directory: ``store.sqlite`` (the trial store: the source of
truth a resumed run continues from), ``trials/<i>/`` (orbax checkpoints of
the Pareto-front trials), ``best/`` (the best model: IR + orbax variables),
``trials.jsonl`` and ``trials.csv`` (every trial), ``summary.txt`` (the
table), ``search.log`` (one line per trial), ``metrics.jsonl`` and
``results.json``. The work is the library's (`nas.api.search_configured`);
this module parses the config, prints and handles signals. With no arguments it is the
embedded default: random search on scikit-learn's digits.

``nas-search ... hydra.run.dir=DIR resume=true`` continues the search in DIR.
One process at a time holds DIR (`nas.store.RunLock`). SIGINT and SIGTERM stop
it cleanly: the trials in training go back to the queue uncounted, and one
line says how to resume.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import hydra
from omegaconf import DictConfig

from nas.api.search import TABLE_COLUMNS, fingerprint_config as _fingerprint_config, search_configured  # noqa: F401
from nas.api.search import table as _table  # noqa: F401  (kept importable under the names tests use)
from nas.cli import run
from nas.api import settings
from nas.search.engine import Interrupted
from nas.store import RunLock


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
    previous_hook, sys.unraisablehook = sys.unraisablehook, stops.unraisable(sys.unraisablehook)
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
        sys.unraisablehook = previous_hook
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

    def unraisable(self, hook):
        """`sys.unraisablehook` without the traceback of a request it swallowed: `check` acts on it."""
        def quiet(info):
            if not isinstance(info.exc_value, Interrupted):
                hook(info)
        return quiet


def _resume_command(directory: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    overrides = [o for o in HydraConfig.get().overrides.task
                 if not o.split("=", 1)[0].lstrip("+~") in ("resume", "hydra.run.dir")]
    return " ".join(["nas-search", *overrides, f"hydra.run.dir={directory}", "resume=true"])


def _search(cfg: DictConfig, directory: str, check_stop=lambda: None) -> dict:
    """Runs the search (`nas.api.search_configured`) and prints what a person reads: table, best model, report."""
    result = search_configured(cfg, directory, check_stop=check_stop)
    summary = result.summary
    print(result.table, flush=True)
    if result.best is not None:
        print(result.best.summary(), flush=True)
    if summary["gave_up"]:
        max_attempts = settings.max_attempts(cfg.search)
        print(f"warning: {summary['gave_up']} trial(s) were given up because their process died in each of "
              f"their {max_attempts} attempts (search.max_attempts): trials "
              f"{summary['gave_up_trials']}; see their error in trials.jsonl", file=sys.stderr, flush=True)
    if result.best is not None:
        metric = "test_accuracy" if "test_accuracy" in summary else "test_mse"
        print(f"best: trial {summary['best_trial']} ({summary['num_params']:,} params), {metric} "
              f"{summary[metric]:.4f}; checkpoint {summary['checkpoint']}; store {summary['store']}", flush=True)
    return run.report(directory, summary)


if __name__ == "__main__":
    main()
