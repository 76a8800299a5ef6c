"""Runs and trials -> LDE records: a run directory's store (`nas-lde import`) or a trial just trained.

Both paths build an experiment the same way (`experiment`), from the same
inputs the run store keeps: the architecture JSON, the run's base training
settings (its ``train``/``optimizer``/``schedule`` config) with the trial's
own hyperparameters on top, the per-epoch history, status, epochs, t_tr and
parameters. A search trial's key is ``<abs run dir>#run<id>#trial<index>``
whichever path wrote it, so a trial appended live is not added again by a
later import, and importing a run twice adds nothing.

The dataset of an old run: the LDE identifies a dataset by a hash of its
content (`nas.lde.fingerprint`), and a run store keeps no data, only its
description and the `load_dataset` arguments that made it (``data_args``).
`experiments_of_run` reloads the data from those arguments when asked
(`reload_data`, as `nas-lde import` does) and the rebuilt splits have exactly
the recorded sizes; otherwise (arrays passed from Python, a source no longer
on disk, or not asked) the fingerprint is ``meta:`` + a hash of the recorded
description and arguments: the same for every run over the same recorded
data, but not equal to the content fingerprint of that data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from typing import Any, Mapping, Sequence

from nas.ir import Arch
from nas.lde.database import DatasetRecord, ExperimentRecord, LDEError
from nas.lde.fingerprint import dataset_record
from nas.status import FINAL_STATUSES
from nas.store import STORE_FILENAME, SqliteTrialStore, StoreError
from nas.store.encoding import to_json

log = logging.getLogger(__name__)

META_PREFIX = "meta:"


class IngestError(LDEError):
    """A run directory cannot be read (no store, a damaged one); the message names it."""


def search_key(run_dir: str, run_id: int, trial: int) -> str:
    """The LDE key of a search trial: the same whether it was appended live or imported."""
    return f"{os.path.abspath(run_dir)}#run{run_id}#trial{trial}"


def train_key(run_dir: str) -> str:
    """The LDE key of a nas-train run (one network per run directory)."""
    return f"{os.path.abspath(run_dir)}#train"


def effective_settings(base: Mapping[str, Any] | None, hyperparameters: Mapping[str, Any] | None,
                       trial: int | None = None) -> dict:
    """The settings a trial trained with: the run's base settings with the trial's own on top.

    Mirrors `nas.search.evaluator.config_for` (the trial's optimizer/schedule
    replace the base's; its learning rate, weight decay, batch size and epoch
    budget override; the seed is the base seed plus the trial index) on the
    JSON the run store keeps, so an imported trial and a live one agree.

    Args:
      base: ``{"train": ..., "optimizer": ..., "schedule": ...}`` as a run's
        config records them (keys a config left out are absent).
      hyperparameters: `Candidate.hyperparameters()` as the store keeps them.
      trial: the trial index (None: a nas-train run, whose seed is the base's).
    """
    base = dict(base or {})
    hp = dict(hyperparameters or {})
    train = dict(base.get("train") or {})
    optimizer = dict(hp.get("optimizer") or base.get("optimizer") or {})
    schedule = dict(hp.get("schedule") or base.get("schedule") or {})
    if hp.get("learning_rate") is not None:
        optimizer["learning_rate"] = float(hp["learning_rate"])
    if hp.get("weight_decay") is not None:
        optimizer["weight_decay"] = float(hp["weight_decay"])
    seed = train.get("seed")
    out = {
        "optimizer": optimizer,
        "schedule": schedule,
        "learning_rate": optimizer.get("learning_rate"),
        "weight_decay": optimizer.get("weight_decay"),
        "batch_size": hp.get("batch_size") if hp.get("batch_size") is not None else train.get("batch_size"),
        "epochs": hp.get("epochs") if hp.get("epochs") is not None else train.get("epochs"),
        "patience": train.get("patience"),
        "seed": (int(seed) + int(trial)) if seed is not None and trial is not None else seed,
        "start": hp.get("start", "fresh"),
    }
    for key in ("choices", "finetune"):
        if hp.get(key):
            out[key] = hp[key]
    if train.get("finetune") and "finetune" not in out:
        out["finetune"] = train["finetune"]
    return out


def _accuracies(history: Sequence[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """(peak, final) validation accuracy of the per-epoch rows; None for regression or no epochs."""
    values = [row.get("val_accuracy") for row in history]
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    last = values[-1] if values else None
    final = float(last) if isinstance(last, (int, float)) and math.isfinite(last) else None
    return (max(finite) if finite else None), final


def _flops(arch: Arch, input_shape: Sequence[int] | None) -> int | None:
    if input_shape is None:
        return None
    try:
        return int(arch.flops(tuple(input_shape)))
    except Exception:  # an IR this version cannot size: the row is still worth keeping
        return None


def experiment(*, key: str, dataset: DatasetRecord, arch: Arch | str, settings: dict,
               history: Sequence[Mapping[str, Any]], status: str, epochs: int | None, t_tr: float | None,
               num_params: int | None, source: dict, created: float | None = None,
               lineage: str | None = None, prefix: int | None = None) -> ExperimentRecord:
    """One `ExperimentRecord` (accuracies from the history; FLOPs from the IR at the dataset's input shape)."""
    parsed = Arch.from_json(arch) if isinstance(arch, str) else arch
    rows = tuple(dict(r) for r in (history or ()))
    peak, final = _accuracies(rows)
    t = None if t_tr is None or not math.isfinite(float(t_tr)) else float(t_tr)
    return ExperimentRecord(
        key=key, dataset=dataset.fingerprint, arch=parsed.to_json(indent=None), arch_hash=parsed.structural_hash(),
        settings=settings, history=rows, status=status, peak_val=peak, final_val=final,
        epochs=None if epochs is None else int(epochs), t_tr=t,
        num_params=None if num_params is None else int(num_params),
        flops=_flops(parsed, dataset.input_shape), source=source, lineage=lineage, prefix=prefix, created=created)


def search_trial_experiment(*, run_dir: str, run_id: int, trial: int, dataset: DatasetRecord, arch: Arch | str,
                            base: Mapping[str, Any], hyperparameters: Mapping[str, Any],
                            history: Sequence[Mapping[str, Any]], status: str, epochs: int | None,
                            t_tr: float | None, num_params: int | None, kind: str = "search",
                            created: float | None = None) -> ExperimentRecord:
    """A search trial (live, from nas-search's `on_trial`, or imported from its store) as an experiment."""
    return experiment(
        key=search_key(run_dir, run_id, trial), dataset=dataset, arch=arch,
        settings=effective_settings(base, hyperparameters, trial), history=history, status=status, epochs=epochs,
        t_tr=t_tr, num_params=num_params, created=created,
        source={"kind": kind, "run_dir": os.path.abspath(run_dir), "run": int(run_id), "trial": int(trial)})


def train_run_experiment(*, run_dir: str, dataset: DatasetRecord, arch: Arch, train_config: Mapping[str, Any],
                         history: Sequence[Mapping[str, Any]], status: str, epochs: int | None,
                         t_tr: float | None, num_params: int | None) -> ExperimentRecord:
    """A nas-train run as an experiment (`train_config`: ``dataclasses.asdict(TrainConfig)``)."""
    config = dict(train_config)
    base = {"train": config, "optimizer": config.get("optimizer"), "schedule": config.get("schedule")}
    return experiment(key=train_key(run_dir), dataset=dataset, arch=arch, settings=effective_settings(base, {}),
                      history=history, status=status, epochs=epochs, t_tr=t_tr, num_params=num_params,
                      source={"kind": "train", "run_dir": os.path.abspath(run_dir)})


# ------------------------------------------------------------------ import of run directories
_DATASET_META_KEYS = ("name", "task", "input_shape", "num_classes", "num_train", "num_val", "num_test", "seed")


def metadata_record(dataset_meta: Mapping[str, Any]) -> DatasetRecord:
    """A dataset record from a run's stored description (``meta:`` fingerprint: the data is not at hand)."""
    meta = dict(dataset_meta or {})
    described = {k: meta.get(k) for k in _DATASET_META_KEYS}
    described["data_args"] = meta.get("data_args")
    digest = hashlib.sha256(to_json(described, "dataset metadata").encode()).hexdigest()
    task = meta.get("task", "classification")
    return DatasetRecord(
        fingerprint=META_PREFIX + digest, name=str(meta.get("name", "?")),
        input_shape=tuple(int(d) for d in meta.get("input_shape") or ()),
        num_classes=None if task == "regression" or meta.get("num_classes") is None else int(meta["num_classes"]),
        num_train=int(meta.get("num_train") or 0), num_val=int(meta.get("num_val") or 0))


def reloaded_record(dataset_meta: Mapping[str, Any], cache: dict | None = None) -> DatasetRecord | None:
    """The content record of a run's data, reloaded from its ``data_args``; None when that is not possible.

    Accepted only when the rebuilt splits have exactly the recorded task,
    shape, classes and sizes (the same check nas-eval makes for a checkpoint).
    """
    meta = dict(dataset_meta or {})
    args = meta.get("data_args")
    if not isinstance(args, dict) or not args.get("name"):
        return None
    cache = {} if cache is None else cache
    token = to_json(args, "data_args")
    if token not in cache:
        from nas.data import load_dataset

        try:
            data = load_dataset(**{k: (tuple(v) if k == "image_size" and v is not None else v)
                                   for k, v in args.items()})
        except Exception as exc:  # a source gone from disk, an argument this version renamed...
            log.info("cannot reload %s (%s): the dataset is recorded by its metadata", args, exc)
            cache[token] = None
        else:
            got = data.metadata()
            same = all(got.get(k) == meta.get(k) for k in ("task", "input_shape", "num_classes", "num_train",
                                                           "num_val") if k in meta)
            cache[token] = dataset_record(data) if same else None
    return cache[token]


def experiments_of_run(run_dir: str, *, reload_data: bool = False,
                       data_cache: dict | None = None) -> list[tuple[DatasetRecord, list[ExperimentRecord]]]:
    """Every finished trial of every run in ``run_dir/store.sqlite``, per run.

    Args:
      run_dir: a nas-search run directory.
      reload_data: rebuild each run's data from its ``data_args`` for a
        content fingerprint (else, or when that fails, a ``meta:`` one).
      data_cache: shared between calls so one dataset is loaded once.

    Returns:
      One (dataset record, experiments) per run in the store (a store holds
      one run, except one whose configuration changed under a resume).

    Raises:
      IngestError: no store in `run_dir`, or a store that cannot be read.
    """
    path = os.path.join(run_dir, STORE_FILENAME)
    if not os.path.isfile(path):
        what = "no such directory" if not os.path.isdir(run_dir) else f"no {STORE_FILENAME} in it"
        raise IngestError(f"{run_dir}: not a nas-search run directory ({what})")
    out = []
    try:
        store = SqliteTrialStore(path)
    except StoreError as exc:
        raise IngestError(f"{run_dir}: cannot read its store: {exc}") from exc
    try:
        for run in store.runs():
            dataset = reloaded_record(run.dataset_meta, data_cache) if reload_data else None
            dataset = dataset or metadata_record(run.dataset_meta)
            experiments = []
            for t in store.trials(run, status=FINAL_STATUSES):
                experiments.append(search_trial_experiment(
                    run_dir=run_dir, run_id=run.id, trial=t.index, dataset=dataset, arch=t.arch, base=run.config,
                    hyperparameters=t.hyperparameters, history=t.history or (), status=t.status, epochs=t.epochs,
                    t_tr=t.t_tr, num_params=t.num_params, kind="import", created=t.finished_at))
            out.append((dataset, experiments))
    finally:
        store.close()
    return out


__all__ = ["META_PREFIX", "IngestError", "effective_settings", "experiment", "experiments_of_run",
           "metadata_record", "reloaded_record", "search_key", "search_trial_experiment", "train_key",
           "train_run_experiment"]
