"""What every entry point does around its job: JAX set-up, run directory, final report."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
from typing import Any, Callable

import jax
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nas.atomic_io import write_json_atomic

# Configs live in the repository's top-level conf/ (the design card's layout).
# Hydra would read a relative config_path as a Python package when the entry
# point runs as an installed module, so it gets this absolute directory.
CONFIG_DIR = os.environ.get(
    "NAS_CONFIG_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "conf"))


def configure_jax(runtime: DictConfig) -> None:
    # orbax logs every checkpoint step at INFO through absl; Hydra shows INFO.
    logging.getLogger("absl").setLevel(logging.WARNING)
    if runtime.get("enable_x64"):
        jax.config.update("jax_enable_x64", True)
    if runtime.get("compilation_cache"):
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(runtime.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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


class RunDirError(OSError):
    """The run directory cannot be created or written."""


def check_writable_directory(path: str, key: str) -> str:
    """Creates `path` if needed and proves a file can be written in it.

    Args:
      path: the directory.
      key: the setting it came from, named in the error (``hydra.run.dir``).

    Returns:
      The absolute path.

    Raises:
      RunDirError: naming the directory, why it cannot be written and the fix.
    """
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        blocker = path
        while not os.path.lexists(blocker) and os.path.dirname(blocker) != blocker:
            blocker = os.path.dirname(blocker)
        why = (f"{blocker} is a file, not a directory" if not os.path.isdir(blocker)
               else f"it cannot be created ({exc.strerror or exc})")
        raise RunDirError(f"cannot write the run directory {path} ({key}): {why}; pass {key}=<a directory you "
                          "can write>") from exc
    try:
        fd, probe = tempfile.mkstemp(prefix=".nas-write-check-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise RunDirError(f"cannot write the run directory {path} ({key}): no file can be created in it "
                          f"({exc.strerror or exc}); make it writable or pass {key}=<a directory you can write>"
                          ) from exc
    return path


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
    from nas.cli.settings import ModelFileError, SettingsError
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
    HYDRA_FULL_ERROR=1 shows the traceback of these too.
    """

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

        return task_with_clear_errors

    return wrap
