"""The evaluator: trains a batch of proposals with the core trainer.

It never decides what to try. Proposals that share an architecture and every
population-shared training setting (batch size, epochs, start mode) train
together as one vmapped population; a morph child starts from the weights it
inherited; a ``continue`` proposal starts from its parent's trained weights
and trains only the epochs its budget adds (multi-fidelity), with its epoch
count and history carrying on from the parent's.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections import defaultdict
from typing import Any, Callable, Sequence

from nas.data import Dataset
from nas.search.strategy import CONTINUE, FRESH, INHERIT, Candidate
from nas.train import DeviceSplits, TrainConfig, TrainResult, train, train_population


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One proposal's training.

    Attributes:
      candidate: what was trained.
      result: the trainer's result (epochs and history count a continued
        proposal's parent epochs); None when training raised.
      error: the exception text when training raised.
      seconds: wall-clock seconds of its training, compilation included (a
        population's time is split evenly between its members).
    """

    candidate: Candidate
    result: TrainResult | None
    error: str | None
    seconds: float


# (trials training together, epoch just finished, epochs this training runs): progress inside a trial.
EpochHook = Callable[[tuple[int, ...], int, int], None]

# (variables, epochs trained) of a finished trial, for `continue` proposals.
ParentWeights = Callable[[int], tuple[dict, int]]


def config_for(candidate: Candidate, base: TrainConfig, parent_epochs: int = 0) -> TrainConfig:
    """The TrainConfig of one proposal: the base with its own seed and settings.

    The seed is `base.seed + trial`, so a proposal retrained after a restart
    reproduces its result.
    """
    optimizer = candidate.optimizer if candidate.optimizer is not None else base.optimizer
    schedule = candidate.schedule if candidate.schedule is not None else base.schedule
    if candidate.learning_rate is not None:
        optimizer = dataclasses.replace(optimizer, learning_rate=float(candidate.learning_rate))
    if candidate.weight_decay is not None:
        optimizer = dataclasses.replace(optimizer, weight_decay=float(candidate.weight_decay))
    total = candidate.epochs if candidate.epochs is not None else base.epochs
    if int(total) <= parent_epochs:
        raise ValueError(f"nothing to train: the epoch budget {total} is already spent "
                         f"(the parent trained {parent_epochs})")
    finetune = candidate.finetune if candidate.finetune is not None else base.finetune
    return dataclasses.replace(
        base, seed=base.seed + candidate.trial, optimizer=optimizer, schedule=schedule, finetune=finetune,
        batch_size=int(candidate.batch_size) if candidate.batch_size is not None else base.batch_size,
        epochs=int(total) - parent_epochs)


def _continued(result: TrainResult, parent_epochs: int) -> TrainResult:
    """A continuation's result with epochs counted from the start of its lineage."""
    history = tuple(dict(row, epoch=row["epoch"] + parent_epochs) for row in result.history)
    feedback = tuple(dict(row, epoch=row["epoch"] + parent_epochs) for row in result.feedback)
    return dataclasses.replace(
        result, epochs=result.epochs + parent_epochs, history=history, feedback=feedback,
        best_epoch=result.best_epoch + parent_epochs if result.best_epoch else 0)


def _group_key(candidate: Candidate, config: TrainConfig) -> tuple:
    return (candidate.arch.structural_hash(), config.shared_part(), candidate.start == FRESH)


def evaluate_candidates(
    candidates: Sequence[Candidate],
    dataset: Dataset,
    base: TrainConfig,
    *,
    splits: DeviceSplits | None = None,
    parent_weights: ParentWeights | None = None,
    on_epoch: EpochHook | None = None,
) -> list[Evaluation]:
    """Trains every proposal; returns their evaluations in the given order.

    A proposal whose training raises (a shape the trainer rejects, memory)
    is reported with its error instead of stopping the batch.

    Args:
      candidates: the proposals.
      dataset: the data; `splits` its device copy (made once per search).
      base: settings a proposal does not override.
      parent_weights: for ``continue`` proposals, the parent's (variables,
        epochs trained).
      on_epoch: called after every epoch of a training with (the trials
        training together, epoch, epochs this training runs), for progress.
    """
    prepared: list[tuple[Candidate, TrainConfig, Any, int]] = []
    failures: dict[int, str] = {}
    for c in candidates:
        try:
            variables, parent_epochs = None, 0
            if c.start == INHERIT:
                variables = c.variables
            elif c.start == CONTINUE:
                if parent_weights is None:
                    raise ValueError("a 'continue' proposal needs the parent's weights (parent_weights)")
                variables, parent_epochs = parent_weights(c.parent)
            prepared.append((c, config_for(c, base, parent_epochs), variables, parent_epochs))
        except Exception as exc:  # a missing parent checkpoint fails this proposal only
            failures[c.trial] = f"{type(exc).__name__}: {exc}"

    groups: dict[tuple, list[tuple[Candidate, TrainConfig, Any, int]]] = defaultdict(list)
    for item in prepared:
        groups[_group_key(item[0], item[1])].append(item)

    done: dict[int, Evaluation] = {}
    for group in groups.values():
        start = time.perf_counter()
        arch = group[0][0].arch
        configs = [cfg for _, cfg, _, _ in group]
        warm = [v for _, _, v, _ in group] if group[0][0].start != FRESH else None
        trials = tuple(c.trial for c, _, _, _ in group)
        hook = None if on_epoch is None else (
            lambda epoch, rows, trials=trials, total=configs[0].epochs: on_epoch(trials, epoch, total))
        try:
            if len(group) == 1:
                results = [train(arch, dataset, configs[0], variables=warm[0] if warm else None, splits=splits,
                                 on_epoch=hook)]
            else:
                results = train_population(arch, dataset, configs, variables=warm, splits=splits, on_epoch=hook)
            error = None
        except Exception as exc:
            results, error = [None] * len(group), f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        seconds = (time.perf_counter() - start) / len(group)
        for (c, _, _, parent_epochs), r in zip(group, results):
            if r is not None and parent_epochs:
                r = _continued(r, parent_epochs)
            done[c.trial] = Evaluation(c, r, error, seconds)
    for c in candidates:
        if c.trial in failures:
            done[c.trial] = Evaluation(c, None, failures[c.trial], 0.0)
    return [done[c.trial] for c in candidates]
