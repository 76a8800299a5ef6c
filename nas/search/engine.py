"""The search engine: ask, store, train, tell, until a budget or the strategy ends.

The trial store is the source of truth. Every batch of proposals is
enqueued before any of it trains, each trial is claimed, trained and
finished in its own transaction, and a killed process leaves at most the
trials it was training ``running``. On restart the engine re-queues those,
then *replays* the strategy from its seed: it asks again, checks that each
proposal is the stored one, tells the stored results of finished trials
without training them, and trains only what never finished. No trial is
lost or counted twice, and a resumed run proposes what an uninterrupted one
would (training is seeded by `seed + trial`).

Checkpoints (orbax, `nas.checkpoint`) are written before a trial is marked
finished: every trial's weights when the strategy derives children from
them (`Strategy.needs_weights`), otherwise those of trials on the
(error, complexity) Pareto front when they finish, which always include the
final best.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

from nas.checkpoint import copy_model, load_model, save_model
from nas.data import Dataset
from nas.search.evaluator import EpochHook, Evaluation, evaluate_candidates
from nas.search.objective import Objective, error_of, pareto_front
from nas.search.strategy import Candidate, Strategy, TrialResult
from nas.search.trial_records import as_stored, outcome_from_result, plan_from_candidate, status_of
from nas.status import DONE, FAILED, GAVE_UP, NO_SCORE
from nas.store import InvalidTransitionError, Run, StoreError, Trial, TrialConflictError, TrialOutcome, TrialStore
from nas.train import TrainConfig, to_device

# A trial whose process died this often (SIGKILL, or the OOM killer, which looks
# the same) is marked failed instead of retried forever; see `run_search`.
MAX_ATTEMPTS = 3

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """The user stopped the search (SIGINT, or SIGTERM turned into this by the entry point).

    A KeyboardInterrupt, so nothing that catches `Exception` (a candidate's
    training, say) mistakes it for the trial's own failure.
    """

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name


class CheckpointWriteError(OSError):
    """A trial's checkpoint could not be written (disk full, permissions): not the trial's fault."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """When a search stops: trials, seconds, or a validation score reached.

    Attributes:
      max_trials: proposals to train.
      max_time: seconds of search, summed over resumed invocations and
        checked between batches (None: no limit).
      target: stop once a trial's validation score (accuracy, or minus MSE)
        reaches it (None: never), as DREAM's Algorithm 1 and NeuNetS do.
      batch: proposals asked for at once; proposals sharing an architecture
        train together as one population.
    """

    max_trials: int = 10
    max_time: float | None = None
    target: float | None = None
    batch: int = 1

    def __post_init__(self):
        if self.max_trials < 0 or self.batch < 1:
            raise ValueError(f"need max_trials >= 0 and batch >= 1, got {self.max_trials} and {self.batch}")


class ResumeMismatchError(RuntimeError):
    """The strategy's replay proposed something other than the stored trial."""


@dataclasses.dataclass(frozen=True)
class SearchOutcome:
    """How a search ended.

    Attributes:
      run: the store's run.
      candidates, results: every trial's proposal and result, in trial order.
      best: the trial of lowest objective (ties: lowest index), or None.
      pareto: trials on the (error, complexity) front.
      stop_reason: what ended it.
      trained: trials trained by this invocation (the rest were replayed).
      state: the strategy's final state.
      checkpoints: trial -> model directory of the checkpointed trials.
      seconds: search time summed over every invocation of the run (a killed
        one counts up to its last told batch), as `Budget.max_time` counts it.
      gave_up: trials marked failed because their process died in each of
        their `max_attempts` attempts (over every invocation of the run).
    """

    run: Run
    candidates: tuple[Candidate, ...]
    results: tuple[TrialResult, ...]
    best: int | None
    pareto: tuple[int, ...]
    stop_reason: str
    trained: int
    state: Any
    checkpoints: dict[int, str]
    seconds: float
    gave_up: tuple[int, ...] = ()

    def result(self, trial: int) -> TrialResult:
        return next(r for r in self.results if r.trial == trial)

    def candidate(self, trial: int) -> Candidate:
        return next(c for c in self.candidates if c.trial == trial)


def _complexity(objective: Objective, result: TrialResult) -> float:
    return result.t_tr if objective.complexity == "t_tr" else float(result.num_params)


def _result_of_trial(trial: Trial, objective: Objective, task: str, variables=None) -> TrialResult:
    """A stored trial's result, as it was told when it trained (the store's NULLs are NO_SCORE/inf)."""
    metrics = trial.metrics or {}
    score = trial.best_score if trial.status == DONE and trial.best_score is not None else NO_SCORE
    error = error_of(score, task)
    t_tr = float(trial.t_tr) if trial.t_tr is not None else math.inf
    num_params = int(trial.num_params) if trial.num_params is not None else 0
    value = metrics.get("objective")
    value = float(value) if value is not None and trial.status == DONE else math.inf
    return TrialResult(trial.index, trial.status, score, error, t_tr, num_params, int(trial.epochs or 0),
                       value, variables, tuple(trial.history or ()), tuple(trial.feedback or ()))


def _result_of_evaluation(ev: Evaluation, objective: Objective, task: str, keep_weights: bool) -> TrialResult:
    r = ev.result
    status = status_of(r)
    if r is None:
        return TrialResult(ev.candidate.trial, status, NO_SCORE, math.inf, math.inf, 0, 0, math.inf)
    score = float(r.best_val_score) if status == DONE else NO_SCORE
    error = error_of(score, task)
    return TrialResult(ev.candidate.trial, status, score, error, r.t_tr, r.num_params, r.epochs,
                       objective(error, r.t_tr, r.num_params), r.variables if keep_weights else None,
                       as_stored(r.history), as_stored(r.feedback))


def run_search(
    strategy: Strategy,
    space: Any,
    key: Any,
    dataset: Dataset,
    base: TrainConfig,
    budget: Budget,
    store: TrialStore,
    run: Run,
    *,
    objective: Objective = Objective(),
    run_dir: str,
    on_trial: Callable[[Candidate, TrialResult, Evaluation | None], None] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    checkpoint_metadata: Mapping[str, Any] | None = None,
    on_epoch: EpochHook | None = None,
) -> SearchOutcome:
    """Runs (or resumes) `strategy` until a budget or the strategy ends.

    Args:
      strategy, space, key: what proposes; `strategy.init(space, key)`, where
        `space` is a `nas.search.Posed` (the strategy's space spec on its `Problem`).
      dataset, base: the data and the training settings proposals don't set.
      budget: trials, time, target and batch size.
      store, run: where trials live (`store.open_run` with resume semantics).
      objective: Deep-n-Cheap's f, minimised by every strategy.
      run_dir: checkpoints go to ``run_dir/trials/<index>``.
      on_trial: called for every trial this invocation trains or replays,
        with its evaluation (None when replayed from the store).
      max_attempts: a trial whose process died (SIGKILL, out of memory) in
        this many attempts is marked failed, loudly, instead of retried. The
        user's interruption (SIGINT/SIGTERM, `Interrupted`) and a checkpoint
        that could not be written are not attempts: those trials are queued
        again uncounted, and the exception propagates.
      checkpoint_metadata: extra keys for every checkpoint's model.json
        (e.g. ``data_args``, so nas-eval can reload the dataset).
      on_epoch: called after every training epoch (`nas.search.evaluator.EpochHook`).

    The caller holds the run directory (`nas.store.RunLock`): two processes
    on one run would train the same trials twice.

    Raises:
      Interrupted / KeyboardInterrupt: the user stopped it; resume continues.
      CheckpointWriteError: a checkpoint could not be written.
      ResumeMismatchError: the stored run does not match what is replayed.
    """
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"search.max_attempts must be an integer >= 1, got {max_attempts!r}")
    start_clock = time.perf_counter()
    meta = store.strategy_state(run)
    elapsed_before = json.loads(meta.state.decode())["elapsed"] if meta is not None else 0.0
    for t in store.requeue_interrupted(run, max_attempts=max_attempts):
        if t.status == FAILED:
            log.warning("trial %d %s; it is marked failed and the search goes on without it "
                        "(search.max_attempts=%d)", t.index, t.error, max_attempts)
    stored = {t.index: t for t in store.trials(run)}
    splits = None
    state = strategy.init(space, key)
    candidates: dict[int, Candidate] = {}
    results: dict[int, TrialResult] = {}
    checkpoints = {a.trial: a.path for a in store.artefacts(run, kind="checkpoint")}
    trained, asked = 0, 0
    stop_reason = "max_trials"

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - start_clock

    def load_weights(trial: int) -> tuple[dict, int]:
        # Read back from the checkpoint rather than kept in memory: memory stays flat over a long
        # run, and a resumed run reads exactly the bits an uninterrupted one would have used.
        if trial not in checkpoints:
            raise ResumeMismatchError(f"trial {trial}'s weights are needed but it has no checkpoint")
        _, variables, _ = load_model(checkpoints[trial])
        return variables, results[trial].epochs if trial in results else stored[trial].epochs

    def checkpoint(c: Candidate, r: TrialResult, ev: Evaluation) -> None:
        path = os.path.join(run_dir, "trials", str(c.trial))
        try:
            save_model(path, c.arch, ev.result.variables, {
                **dict(checkpoint_metadata or {}),
                "trial": c.trial, "hyperparameters": c.hyperparameters(), "parent": c.parent,
                "dataset": dataset.metadata(), "score": r.score, "error": r.error, "objective": r.objective,
                "t_tr": r.t_tr, "num_params": r.num_params, "epochs": r.epochs})
        except OSError as exc:
            raise CheckpointWriteError(
                exc.errno, f"could not write trial {c.trial}'s checkpoint to {path}: {exc.strerror or exc}") from exc
        checkpoints[c.trial] = path
        if not store.artefacts(run, kind="checkpoint", trial=c.trial):
            store.add_artefact(run, "checkpoint", path, trial=c.trial)

    def on_front(r: TrialResult) -> bool:
        done = [x for x in results.values() if x.ok] + [r]
        front = pareto_front([(x.error, _complexity(objective, x)) for x in done])
        return len(done) - 1 in front

    while True:
        if asked >= budget.max_trials:
            stop_reason = "max_trials"
            break
        if strategy.done(state):
            stop_reason = "strategy finished"
            break
        if budget.max_time is not None and elapsed() >= budget.max_time:
            stop_reason = "max_time"
            break
        if budget.target is not None and any(r.ok and r.score >= budget.target for r in results.values()):
            stop_reason = "target reached"
            break
        state, batch = strategy.ask(state, min(budget.batch, budget.max_trials - asked))
        if not batch:
            stop_reason = "strategy finished"
            break
        asked += len(batch)
        try:
            store.enqueue(run, [plan_from_candidate(c) for c in batch])
        except TrialConflictError as exc:
            raise ResumeMismatchError(
                f"resuming run {run.id}: the strategy now proposes something other than the stored trial "
                f"({exc}); the code or the search configuration changed since the run started. Continue it with "
                "the code and settings that started it, or start a new run directory (hydra.run.dir=NEW_DIR)"
                ) from exc
        for c in batch:
            candidates[c.trial] = c
            stored[c.trial] = store.trial(run, c.trial)
        to_train = [c for c in batch if not stored[c.trial].final]
        replayed = [c for c in batch if stored[c.trial].final]
        for c in replayed:
            variables = load_weights(c.trial)[0] if strategy.needs_weights and stored[c.trial].status == DONE else None
            results[c.trial] = _result_of_trial(stored[c.trial], objective, dataset.task, variables)
            if on_trial is not None:
                on_trial(c, results[c.trial], None)
        if to_train:
            claimed: dict[int, int] = {}  # trial -> attempt, until it is finished
            try:
                for _ in to_train:
                    t = store.claim_next(run)
                    if t is None or t.index not in {c.trial for c in to_train}:
                        raise ResumeMismatchError(
                            f"run {run.id}: queued trial {t and t.index} is not in the current batch")
                    claimed[t.index] = t.attempts
                if splits is None:
                    splits = to_device(dataset)
                evaluations = evaluate_candidates(to_train, dataset, base, splits=splits, parent_weights=load_weights,
                                                  on_epoch=on_epoch)
                for ev in evaluations:
                    c = ev.candidate
                    r = _result_of_evaluation(ev, objective, dataset.task, strategy.needs_weights)
                    if ev.result is not None and r.ok and (strategy.needs_weights or on_front(r)):
                        checkpoint(c, r, ev)
                    stored[c.trial] = store.finish(run, c.trial, _outcome(ev, r), attempt=claimed[c.trial])
                    del claimed[c.trial]
                    results[c.trial] = r
                    trained += 1
                    if on_trial is not None:
                        on_trial(c, r, ev)
            except (KeyboardInterrupt, CheckpointWriteError) as exc:
                stuck = _release(store, run, claimed, exc)
                if isinstance(exc, CheckpointWriteError):
                    what = (f"; the store could not record that either (a full disk fails its writes too), so trials "
                            f"{stuck} stay running and this attempt counts toward search.max_attempts on resume"
                            if stuck else "; the trial is queued again (not counted as an attempt)")
                    raise CheckpointWriteError(exc.errno, f"{exc.strerror}{what}: free space or fix the "
                                               "permissions, then resume with resume=true") from exc
                raise
        state = strategy.tell(state, [results[c.trial] for c in batch])
        for c in batch:  # the strategy keeps what weights it needs; the engine drops its copies
            results[c.trial] = dataclasses.replace(results[c.trial], variables=None)
        store.save_strategy_state(run, json.dumps({"strategy": strategy.name, "elapsed": elapsed(),
                                                   "asked": asked}).encode(), told=sorted(results))

    ordered = tuple(results[i] for i in sorted(results))
    finite = [r for r in ordered if r.ok]
    best = min(finite, key=lambda r: (r.objective, r.trial)).trial if finite else None
    front = pareto_front([(r.error, _complexity(objective, r)) for r in finite])
    gave_up = tuple(t.index for t in store.trials(run, status=FAILED) if (t.error or "").startswith(GAVE_UP))
    return SearchOutcome(run, tuple(candidates[i] for i in sorted(candidates)), ordered, best,
                         tuple(finite[i].trial for i in front), stop_reason, trained, state, checkpoints,
                         elapsed(), gave_up)


def _outcome(ev: Evaluation, r: TrialResult) -> TrialOutcome:
    """What the store records of an evaluation (its status by `status_of`, as `r`'s)."""
    if ev.result is None:
        return TrialOutcome.failed(ev.error or "unknown error")
    return outcome_from_result(ev.result, {
        "objective": r.objective if math.isfinite(r.objective) else None,
        "error": r.error if math.isfinite(r.error) else None, "seconds": ev.seconds})


def _release(store: TrialStore, run: Run, claimed: Mapping[int, int], exc: BaseException) -> list[int]:
    """Queues the claimed, unfinished trials again without counting the attempt (not their fault).

    Returns:
      The trials the store could not release (a full disk fails its writes
      too); they stay ``running`` and the next start counts their attempt.
      The exception that stopped the search is never replaced by this one's.
    """
    if isinstance(exc, KeyboardInterrupt):
        reason = f"interrupted by the user ({getattr(exc, 'signal_name', 'SIGINT')}); not counted as an attempt"
    else:
        reason = f"checkpoint write failed ({exc}); not counted as an attempt"
    stuck = []
    for trial, attempt in claimed.items():
        for last_try in (False, True):
            try:
                store.release(run, trial, reason, attempt=attempt)
                break
            except InvalidTransitionError:
                break  # the interrupt came after its finish committed: it is done
            except StoreError as store_error:
                if last_try:
                    log.warning("could not queue trial %d again: %s", trial, store_error)
                    stuck.append(trial)
                else:
                    store.make_room()  # e.g. give a full disk back the journal's space, then try once more
    return stuck


def export_artefacts(outcome: SearchOutcome, store: TrialStore, run_dir: str) -> dict[str, Any]:
    """Copies the best model to ``run_dir/best`` and records the best and Pareto artefacts.

    Returns:
      {"best": path or None, "pareto": {trial: path}}.
    """
    run = outcome.run
    paths: dict[str, Any] = {"best": None, "pareto": {}}
    if outcome.best is not None:
        source = outcome.checkpoints.get(outcome.best)
        if source is None or not os.path.isdir(source):
            raise ResumeMismatchError(f"the best trial {outcome.best} has no checkpoint at {source}")
        best_dir = os.path.join(run_dir, "best")
        if os.path.abspath(source) != os.path.abspath(best_dir):
            copy_model(source, best_dir)  # atomic: a kill leaves the old best/ or the new one
        paths["best"] = os.path.abspath(best_dir)
        _record(store, run, "best", paths["best"], outcome.best)
    for trial in outcome.pareto:
        path = outcome.checkpoints.get(trial)
        if path is not None:
            paths["pareto"][trial] = path
            _record(store, run, "pareto", path, trial)
    return paths


def _record(store: TrialStore, run: Run, kind: str, path: str, trial: int) -> None:
    if not any(a.path == path for a in store.artefacts(run, kind=kind, trial=trial)):
        store.add_artefact(run, kind, path, trial=trial)


def candidates_summary(outcome: SearchOutcome, objective: Objective) -> list[dict]:
    """One JSON-ready row per trial (what the summary table and W&B show)."""
    rows = []
    for r in outcome.results:
        c = outcome.candidate(r.trial)
        rows.append({
            "trial": r.trial, "status": r.status, "val_score": r.score, "error": r.error,
            "objective": r.objective, "num_params": r.num_params, "depth": c.arch.depth(), "t_tr": r.t_tr,
            "epochs": r.epochs, "parent": c.parent, "start": c.start, "pareto": r.trial in outcome.pareto,
            **{k: v for k, v in c.choices.items() if isinstance(v, (int, float, str, bool))},
        })
    return rows


__all__ = ["Budget", "CheckpointWriteError", "Interrupted", "MAX_ATTEMPTS", "ResumeMismatchError", "SearchOutcome",
           "candidates_summary", "export_artefacts", "run_search"]
