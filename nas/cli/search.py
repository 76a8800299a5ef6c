"""nas-search: search architectures on a dataset; checkpoint and report the best.

Writes to the run directory: ``trials.jsonl`` (one row per trial),
``metrics.jsonl``, ``best/`` (the best model: IR + orbax variables) and
``results.json``. With no arguments it is the embedded default: random search
on scikit-learn's digits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import hydra
from omegaconf import DictConfig
from tqdm import tqdm

from nas.checkpoint import save_model
from nas.cli import run, settings
from nas.search import TrialRecord, best_trial, run_random_search
from nas.tracking import RunLogger
from nas.train import evaluate


def _table(records: list[TrialRecord]) -> str:
    columns = ("trial", "status", "family", "val_score", "num_params", "depth", "t_tr", "epochs")
    rows = [r.row() for r in records]
    cells = [[f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


@hydra.main(config_path=run.CONFIG_DIR, config_name="search", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    run.configure_jax(cfg.runtime)
    start = time.perf_counter()
    directory = run.run_dir()
    if cfg.search.name != "random":
        raise ValueError(f"unknown search strategy {cfg.search.name!r}; available: random")
    data_args = settings.data_arguments(cfg.data)
    data = settings.dataset(data_args)
    config = settings.train_config(cfg)
    budget = settings.budget(cfg.search)
    logger = RunLogger(settings.logger_config(cfg.logger), directory, settings.plain(cfg), job="search")
    trials_path = os.path.join(directory, "trials.jsonl")
    bar = tqdm(total=budget.max_trials, desc="trials", unit="trial", disable=not cfg.progress)

    def on_trial(record: TrialRecord) -> None:
        row = record.row()
        with open(trials_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        logger.log_metrics({f"trial/{k}": v for k, v in row.items() if isinstance(v, (int, float))})
        bar.update(1)
        bar.set_postfix(val=f"{record.score:.4f}", params=row["num_params"])

    records = run_random_search(settings.search_space(cfg.search), data, config, budget,
                                seed=cfg.search.seed, on_trial=on_trial)
    bar.close()
    logger.log_table("trials", [r.row() for r in records])
    print(_table(records), flush=True)
    best = best_trial(records)
    summary = {"job": "search", "strategy": cfg.search.name, "dataset": data.name, "trials": len(records)}
    if best is None:
        summary["status"] = "no finite trial"
    else:
        arch, result = best.candidate.arch, best.result
        test = evaluate(arch, result.variables, data.x_test, data.y_test, data.task, config.eval_batch_size)
        print(arch.summary(data.input_shape), flush=True)
        checkpoint = save_model(
            os.path.join(directory, "best"), arch, result.variables,
            {"dataset": data.metadata(), "data_args": data_args,
             "train": dataclasses.asdict(result.config), "metrics": best.row() | test},
        )
        summary.update({
            "status": "done", "best_trial": best.candidate.trial, "arch_hash": arch.structural_hash(),
            "num_params": result.num_params, "depth": arch.depth(), "t_tr": result.t_tr,
            **result.best_val_metrics, **{f"test_{k}": v for k, v in test.items()},
            "choices": best.candidate.choices, "checkpoint": checkpoint,
        })
    summary.update(wall_seconds=time.perf_counter() - start, run_dir=directory, trials_log=trials_path,
                   metrics_log=logger.path, wandb_dir=logger.wandb_dir)
    logger.finish({k: v for k, v in summary.items() if k != "choices"})
    if best is not None:
        metric = "test_accuracy" if "test_accuracy" in summary else "test_mse"
        print(f"best: trial {summary['best_trial']} ({summary['num_params']:,} params), "
              f"{metric} {summary[metric]:.4f}; checkpoint {summary['checkpoint']}; "
              f"trials {trials_path}; logs {logger.path}", flush=True)
    return run.report(directory, summary)


if __name__ == "__main__":
    main()
