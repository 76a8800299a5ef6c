"""nas-predict: a saved model's predictions on new inputs, written to ``out`` (.npy or .csv).

Reads raw inputs from ``data=npz data.path=FILE`` (an ``.npz``: the array
``key``, else the first of ``x``, ``x_test``, ``x_train``; or a ``.npy``),
predicts with `nas.api.Model.predict` (the model's own preprocessing) and
writes class labels (names when the model has them) or regression values,
or with ``proba=true`` class probabilities.
"""

from __future__ import annotations

import csv
import io
import os

import hydra
import numpy as np
from omegaconf import DictConfig

from nas.api.model import load
from nas.atomic_io import write_text_atomic
from nas.cli import run
from nas.data import DatasetError

INPUT_KEYS = ("x", "x_test", "x_train")


class PredictInputError(DatasetError):
    """The inputs to predict on cannot be read (names the file and the array)."""


@hydra.main(config_path=run.CONFIG_DIR, config_name="predict", version_base="1.3")
@run.exits_on_bad_input("nas-predict")
def main(cfg: DictConfig) -> dict:
    run.configure_jax(cfg.runtime)
    directory = run.run_dir()
    out = os.path.abspath(str(cfg.out))
    if not out.endswith((".npy", ".csv")):
        raise PredictInputError(f"out={cfg.out}: write predictions to a .npy or .csv file")
    model = load(cfg.checkpoint)
    x = read_inputs(cfg)
    try:
        values = model.predict_proba(x, cfg.batch_size) if cfg.proba else model.predict(x, cfg.batch_size)
    except ValueError as exc:  # inputs that do not fit the model: the message names both shapes
        raise PredictInputError(f"data.path={cfg.data.path}: {exc}") from exc
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if out.endswith(".npy"):
        buffer = io.BytesIO()
        np.save(buffer, values)
        tmp = f"{out}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, out)  # a kill while writing leaves the old file or none
    else:
        write_text_atomic(out, _csv(values, model, bool(cfg.proba)))
    return run.report(directory, {"job": "predict", "checkpoint": model.path, "input": os.path.abspath(cfg.data.path),
                                  "num_examples": int(len(x)), "task": model.task, "proba": bool(cfg.proba),
                                  "out": out, "run_dir": directory})


def read_inputs(cfg: DictConfig) -> np.ndarray:
    """The raw inputs ``data.path`` holds (see the module docstring)."""
    if cfg.get("data") is None or cfg.data.get("path") is None:
        raise PredictInputError("nas-predict needs inputs: data=npz data.path=<.npz or .npy file>")
    path = os.path.abspath(os.path.expanduser(str(cfg.data.path)))
    if not os.path.isfile(path):
        raise PredictInputError(f"data.path={path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001  (damaged files fail in many layers; all mean "cannot read")
        raise PredictInputError(f"data.path={path}: cannot read it as .npz or .npy ({type(exc).__name__}: {exc})"
                                ) from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = [cfg.key] if cfg.key else [k for k in INPUT_KEYS if k in loaded.files]
        if not keys or keys[0] not in loaded.files:
            raise PredictInputError(f"data.path={path}: holds {sorted(loaded.files)}, none of "
                                    f"{[cfg.key] if cfg.key else list(INPUT_KEYS)}; pass key=<array name>")
        return loaded[keys[0]]


def _csv(values: np.ndarray, model, proba: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if proba:
        names = model.class_names or [str(i) for i in range(values.shape[1])]
        writer.writerow(["index", *[f"p_{n}" for n in names]])
        writer.writerows([i, *(f"{p:.6g}" for p in row)] for i, row in enumerate(values))
    else:
        writer.writerow(["index", "prediction"])
        writer.writerows([i, v] for i, v in enumerate(values.tolist()))
    return buffer.getvalue()


if __name__ == "__main__":
    main()
