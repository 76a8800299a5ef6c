"""Runs a strategy's proposals: ask, train (batched by architecture), tell, until a budget ends.

The strategy only proposes and learns; this loop is the evaluator, and it
never decides what to try next.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from typing import Callable

import numpy as np

from nas.data import Dataset
from nas.search import random_search
from nas.search.space import Candidate, SearchSpace
from nas.train import DIVERGED, TrainConfig, TrainResult, to_device, train, train_population


@dataclasses.dataclass(frozen=True)
class Budget:
    """When a search stops: trials, seconds, or a validation score reached.

    Attributes:
      max_trials: proposals to train.
      max_time: wall-clock seconds, checked between batches (None: no limit).
      target: stop once a trial's validation score reaches it (None: never).
      batch: proposals asked for at once; equal architectures among them
        train together as one population.
    """

    max_trials: int = 10
    max_time: float | None = None
    target: float | None = None
    batch: int = 1


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trained proposal (`result` holds its best variables)."""

    candidate: Candidate
    result: TrainResult
    seconds: float

    @property
    def score(self) -> float:
        return self.result.best_val_score if self.result.status != DIVERGED else float("-inf")

    def row(self) -> dict:
        """A flat, JSON-ready summary for tables and logs."""
        c, r = self.candidate, self.result
        return {
            "trial": c.trial, "status": r.status, "val_score": r.best_val_score,
            "num_params": r.num_params, "depth": c.arch.depth(), "t_tr": r.t_tr,
            "epochs": r.epochs, "best_epoch": r.best_epoch, "seconds": self.seconds,
            "arch_hash": c.arch.structural_hash()[:12], **c.choices,
        }


def _train_group(candidates: list[Candidate], dataset, base: TrainConfig, splits) -> list[TrainResult]:
    configs = [
        dataclasses.replace(base, seed=base.seed + c.trial,
                            optimizer=dataclasses.replace(base.optimizer, learning_rate=c.learning_rate))
        for c in candidates
    ]
    if len(configs) == 1:
        return [train(candidates[0].arch, dataset, configs[0], splits=splits)]
    return train_population(candidates[0].arch, dataset, configs, splits=splits)


def _without_weights(record: TrialRecord) -> TrialRecord:
    return dataclasses.replace(record, result=dataclasses.replace(record.result, variables={}))


def run_random_search(
    space: SearchSpace,
    dataset: Dataset,
    base: TrainConfig,
    budget: Budget,
    seed: int = 0,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> list[TrialRecord]:
    """Random search within `budget`; returns every trial in order.

    Only the best trial so far keeps its trained variables, so memory stays
    flat however many trials run.
    """
    state = random_search.init(space, seed, dataset.num_outputs, dataset.input_shape)
    splits = to_device(dataset)
    records: list[TrialRecord] = []
    start = time.perf_counter()
    best_score, best_index = -np.inf, None
    while state.num_asked < budget.max_trials:
        if budget.max_time is not None and time.perf_counter() - start >= budget.max_time:
            break
        state, candidates = random_search.ask(state, min(budget.batch, budget.max_trials - state.num_asked))
        groups: dict[str, list[Candidate]] = defaultdict(list)
        for c in candidates:
            groups[c.arch.structural_hash()].append(c)
        for group in groups.values():
            t0 = time.perf_counter()
            results = _train_group(group, dataset, base, splits)
            seconds = (time.perf_counter() - t0) / len(group)
            for c, r in zip(group, results):
                record = TrialRecord(c, r, seconds)
                if record.score > best_score:
                    if best_index is not None:
                        records[best_index] = _without_weights(records[best_index])
                    best_score, best_index = record.score, len(records)
                else:
                    record = _without_weights(record)
                records.append(record)
                if on_trial is not None:
                    on_trial(record)
        state = random_search.tell(state, [(rec.candidate.trial, rec.score) for rec in records[-len(candidates):]])
        if budget.target is not None and best_score >= budget.target:
            break
    return sorted(records, key=lambda rec: rec.candidate.trial)


def best_trial(records: list[TrialRecord]) -> TrialRecord | None:
    finite = [r for r in records if np.isfinite(r.score)]
    return max(finite, key=lambda r: r.score) if finite else None
