"""What every entry point does around its job: JAX set-up, run directory, final report."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nas.atomic_io import write_json_atomic
from nas.cli import app_help  # noqa: F401  registers the resolvers of conf/hydra/help/*.yaml
from nas.api import schema  # noqa: F401  registers the configs' schemas before Hydra composes them
from nas.api.config import CONFIG_DIR, RunDirError, check_writable_directory, configure_jax  # noqa: F401  the CLI's too

def run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return os.path.abspath(HydraConfig.get().runtime.output_dir)


def report(directory: str, results: dict[str, Any]) -> dict[str, Any]:
    """Writes results.json and prints the same object as one JSON line (last line of output)."""
    path = os.path.join(directory, "results.json")
    results = dict(results, results_path=path)
    write_json_atomic(path, results, default=str)  # a kill while writing leaves the old file or none
    print(json.dumps(results, default=str), flush=True)
    return results


def sweeper_return(cfg: DictConfig, results: dict[str, Any]) -> dict[str, Any] | float:
    """What a task function hands back to Hydra: its results, or the one a sweeper optimises, as a float.

    ``sweep.metric`` unset (the default): the results dict. A single run ignores
    it; the tinygp sweeper picks ``hydra.sweeper.metric`` out of it.
    ``+sweep.metric=KEY`` (a results key: ``val_accuracy``, ``test_accuracy``,
    ``t_tr``, ...): that value as a float, which sweepers that take one number
    need (Hydra's Optuna sweeper rejects a dict). A run that ends without that
    value (it diverged) returns nan, which Optuna records as a failed trial and
    the tinygp sweeper penalises; the sweep goes on. The key takes a ``+``
    because conf/train.yaml leaves it out (nas.api.schema types the keys it has).

    Raises:
      SettingsError: ``sweep.metric`` names no number in the results, or it is
        unset under ``hydra/sweeper=optuna`` (caught as bad input: exit 2).
    """
    from nas.api.settings import SettingsError
    from nas.status import DIVERGED

    metric = OmegaConf.select(cfg, "sweep.metric")
    numeric = sorted(k for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    if metric is None:
        if "optuna" in _sweeper_target():
            raise SettingsError("hydra/sweeper=optuna needs one number per job: pass +sweep.metric=<a results key>, "
                                f"e.g. +sweep.metric=val_accuracy hydra.sweeper.direction=maximize (keys: {numeric})")
        return results
    if metric not in results and results.get("status") == DIVERGED:
        return float("nan")
    if metric not in numeric:
        raise SettingsError(f"sweep.metric={metric}: the results have no number of that name (numbers: {numeric}); "
                            "results.json in the run directory lists them all")
    return float(results[metric])


def _sweeper_target() -> str:
    """The running Hydra sweeper's class path, or '' outside a Hydra run (a test calling the task directly)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    return str(OmegaConf.select(HydraConfig.get(), "sweeper._target_", default="") or "")


class RunDirCheck(Callback):
    """A Hydra callback (``hydra.callbacks``) that checks the run directory before Hydra uses it.

    Hydra creates the run directory and opens its log file there before any of
    our code runs; an unwritable directory then fails inside the logging set-up
    as "Unable to configure handler 'file'", which names neither the directory
    nor the cause. The callback runs first and says both.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_unless_writable(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_unless_writable(config, "hydra.sweep.dir")


def _exit_unless_writable(config: DictConfig, key: str) -> None:
    try:
        check_writable_directory(str(OmegaConf.select(config, key)), key)
    except RunDirError as exc:
        # Hydra turns an Exception from a callback into a warning and carries on into the very
        # failure this check explains; SystemExit is not an Exception, so it stops the run (status 1).
        raise SystemExit(f"Error: {exc}") from exc


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the user's input is wrong (a file, a setting, a run directory), not the code.

    Each already names the file or key at fault and what to do, so a
    traceback would only bury it.
    """
    from nas.checkpoint import CheckpointError
    from nas.cli.evaluate import EvalDataError
    from nas.api.settings import ModelFileError, SettingsError
    from nas.data.errors import DatasetError
    from nas.ir.errors import IRError
    from nas.search.engine import CheckpointWriteError, ResumeMismatchError
    from nas.search.reference import ReferenceComplexityError
    from nas.store.errors import StoreError
    from nas.train.errors import ModelTooLargeError, OutputShapeError, TrainConfigError

    return (CheckpointError, CheckpointWriteError, DatasetError, EvalDataError, FileExistsError, IRError,
            ModelFileError, ModelTooLargeError, OutputShapeError, ReferenceComplexityError, ResumeMismatchError,
            RunDirError, SettingsError, StoreError, TrainConfigError)


def exits_on_bad_input(program: str) -> Callable:
    """Wraps an entry point's task function: bad input prints one line naming the problem and exits 2.

    Hydra would print such an error inside a traceback (exit 1); anything
    else still propagates to Hydra with its traceback, as a bug should, and
    HYDRA_FULL_ERROR=1 shows the traceback of these too. A config Hydra
    cannot compose (a value of the wrong type, an unknown key, a missing
    config file) is reported the same way, before the task runs
    (`_report_config_errors`).
    """
    _report_config_errors()

    from nas.api.config_errors import UNSET_ERRORS, describe

    def wrap(task: Callable) -> Callable:
        @functools.wraps(task)
        def task_with_clear_errors(cfg: DictConfig) -> Any:
            try:
                return task(cfg)
            except _bad_input_errors() as exc:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":  # Hydra's own switch for the whole traceback
                    raise
                print(f"{program}: error: {exc}", file=sys.stderr, flush=True)
                sys.exit(2)
            except UNSET_ERRORS as exc:  # e.g. nas-eval without checkpoint=
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"{program}: error: {describe(exc)}", file=sys.stderr, flush=True)
                sys.exit(2)
            except Exception as exc:
                # Any other error of the task is a bug: it keeps its traceback, even an OmegaConf error
                # (code reading a key wrongly), which the composition report below must not reword.
                setattr(exc, _FROM_TASK, True)
                raise

        setattr(task_with_clear_errors, _PROGRAM_ATTRIBUTE, program)
        return task_with_clear_errors

    return wrap


_PROGRAM_ATTRIBUTE = "nas_program"
_FROM_TASK = "nas_raised_by_task"


def _report_config_errors() -> None:
    """Makes Hydra report our apps' config errors as ``<program>: error: <key> ...`` and exit 2.

    Hydra composes the config before it calls the task function, inside its
    own error report (``Error merging override ...``, status 1), so no
    wrapper of the task can see a composition error. Hydra offers no hook
    for it either; `Hydra.run` and `Hydra.multirun` are wrapped instead
    (once per process), and only for task functions `exits_on_bad_input`
    marked: other Hydra apps in the process, and Hydra's compose API, keep
    Hydra's behaviour. SystemExit passes through Hydra's report, which
    catches only Exception.
    """
    from hydra._internal.hydra import Hydra

    for name in ("run", "multirun"):
        original = getattr(Hydra, name)
        if getattr(original, _PROGRAM_ATTRIBUTE, False):
            continue

        @functools.wraps(original)
        def reporting(self, *args, _original=original, **kwargs):
            from nas.api.config_errors import COMPOSE_ERRORS, describe

            task = kwargs["task_function"] if "task_function" in kwargs else args[1]
            program = getattr(task, _PROGRAM_ATTRIBUTE, None)
            if program is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                return _original(self, *args, **kwargs)
            try:
                return _original(self, *args, **kwargs)
            except COMPOSE_ERRORS as exc:
                if getattr(exc, _FROM_TASK, False):
                    raise
                print(f"{program}: error: {describe(exc)}", file=sys.stderr, flush=True)
                sys.exit(2)

        setattr(reporting, _PROGRAM_ATTRIBUTE, True)
        setattr(Hydra, name, reporting)
