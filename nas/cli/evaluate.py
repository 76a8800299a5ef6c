"""nas-eval: reload a model directory and evaluate it on a split of its dataset."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nas.checkpoint import load_model
from nas.cli import run, settings
from nas.train import evaluate


@hydra.main(config_path=run.CONFIG_DIR, config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    run.configure_jax(cfg.runtime)
    directory = run.run_dir()
    arch, variables, metadata = load_model(cfg.checkpoint)
    data_args = dict(metadata["data_args"], **settings.plain(cfg.data_overrides))
    data = settings.dataset(data_args)
    split = cfg.split
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    metrics = evaluate(arch, variables, x, y, data.task, cfg.eval_batch_size)
    summary = {
        "job": "eval", "checkpoint": cfg.checkpoint, "dataset": data.name, "split": split,
        "num_examples": int(len(x)), "arch": arch.name, "arch_hash": arch.structural_hash(),
        "num_params": arch.num_params(data.input_shape),
        **{f"{split}_{k}": v for k, v in metrics.items()}, "run_dir": directory,
    }
    return run.report(directory, summary)


if __name__ == "__main__":
    main()
