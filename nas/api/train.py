"""One architecture trained as one call: `train(x, y)` from Python, `train_configured` under nas-train.

Both train the architecture on the data, score it on the test split and
save it as a self-contained model directory (``<run dir>/model``: IR,
weights, preprocessing, provenance).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Sequence

from omegaconf import DictConfig
from tqdm import tqdm

from nas import checkpoint
from nas.api import config as api_config
from nas.api.datasource import DataSpec, from_data_config
from nas.api.model import Model, load
from nas.api.progress import bars_enabled
from nas.api.search import arrays_source, data_overrides, default_run_dir
from nas.atomic_io import write_json_atomic
from nas.api import settings
from nas.ir import Arch
from nas.lde.recorder import recorder as lde_recorder
from nas.search import score_on_test
from nas.tracking import RunLogger
from nas.train import DIVERGED, TrainConfig
from nas.train import train as train_arch


def train_configured(cfg: DictConfig, directory: str, spec: DataSpec, arch: Arch, config: TrainConfig) -> dict:
    """Trains `arch` on `spec`'s data with `config`, checkpoints it to ``directory/model``; returns the summary.

    The summary is what nas-train reports (``results.json``); its
    ``checkpoint`` is the model directory (absent when training diverged).
    """
    start = time.perf_counter()
    data = spec.dataset
    logger = RunLogger(settings.logger_config(cfg.logger), directory, settings.plain(cfg), job="train")
    bar = tqdm(total=config.epochs, desc="epochs", unit="epoch", disable=not bars_enabled(cfg.progress))

    def on_epoch(epoch: int, rows: list[dict]) -> None:
        logger.log_metrics(rows[0], step=epoch)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in rows[0].items() if k.startswith("val_")})

    result = train_arch(arch, data, config, on_epoch=on_epoch)
    bar.close()
    summary = {
        "job": "train", "status": result.status, "dataset": data.name, "arch": arch.name,
        "arch_hash": arch.structural_hash(), "num_params": result.num_params, "depth": arch.depth(),
        "flops": arch.flops(data.input_shape), "epochs": result.epochs, "best_epoch": result.best_epoch,
        **result.best_val_metrics, "t_tr": result.t_tr,
    }
    if result.status != DIVERGED:
        summary.update(score_on_test(arch, result.variables, data, config.eval_batch_size))
        summary["checkpoint"] = checkpoint.save_model(
            os.path.join(directory, "model"), arch, result.variables,
            {**spec.describe(directory), "dataset": data.metadata(), "data_args": spec.data_args,
             "train": dataclasses.asdict(config), "metrics": dict(summary)},
        )
    summary.update(wall_seconds=time.perf_counter() - start, run_dir=directory,
                   metrics_log=logger.path, wandb_dir=logger.wandb_dir)
    logger.log_table("results", [{k: v for k, v in summary.items() if isinstance(v, (int, float, str))}])
    logger.finish(summary)
    lde = lde_recorder(cfg, data)  # the lifelong database of experiments (nas.lde); never raises
    lde.train_run(run_dir=directory, arch=arch, train_config=dataclasses.asdict(config), history=result.history,
                  status=result.status, epochs=result.epochs, t_tr=result.t_tr, num_params=result.num_params)
    lde.close()
    return summary


class TrainingDivergedError(RuntimeError):
    """`train` produced no model: the loss became NaN or infinite."""


def train(
    x: Any = None,
    y: Any = None,
    *,
    arch: str | Arch | None = None,
    data: str | None = None,
    task: str | None = None,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    run_dir: str | None = None,
    seed: int = 0,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> Model:
    """Trains one architecture on (x, y), or on a named dataset, as ``nas-train`` would.

    Args:
      x, y, data, task, x_val, y_val, x_test, y_test: the data, as for `nas.search`.
      arch: None (the config's default, an MLP), ``"mlp"`` or ``"cnn"``
        (the built-in families, sized by ``model.*`` overrides), a built-in
        name (``cnn_small``...), a path to an IR JSON file, or an `Arch`.
      run_dir: the run directory (None: a new ``runs/train/<date>/<time>``);
        the model is saved to ``<run_dir>/model``.
      seed: the training seed (``train.seed``).
      progress: show the epoch bar (only on a terminal).
      overrides: any other setting, as on the nas-train command line.

    Returns:
      The trained `Model`; ``model.metrics`` holds what nas-train reports.

    Raises:
      nas.api.settings.SettingsError, nas.train.TrainConfigError: a bad setting, naming the key.
      TrainingDivergedError: the loss diverged, so there is no model.
    """
    chosen = data_overrides(data) + _model_overrides(arch)
    chosen += [f"train.seed={int(seed)}", f"progress={str(bool(progress)).lower()}"]
    cfg = api_config.compose("train", chosen + list(overrides))
    api_config.check(cfg, search=False)
    config = settings.train_config(cfg)
    api_config.configure_jax(cfg.runtime)
    if x is not None or y is not None:
        if data is not None:
            raise TypeError("give either arrays (x, y) or data=..., not both")
        spec = arrays_source(cfg, x, y, task=task, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test)()
    else:
        spec = from_data_config(cfg.data)
    built = arch if isinstance(arch, Arch) else settings.arch(cfg.model, spec.dataset)
    directory = api_config.check_writable_directory(run_dir or default_run_dir("train"), "run_dir")
    summary = train_configured(cfg, directory, spec, built, config)
    write_json_atomic(os.path.join(directory, "results.json"),
                      dict(summary, results_path=os.path.join(directory, "results.json")), default=str)
    if "checkpoint" not in summary:
        raise TrainingDivergedError(f"training diverged (non-finite loss) after {summary['epochs']} epochs; "
                                    "lower the learning rate (optimizer.learning_rate=...)")
    return load(summary["checkpoint"])


def _model_overrides(arch: str | Arch | None) -> list[str]:
    if arch is None or isinstance(arch, Arch):
        return []
    if not isinstance(arch, str):
        raise TypeError(f"arch must be None, 'mlp', 'cnn', a built-in name, an IR JSON path or an Arch; got "
                        f"{type(arch).__name__}")
    if os.path.isfile(arch) or arch.endswith(".json"):
        return ["model=file", f"model.path={os.path.abspath(os.path.expanduser(arch))}"]
    if arch in ("mlp", "cnn"):
        return [f"model={arch}"]
    return ["model=builtin", f"model.name={arch}"]
