"""Between the search loop's records and the store's: Candidate -> PlannedTrial,
TrainResult -> TrialOutcome, and a stored Trial back to a Candidate.

Duck-typed on the way in, so importing the store does not import JAX; the
way back imports `nas.search.space` (and with it `nas.ir`) only when called.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nas.store.records import DIVERGED, DONE, PlannedTrial, Trial, TrialOutcome

if TYPE_CHECKING:
    from nas.search.space import Candidate
    from nas.train.loop import TrainResult


def plan_from_candidate(candidate: "Candidate", parent: int | None = None) -> PlannedTrial:
    """The planned trial of a strategy's proposal.

    Args:
      candidate: a `nas.search.Candidate`.
      parent: the trial it was derived from (a morphism's source), if any.
    """
    return PlannedTrial(
        index=candidate.trial,
        arch=candidate.arch.to_json(indent=None),
        arch_hash=candidate.arch.structural_hash(),
        hyperparameters={"learning_rate": candidate.learning_rate, "choices": candidate.choices},
        parent=parent,
    )


def candidate_from_trial(trial: Trial) -> "Candidate":
    """Rebuilds the proposal of a stored trial (to train a queued trial after a restart)."""
    from nas.ir import Arch
    from nas.search.space import Candidate

    hp: dict[str, Any] = trial.hyperparameters
    return Candidate(trial=trial.index, arch=Arch.from_json(trial.arch),
                     learning_rate=hp["learning_rate"], choices=hp.get("choices", {}))


def outcome_from_result(result: "TrainResult") -> TrialOutcome:
    """The outcome of a `nas.train.TrainResult` (its trained variables are not stored)."""
    score = float(result.best_val_score)
    finite = result.status == DONE and math.isfinite(score)
    if result.status not in (DONE, DIVERGED):
        raise ValueError(f"a TrainResult's status is 'done' or 'diverged', got {result.status!r}")
    return TrialOutcome(
        status=result.status,
        best_score=score if finite else None,
        metrics={"best_epoch": result.best_epoch, **dict(result.best_val_metrics)},
        epochs=int(result.epochs),
        t_tr=float(result.t_tr),
        num_params=int(result.num_params),
        history=list(result.history),
        feedback=list(result.feedback),
    )
