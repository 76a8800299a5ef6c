"""What a finished search reports: its best model scored on the test split, and its summary.

The best model is read back from the exported ``best/`` checkpoint
(`nas.search.engine.export_artefacts`) rather than taken from memory, so the
test score is that of the published files, exactly what `nas-eval` on
``best/`` would report.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from nas.checkpoint import load_model
from nas.data import Dataset
from nas.ir import Arch
from nas.search.engine import SearchOutcome
from nas.search.objective import Objective
from nas.train import TrainConfig, evaluate


@dataclasses.dataclass(frozen=True)
class BestModel:
    """The search's best trial as exported, reloaded and scored on the test split.

    Attributes:
      trial: its trial index.
      arch: the architecture read from the checkpoint.
      variables: its ``params`` (and ``batch_stats``) read from the checkpoint.
      checkpoint: the model directory it was read from (``best/``).
      test: ``test_loss`` and ``test_accuracy`` (or ``test_mse``).
    """

    trial: int
    arch: Arch
    variables: dict = dataclasses.field(repr=False)
    checkpoint: str
    test: Mapping[str, float]


def score_on_test(arch: Arch, variables: dict, data: Dataset, batch_size: int) -> dict[str, float]:
    """Loss and accuracy (or MSE) of `variables` on `data`'s test split, keys prefixed ``test_``.

    Args:
      arch, variables: the model.
      data: the dataset; its test split is scored in eval mode.
      batch_size: examples per evaluation batch (`TrainConfig.eval_batch_size`).

    Returns:
      ``{"test_loss": ..., "test_accuracy" | "test_mse": ...}``.
    """
    metrics = evaluate(arch, variables, data.x_test, data.y_test, data.task, batch_size)
    return {f"test_{k}": v for k, v in metrics.items()}


def best_model(outcome: SearchOutcome, data: Dataset, config: TrainConfig,
               artefacts: Mapping[str, Any]) -> BestModel | None:
    """Reloads the exported best model and scores it on the test split.

    Args:
      outcome: the finished search.
      data: the dataset it searched on.
      config: the search's training settings (their ``eval_batch_size``).
      artefacts: what `export_artefacts` returned (its ``best`` directory).

    Returns:
      The best model, or None when no trial finished with a finite score.

    Raises:
      nas.checkpoint.CheckpointError: ``best/`` is missing or damaged.
    """
    if outcome.best is None:
        return None
    arch, variables, _ = load_model(artefacts["best"])
    return BestModel(outcome.best, arch, variables, artefacts["best"],
                     score_on_test(arch, variables, data, config.eval_batch_size))


def search_summary(
    outcome: SearchOutcome,
    objective: Objective,
    data: Dataset,
    best: BestModel | None,
    artefacts: Mapping[str, Any],
    *,
    strategy: str,
    counts: Mapping[str, int],
    finished_before: int,
) -> dict[str, Any]:
    """The JSON-ready summary of a search (what ``results.json`` holds, less the run's paths).

    Args:
      outcome: the finished search.
      objective: the f it minimised.
      data: the dataset it searched on.
      best: `best_model(outcome, ...)`.
      artefacts: what `export_artefacts` returned.
      strategy: the strategy's configured name.
      counts: the store's trial counts by status (`RunCounts.as_dict()`).
      finished_before: trials finished by earlier invocations of the run.

    Returns:
      The run's counts, objective and Pareto set; with a best model also its
      trial, size, validation and test scores, choices and checkpoints
      (``status`` ``done``), else ``status`` ``no finite trial``.
    """
    summary = {"job": "search", "strategy": strategy, "dataset": data.name, "trials": len(outcome.results),
               "trained_now": outcome.trained, "finished_before": finished_before,
               "stop_reason": outcome.stop_reason, "search_seconds": outcome.seconds,
               "gave_up": len(outcome.gave_up), "gave_up_trials": list(outcome.gave_up), "counts": dict(counts),
               "objective": dataclasses.asdict(objective), "pareto": list(outcome.pareto)}
    if best is None:
        summary["status"] = "no finite trial"
        return summary
    result, candidate = outcome.result(best.trial), outcome.candidate(best.trial)
    summary.update({
        "status": "done", "best_trial": result.trial, "arch_hash": best.arch.structural_hash(),
        "num_params": result.num_params, "depth": best.arch.depth(), "t_tr": result.t_tr, "epochs": result.epochs,
        "val_score": result.score, "val_error": result.error, "best_objective": result.objective,
        **best.test,
        "choices": dict(candidate.choices), "checkpoint": best.checkpoint,
        "pareto_checkpoints": {str(k): v for k, v in artefacts["pareto"].items()},
    })
    if data.task == "classification":
        summary["val_accuracy"] = result.score
    return summary
