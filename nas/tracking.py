"""Where run metrics go: a JSONL file always, W&B when the logger config says so.

W&B defaults to ``offline`` (files under the run directory, no network);
``online`` syncs, ``disabled`` turns it off. Library code never logs: entry
points hand `log_metrics` to the trainer's per-epoch callback.

W&B is quiet by default: what it prints when a run starts and ends (about 29
lines: banner, sync hints, run history and summary) goes to the run's log
file (Hydra's ``<job>.log``; ``wandb.log`` in the run directory outside
Hydra) instead of the screen; its warnings and errors
still reach the screen. Runs of one Hydra sweep share a W&B group (the sweep
directory), a single run is its own group (its run directory), and the model
a run saved (its summary's ``checkpoint`` directory: a search's ``best/``,
nas-train's ``model/``) is logged as a W&B artifact of type ``model``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import sys
import time
from typing import Any, Iterator, Sequence


@dataclasses.dataclass(frozen=True)
class LoggerConfig:
    """Attributes: kind (``wandb`` or ``console``), W&B mode/project/entity/group/tags.

    group None: the Hydra sweep directory in a ``--multirun``, else the run
    directory, so runs of one sweep are grouped. quiet: W&B's start and end
    output goes to the run's log file, not the screen. log_model: log the
    run's saved model as a W&B artifact at the end.
    """

    kind: str = "wandb"
    mode: str = "offline"
    project: str = "nas"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    quiet: bool = True
    log_model: bool = True


def default_group(run_dir: str) -> str:
    """The W&B group of a run: its Hydra sweep directory in a multirun, else its run directory.

    Named by the last three path components (``search-multirun/2026-12-07/10-00-00``):
    readable, and unique per sweep where Hydra's default directories are used.
    """
    directory = run_dir
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN":
            directory = HydraConfig.get().sweep.dir
    except (ImportError, ValueError):  # no Hydra, or not inside a Hydra app
        pass
    parts = [p for p in os.path.abspath(directory).split(os.sep) if p][-3:]
    return re.sub(r"[^\w.\-/]", "_", "/".join(parts))[-128:]  # W&B's limit on a group name


@contextlib.contextmanager
def _into_log_file(quiet: bool, run_dir: str) -> Iterator[None]:
    """While active, W&B's terminal output goes to the run's log file instead of the screen.

    The log file is the root logger's (Hydra's ``<job>.log``), or, outside a
    Hydra app (the Python API), ``wandb.log`` in the run directory. W&B
    writes its messages to sys.stderr as it prints them, so a redirect
    catches them; warnings and errors are passed on to the screen too.
    """
    if not quiet:
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        lines = captured.getvalue().splitlines()
        for line in lines:
            if re.search(r"\b(WARNING|ERROR)\b", line):
                print(line, file=sys.stderr)
        files = [h for h in logging.getLogger().handlers  # pytest attaches one writing to os.devnull
                 if isinstance(h, logging.FileHandler) and h.baseFilename != os.devnull]
        if files:
            for line in lines:
                record = logging.LogRecord("wandb", logging.INFO, __file__, 0, line, None, None)
                for handler in files:
                    handler.handle(record)
        elif lines:
            with open(os.path.join(run_dir, "wandb.log"), "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")


class RunLogger:
    """Appends metrics to ``metrics.jsonl`` and mirrors them to W&B if enabled."""

    def __init__(self, config: LoggerConfig, run_dir: str, run_config: dict[str, Any], job: str):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        os.makedirs(run_dir, exist_ok=True)
        self._file = open(self.path, "a")
        self._wandb = None
        self._config = config
        self._job = job
        self._run_dir = run_dir
        if config.kind == "wandb" and config.mode != "disabled":
            if config.mode not in ("offline", "online"):
                raise ValueError(f"logger.mode must be offline, online or disabled, got {config.mode!r}")
            import wandb

            with _into_log_file(config.quiet, run_dir):
                self._wandb = wandb.init(
                    mode=config.mode, project=config.project, entity=config.entity,
                    group=config.group or default_group(run_dir), tags=list(config.tags), job_type=job,
                    dir=run_dir, config=run_config, reinit="finish_previous",
                )
        elif config.kind not in ("wandb", "console"):
            raise ValueError(f"logger.kind must be wandb or console, got {config.kind!r}")

    @property
    def wandb_dir(self) -> str | None:
        return None if self._wandb is None else self._wandb.dir

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self._file.write(json.dumps({"time": time.time(), "step": step, **metrics}, default=str) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def log_table(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        self.log_metrics({"table": name, "rows": list(rows)})
        if self._wandb is not None:
            import wandb

            columns = list(rows[0])
            self._wandb.log({name: wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])})

    def log_model(self, directory: str, metadata: dict[str, Any] | None = None) -> str | None:
        """Logs a model directory as a W&B artifact of type ``model``; returns its name (None without W&B).

        Named ``<job>-<directory name>`` (``search-best``, ``train-model``):
        W&B versions artifacts of one name, so each run adds a version.
        """
        if self._wandb is None:
            return None
        import wandb

        name = re.sub(r"[^\w.\-]", "_", f"{self._job}-{os.path.basename(os.path.normpath(directory))}")
        artifact = wandb.Artifact(name, type="model", metadata={
            k: v for k, v in (metadata or {}).items() if isinstance(v, (int, float, str, bool))})
        with _into_log_file(self._config.quiet, self._run_dir):  # "Adding directory to artifact ... Done."
            artifact.add_dir(directory)
            self._wandb.log_artifact(artifact)
        return name

    def finish(self, summary: dict[str, Any]) -> None:
        """Records the summary; with W&B, logs the saved model (summary's ``checkpoint``) and ends the run."""
        self.log_metrics({"summary": summary})
        if self._wandb is not None:
            for k, v in summary.items():
                if isinstance(v, (int, float, str)):
                    self._wandb.summary[k] = v
            checkpoint = summary.get("checkpoint")
            if self._config.log_model and isinstance(checkpoint, str) and os.path.isdir(checkpoint):
                self.log_model(checkpoint, summary)
            with _into_log_file(self._config.quiet, self._run_dir):
                self._wandb.finish()
        self._file.close()
