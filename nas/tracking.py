"""Where run metrics go: a JSONL file always, W&B when the logger config says so.

W&B defaults to ``offline`` (files under the run directory, no network);
``online`` syncs, ``disabled`` turns it off. Library code never logs: entry
points hand `log_metrics` to the trainer's per-epoch callback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Sequence


@dataclasses.dataclass(frozen=True)
class LoggerConfig:
    """Attributes: kind (``wandb`` or ``console``), W&B mode/project/entity/group/tags."""

    kind: str = "wandb"
    mode: str = "offline"
    project: str = "nas"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()


class RunLogger:
    """Appends metrics to ``metrics.jsonl`` and mirrors them to W&B if enabled."""

    def __init__(self, config: LoggerConfig, run_dir: str, run_config: dict[str, Any], job: str):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        os.makedirs(run_dir, exist_ok=True)
        self._file = open(self.path, "a")
        self._wandb = None
        if config.kind == "wandb" and config.mode != "disabled":
            if config.mode not in ("offline", "online"):
                raise ValueError(f"logger.mode must be offline, online or disabled, got {config.mode!r}")
            import wandb

            self._wandb = wandb.init(
                mode=config.mode, project=config.project, entity=config.entity, group=config.group,
                tags=list(config.tags), job_type=job, dir=run_dir, config=run_config, reinit="finish_previous",
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

    def finish(self, summary: dict[str, Any]) -> None:
        self.log_metrics({"summary": summary})
        if self._wandb is not None:
            for k, v in summary.items():
                if isinstance(v, (int, float, str)):
                    self._wandb.summary[k] = v
            self._wandb.finish()
        self._file.close()
