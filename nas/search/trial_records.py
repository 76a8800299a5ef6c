"""Between the search's records and the store's: Candidate -> PlannedTrial,
TrainResult -> TrialOutcome, and a stored Trial back to a Candidate.

The conversion lives with the search, which writes into the store; the store
itself imports nothing of `nas` but its version, so readers and exporters
start without JAX.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from nas.ir import Arch
from nas.search.strategy import FRESH, Candidate, finetune_of, training_of
from nas.status import DIVERGED, DONE, FAILED
from nas.store.encoding import from_json, to_json
from nas.store.records import PlannedTrial, Trial, TrialOutcome
from nas.train import TrainResult


def plan_from_candidate(candidate: Candidate) -> PlannedTrial:
    """The planned trial of a strategy's proposal (its inherited weights are not stored)."""
    return PlannedTrial(
        index=candidate.trial,
        arch=candidate.arch.to_json(indent=None),
        arch_hash=candidate.arch.structural_hash(),
        hyperparameters=candidate.hyperparameters(),
        parent=candidate.parent,
    )


def candidate_from_trial(trial: Trial) -> Candidate:
    """Rebuilds a stored ``fresh`` or ``continue`` proposal.

    Raises:
      ValueError: the trial inherited morphed weights, which only its
        strategy can recompute (from the parent's checkpoint).
    """
    hp: dict[str, Any] = dict(trial.hyperparameters)
    optimizer, schedule = training_of(hp)
    start = hp.get("start", FRESH)
    if start == "inherit":
        raise ValueError(f"trial {trial.index} inherited morphed weights; replay its strategy to rebuild it")
    return Candidate(trial=trial.index, arch=Arch.from_json(trial.arch), learning_rate=hp.get("learning_rate"),
                     choices=hp.get("choices", {}), weight_decay=hp.get("weight_decay"),
                     batch_size=hp.get("batch_size"), epochs=hp.get("epochs"), parent=trial.parent, start=start,
                     optimizer=optimizer, schedule=schedule, finetune=finetune_of(hp))


def status_of(result: TrainResult | None) -> str:
    """The one rule for a trained proposal's status.

    ``failed`` without a result (training raised), ``done`` only with a
    finite best validation score, ``diverged`` otherwise (the trainer saw a
    non-finite loss, or no epoch scored).
    """
    if result is None:
        return FAILED
    if result.status not in (DONE, DIVERGED):
        raise ValueError(f"a TrainResult's status is 'done' or 'diverged', got {result.status!r}")
    return DONE if result.status == DONE and math.isfinite(result.best_val_score) else DIVERGED


def as_stored(rows) -> tuple[dict, ...]:
    """Per-epoch rows (history, feedback) exactly as the store gives them back.

    A strategy told a freshly trained result and one told the same result
    replayed from the store must see the same values, so both go through the
    store's JSON encoding (NumPy scalars become floats; nothing else changes).
    """
    return tuple(from_json(to_json(list(rows or ()), "per-epoch rows")))


def outcome_from_result(result: TrainResult, metrics: Mapping[str, Any] | None = None) -> TrialOutcome:
    """The outcome of a `nas.train.TrainResult` (its trained variables are not stored).

    Args:
      metrics: extra values to keep with the validation metrics (the
        objective, the error, wall seconds).
    """
    status = status_of(result)
    return TrialOutcome(
        status=status,
        best_score=float(result.best_val_score) if status == DONE else None,
        metrics={"best_epoch": result.best_epoch, **dict(result.best_val_metrics), **dict(metrics or {})},
        epochs=int(result.epochs),
        t_tr=float(result.t_tr),
        num_params=int(result.num_params),
        history=list(as_stored(result.history)),
        feedback=list(as_stored(result.feedback)),
    )
