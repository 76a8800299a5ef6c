"""nas-train: train one architecture on one dataset; save IR + variables with orbax."""

from __future__ import annotations

import dataclasses
import os
import time

import hydra
from omegaconf import DictConfig
from tqdm import tqdm

from nas.checkpoint import save_model
from nas.cli import run, settings
from nas.search import score_on_test
from nas.tracking import RunLogger
from nas.train import DIVERGED, train


@hydra.main(config_path=run.CONFIG_DIR, config_name="train", version_base="1.3")
@run.exits_on_bad_input("nas-train")
def main(cfg: DictConfig) -> dict:
    run.configure_jax(cfg.runtime)
    start = time.perf_counter()
    directory = run.run_dir()
    config = settings.train_config(cfg)  # settings are checked before any data is read
    data_args = settings.data_arguments(cfg.data)
    data = settings.dataset(data_args)
    arch = settings.arch(cfg.model, data)
    logger = RunLogger(settings.logger_config(cfg.logger), directory, settings.plain(cfg), job="train")
    print(arch.summary(data.input_shape), flush=True)

    bar = tqdm(total=config.epochs, desc="epochs", unit="epoch", disable=not cfg.progress)

    def on_epoch(epoch: int, rows: list[dict]) -> None:
        logger.log_metrics(rows[0], step=epoch)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in rows[0].items() if k.startswith("val_")})

    result = train(arch, data, config, on_epoch=on_epoch)
    bar.close()
    summary = {
        "job": "train", "status": result.status, "dataset": data.name, "arch": arch.name,
        "arch_hash": arch.structural_hash(), "num_params": result.num_params, "depth": arch.depth(),
        "flops": arch.flops(data.input_shape), "epochs": result.epochs, "best_epoch": result.best_epoch,
        **result.best_val_metrics, "t_tr": result.t_tr,
    }
    if result.status != DIVERGED:
        summary.update(score_on_test(arch, result.variables, data, config.eval_batch_size))
        summary["checkpoint"] = save_model(
            os.path.join(directory, "model"), arch, result.variables,
            {"dataset": data.metadata(), "data_args": data_args, "train": dataclasses.asdict(config),
             "metrics": dict(summary)},
        )
    summary.update(wall_seconds=time.perf_counter() - start, run_dir=directory,
                   metrics_log=logger.path, wandb_dir=logger.wandb_dir)
    logger.log_table("results", [{k: v for k, v in summary.items() if isinstance(v, (int, float, str))}])
    logger.finish(summary)
    return run.report(directory, summary)


if __name__ == "__main__":
    main()
