"""nas-eval: reload a model directory and evaluate it on a split of its dataset, or on new data.

Works on every model directory a run writes: nas-train's ``model/``,
nas-search's ``best/`` and ``trials/<i>/``. The dataset is rebuilt from the
checkpoint's model.json: its ``data_args`` (the `load_dataset` arguments
nas-train and nas-search record). Checkpoints written before they were
recorded carry only the dataset's description; the arguments are then
rebuilt from that and the source's data config, and accepted only when the
rebuilt splits have exactly the recorded sizes (`nas.api.datasource`).

``data=<config>`` names other data (``data=npz data.path=new.npz``). A model
that records its preprocessing (every model written since it does) then sees
the new data standardised with its own training statistics, as `Model.predict`
does, not with the new data's; ``split=all`` evaluates every example.
"""

from __future__ import annotations

import os
import sys

import hydra
import numpy as np
from omegaconf import DictConfig

from nas.api.datasource import (  # noqa: F401  (EvalDataError and the checks stay importable from here)
    EvalDataError, check_fits, check_rebuilt, data_arguments, renormalised)
from nas.checkpoint import load_model
from nas.cli import run
from nas.api import settings
from nas.train import evaluate

SPLITS = ("train", "val", "test", "all")


@hydra.main(config_path=run.CONFIG_DIR, config_name="eval", version_base="1.3")
@run.exits_on_bad_input("nas-eval")
def main(cfg: DictConfig) -> dict:
    run.configure_jax(cfg.runtime)
    directory = run.run_dir()
    checkpoint = os.path.abspath(cfg.checkpoint)
    split = cfg.split
    if split not in SPLITS:
        raise EvalDataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    arch, variables, metadata = load_model(checkpoint)
    chosen = settings.data_arguments(cfg.data) if cfg.get("data") is not None else None
    data_args, rebuilt = data_arguments(checkpoint, metadata, chosen, settings.plain(cfg.data_overrides))
    data = settings.dataset(data_args)
    if rebuilt:
        check_rebuilt(checkpoint, metadata["dataset"], data, data_args)
    preprocessing = metadata.get("preprocessing")
    model_statistics = chosen is not None and isinstance(preprocessing, dict)
    if model_statistics:
        data = renormalised(data, preprocessing["mean"], preprocessing["std"])
    check_fits(checkpoint, arch, variables, data)
    names = metadata.get("class_names")
    if chosen is not None and names and list(names) != [str(i) for i in range(len(names))]:
        # The model learned named classes (string labels, sorted); other data's integer labels
        # are read as indices into that list, which is right only if they were made the same way.
        print(f"nas-eval: warning: the model's classes are named {list(names)}; the labels of "
              f"{data.name} are taken as indices into that list", file=sys.stderr, flush=True)
    if split == "all":
        x = np.concatenate([data.x_train, data.x_val, data.x_test])
        y = np.concatenate([data.y_train, data.y_val, data.y_test])
    else:
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    metrics = evaluate(arch, variables, x, y, data.task, cfg.eval_batch_size)
    summary = {
        "job": "eval", "checkpoint": checkpoint, "dataset": data.name, "split": split,
        "data_args": data_args, "data_args_rebuilt": rebuilt, "model_statistics": model_statistics,
        "num_examples": int(len(x)), "arch": arch.name, "arch_hash": arch.structural_hash(),
        "num_params": arch.num_params(data.input_shape),
        **{f"{split}_{k}": v for k, v in metrics.items()}, "run_dir": directory,
    }
    return run.report(directory, summary)


if __name__ == "__main__":
    main()
