"""The predictor a run screens or ranks with: DCN, neighbours within tau, a cached TAP, frozen in the run directory.

NeuNetS s4.1.2: a new dataset is characterised once (its DCN, cached in the
LDE), the LDE's experiments on datasets of similar difficulty
(|DCN - DCN_new| <= tau) train TAP, and TAP is reused for datasets of the
same neighbourhood until the LDE has grown enough to be worth retraining.

`prepare(...)` does that for one run and freezes the result in
``<run dir>/tap`` (the predictor's weights and ``task.json``: the dataset's
DCN, input shape, classes and the neighbours it was trained on). A resumed
run reads the frozen copy and never retrains, so its screening decisions
replay exactly. When no dataset lies within tau, or too few experiments do,
`prepare` says so and returns no predictor: the prefilter steps aside rather
than guess.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
from typing import Any, Callable, Sequence

import numpy as np

from nas.atomic_io import write_json_atomic
from nas.ir import Arch

log = logging.getLogger(__name__)

TASK_FILE = "task.json"


@dataclasses.dataclass(frozen=True)
class TapasSettings:
    """The ``tapas`` config group (conf/tapas/default.yaml).

    Attributes:
      tau: the DCN neighbourhood whose experiments train TAP (the paper's 0.05).
      keep: ``search.prefilter=tap``: the fraction of proposals trained.
      min_examples: fewer training networks than this within tau: no predictor.
      epochs: TAP's training epochs.
      batch_size: TAP's batch (the paper's 512 is one step per epoch on an LDE
        of a few hundred networks, which learns little; 64 by default).
      retrain_growth: a cached TAP is retrained once its neighbourhood's
        experiments have grown by this fraction since it was trained.
      cache: where trained TAPs are kept between runs (null: not kept).
      dcn_epochs, dcn_max_train: the probe's training for a new dataset's DCN.
      seed: TAP's initialisation and batching seed.
    """

    tau: float = 0.05
    keep: float = 0.25
    min_examples: int = 20
    epochs: int = 200
    batch_size: int = 64
    retrain_growth: float = 0.2
    cache: str | None = None
    dcn_epochs: int = 10
    dcn_max_train: int = 2000
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.tau, (int, float)) and self.tau >= 0):
            raise ValueError(f"tapas.tau must be a number >= 0, got {self.tau!r}")
        if not (isinstance(self.keep, (int, float)) and 0 < self.keep <= 1):
            raise ValueError(f"tapas.keep must be in (0, 1], got {self.keep!r}")
        for name in ("min_examples", "epochs", "batch_size", "dcn_epochs", "dcn_max_train"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"tapas.{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.retrain_growth, (int, float)) and self.retrain_growth >= 0):
            raise ValueError(f"tapas.retrain_growth must be a number >= 0, got {self.retrain_growth!r}")


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What `prepare` found.

    Attributes:
      directory: the run's frozen predictor, or None when there is none.
      dcn: the dataset's DCN.
      neighbours: (name, fingerprint, dcn) of the datasets TAP learned from.
      examples: training networks TAP learned from.
      note: why there is no predictor (or how it was obtained).
    """

    directory: str | None
    dcn: float
    neighbours: tuple[tuple[str, str, float], ...]
    examples: int
    note: str


def run_directory(run_dir: str) -> str:
    return os.path.join(run_dir, "tap")


def _cache_key(lde_path: str, neighbours: Sequence[tuple[str, str, float]], settings: TapasSettings) -> str:
    from nas.tapas.encoding import ENCODING_VERSION

    ident = {"lde": os.path.realpath(lde_path), "datasets": sorted(fp for _, fp, _ in neighbours),
             "encoding": ENCODING_VERSION, "epochs": settings.epochs, "batch_size": settings.batch_size,
             "seed": settings.seed}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _fit(examples, settings: TapasSettings):
    from nas.tapas.predictor import TAPConfig, fit

    return fit(examples, TAPConfig(epochs=settings.epochs, batch_size=settings.batch_size, seed=settings.seed,
                                   tau=settings.tau))


def prepare(lde_path: str, dataset: Any, run_dir: str, settings: TapasSettings) -> Prepared:
    """The run's predictor: frozen in ``<run_dir>/tap``, reused on resume, else trained (or cached) from the LDE.

    Raises:
      nas.lde.LDEError: the LDE file is corrupt, foreign or newer.
    """
    frozen = run_directory(run_dir)
    task_path = os.path.join(frozen, TASK_FILE)
    if os.path.exists(task_path):
        with open(task_path) as f:
            task = json.load(f)
        return Prepared(frozen if task.get("predictor", True) else None, float(task["dcn"]),
                        tuple(tuple(n) for n in task["neighbours"]), int(task["examples"]),
                        f"frozen in the run directory (a resumed run never retrains): {task.get('how', '')}")
    from nas.lde import LDE, dataset_record
    from nas.tapas.dcn import dataset_dcn
    from nas.tapas.examples import examples_from_lde, neighbours

    with LDE(lde_path) as lde:
        record = dataset_record(dataset)
        fingerprint = record.fingerprint
        lde.add_dataset(record)
        dcn = float(dataset_dcn(lde, dataset, epochs=settings.dcn_epochs, max_train=settings.dcn_max_train,
                                seed=settings.seed))
        examples = examples_from_lde(lde, dcn=dcn, tau=settings.tau)
        used = {e.dataset for e in examples}  # a dataset with a DCN but no trained networks teaches nothing
        near = tuple((str(n), str(fp), float(d)) for n, fp, d in neighbours(lde, dcn, settings.tau) if fp in used)
        if not near:
            others = [(r.name, lde.dcn(r.fingerprint)) for r in lde.datasets() if r.fingerprint != fingerprint]
            others = sorted(((n, d) for n, d in others if d is not None), key=lambda nd: abs(nd[1] - dcn))
            nearest = f"the nearest is {others[0][0]} at {others[0][1]:.3f}" if others else "no dataset has a DCN yet"
            return _without(frozen, Prepared(
                None, dcn, (), 0, f"no dataset in the LDE ({lde_path}) has a DCN within tapas.tau={settings.tau} of "
                f"this dataset's {dcn:.3f} ({nearest}); train networks on similar data (experiments/lde_init.py, "
                "nas-lde import RUN_DIR) or raise tapas.tau"))
    if len(examples) < settings.min_examples:
        return _without(frozen, Prepared(
            None, dcn, near, len(examples), f"only {len(examples)} networks in the LDE lie within tapas.tau="
            f"{settings.tau} of DCN {dcn:.3f} (tapas.min_examples={settings.min_examples})"))
    tap, how = _cached_or_fit(lde_path, near, examples, settings)
    os.makedirs(run_dir, exist_ok=True)
    tmp = frozen + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tap.save(tmp)
    write_json_atomic(os.path.join(tmp, TASK_FILE), {
        "dcn": dcn, "input_shape": list(dataset.input_shape), "num_classes": int(dataset.num_classes),
        "neighbours": [list(n) for n in near], "examples": len(examples), "tau": settings.tau, "how": how})
    os.replace(tmp, frozen)  # the task file appears with the weights or not at all
    return Prepared(frozen, dcn, near, len(examples), how)


def _without(frozen: str, prepared: Prepared) -> Prepared:
    """Freezes "no predictor" too: a resumed run must not start screening halfway because the LDE grew."""
    os.makedirs(frozen, exist_ok=True)
    write_json_atomic(os.path.join(frozen, TASK_FILE), {
        "predictor": False, "dcn": prepared.dcn, "neighbours": [list(n) for n in prepared.neighbours],
        "examples": prepared.examples, "how": prepared.note})
    return prepared


def _cached_or_fit(lde_path: str, near, examples, settings: TapasSettings):
    from nas.tapas.predictor import TAP

    if settings.cache is None:
        return _fit(examples, settings), f"trained on {len(examples)} networks (tapas.cache=null: not kept)"
    directory = os.path.join(os.path.expanduser(settings.cache), _cache_key(lde_path, near, settings))
    if os.path.isdir(directory):
        try:
            cached = TAP.load(directory)
            trained_on = int(cached.metadata.get("examples", 0))
            if len(examples) <= trained_on * (1.0 + settings.retrain_growth):
                return cached, f"cached ({directory}, {trained_on} networks; the LDE has {len(examples)})"
            why = f"the neighbourhood grew from {trained_on} to {len(examples)} networks"
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            why = f"the cached predictor could not be read ({exc})"
        log.info("retraining TAP: %s", why)
    tap = _fit(examples, settings)
    tmp = directory + f".partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tap.save(tmp)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    os.replace(tmp, directory)
    return tap, f"trained on {len(examples)} networks, cached in {directory}"


def load_scorer(directory: str) -> Callable[[Sequence[Arch]], np.ndarray]:
    """Architectures -> TAP's predicted peak validation accuracy on the run's dataset (``directory/task.json``)."""
    from nas.tapas.predictor import TAP

    task_path = os.path.join(directory, TASK_FILE)
    if not os.path.exists(task_path):
        raise FileNotFoundError(f"{directory} is not a run's predictor: {TASK_FILE} is missing")
    with open(task_path) as f:
        task = json.load(f)
    tap = TAP.load(directory)
    shape, classes, dcn = tuple(task["input_shape"]), int(task["num_classes"]), float(task["dcn"])

    def score(archs: Sequence[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        out = np.asarray(tap.predict(list(archs), shape, classes, dcn), dtype=np.float64)
        return np.where(np.isfinite(out), out, math.nan)

    return score


__all__ = ["Prepared", "TapasSettings", "load_scorer", "prepare", "run_directory"]
