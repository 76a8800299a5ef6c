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
from nas.search.strategy import FRESH, Candidate, training_of
from nas.store.records import DIVERGED, DONE, PlannedTrial, Trial, TrialOutcome
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
                     optimizer=optimizer, schedule=schedule)


def outcome_from_result(result: TrainResult, metrics: Mapping[str, Any] | None = None) -> TrialOutcome:
    """The outcome of a `nas.train.TrainResult` (its trained variables are not stored).

    Args:
      metrics: extra values to keep with the validation metrics (the
        objective, the error, wall seconds).
    """
    score = float(result.best_val_score)
    finite = result.status == DONE and math.isfinite(score)
    if result.status not in (DONE, DIVERGED):
        raise ValueError(f"a TrainResult's status is 'done' or 'diverged', got {result.status!r}")
    return TrialOutcome(
        status=result.status,
        best_score=score if finite else None,
        metrics={"best_epoch": result.best_epoch, **dict(result.best_val_metrics), **dict(metrics or {})},
        epochs=int(result.epochs),
        t_tr=float(result.t_tr),
        num_params=int(result.num_params),
        history=list(result.history),
        feedback=list(result.feedback),
    )
