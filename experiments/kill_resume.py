"""A search SIGKILLed at random moments resumes to the same trials and best as an uninterrupted one.

Runs ``nas-search <overrides>`` twice, as a user would (subprocesses):

- into ``OUT/whole``, uninterrupted;
- into ``OUT/killed``, killing it with SIGKILL at K seeded random moments
  (each: once at least a randomly drawn number of trials has finished and a
  trial is running, after a random delay, so a kill lands mid-trial, while
  a checkpoint is written or between trials) and restarting it with
  ``resume=true`` until it finishes.

It then reads both ``store.sqlite`` files through `nas.store` and checks that
the killed run holds every trial the whole run planned exactly once (same
indices, proposals and parents; none lost, none queued or running), with the
same validation scores, the same best trial and the same test accuracy. It
prints one verdict line and the best trial's test accuracy, parameter count
and search wall time, and writes ``OUT/kill_resume.json``. The exit status is
0 on PASS, 1 on FAIL. Usage:

    .venv/bin/python experiments/kill_resume.py --out runs/kill_resume/asha_digits \
        search=asha data=digits search.space.max_configs=9
    .venv/bin/python experiments/kill_resume.py --kills 4 --seed 1 --out runs/kr/hb search=hyperband

``OUT/whole`` and ``OUT/killed`` are deleted first: they are this script's own
output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere: nas.store comes from this checkout

from nas.store import FINAL_STATUSES, STORE_FILENAME, SqliteTrialStore  # noqa: E402

QUIET = ["logger=console", "progress=false"]
SCORE_ATOL = 1e-6  # CPU training is deterministic given (seed, trial): a resumed trial reproduces its score


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One nas-search process: how it ended and how long it ran."""

    returncode: int
    seconds: float
    killed: bool
    report: dict | None  # the final JSON line (results.json) of a process that finished


def command(overrides: Sequence[str], run_dir: str, resume: bool) -> list[str]:
    return [sys.executable, "-m", "nas.cli.search", *QUIET, *overrides, f"hydra.run.dir={run_dir}",
            *(["resume=true"] if resume else [])]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), WANDB_SILENT="true")


def progress(run_dir: str) -> tuple[int, bool]:
    """(finished trials, whether one is running) from a read-only look at a live store.

    Read-only on purpose: opening `SqliteTrialStore` would create the file
    (and its schema) before the search does, and nas-search refuses a
    directory that already holds a store unless resume=true.
    """
    path = os.path.join(run_dir, STORE_FILENAME)
    if not os.path.exists(path):
        return 0, False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT status FROM trials").fetchall()
    except sqlite3.OperationalError:  # the schema is being created, or a write holds the lock
        return 0, False
    return sum(r[0] in FINAL_STATUSES for r in rows), any(r[0] == "running" for r in rows)


def run_to_end(overrides: Sequence[str], run_dir: str, resume: bool, timeout: float) -> Invocation:
    start = time.perf_counter()
    proc = subprocess.run(command(overrides, run_dir, resume), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        return Invocation(proc.returncode, seconds, False, None)
    return Invocation(0, seconds, False, json.loads(proc.stdout.strip().splitlines()[-1]))


def run_and_kill(overrides: Sequence[str], run_dir: str, finished_at_least: int, delay: float,
                 timeout: float) -> Invocation:
    """Starts (or resumes) the search and SIGKILLs it `delay` seconds after a trial is running with at least
    `finished_at_least` finished; a search that ends first is left to finish."""
    resume = os.path.exists(os.path.join(run_dir, STORE_FILENAME))
    os.makedirs(run_dir, exist_ok=True)
    # stdout to a file, not a pipe: a pipe nobody reads while we poll could fill and stall the search
    log = open(os.path.join(run_dir, f"invocation-{time.time_ns()}.out"), "w+")
    start = time.perf_counter()
    proc = subprocess.Popen(command(overrides, run_dir, resume), cwd=REPO, env=_env(), stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    try:
        while time.perf_counter() - start < timeout and proc.poll() is None:
            finished, running = progress(run_dir)
            if running and finished >= finished_at_least:
                time.sleep(delay)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return Invocation(proc.returncode, time.perf_counter() - start, True, None)
                break
            time.sleep(0.02)
        proc.wait(timeout=max(timeout - (time.perf_counter() - start), 1.0))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        stdout = log.read()
        log.close()
    report = json.loads(stdout.strip().splitlines()[-1]) if proc.returncode == 0 and stdout.strip() else None
    return Invocation(proc.returncode, time.perf_counter() - start, False, report)


def kill_moments(total: int, kills: int, max_delay: float, seed: int) -> list[tuple[int, float]]:
    """K (trials finished at least, delay in seconds) pairs, thresholds ascending, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    span = max(total - 1, 1)
    thresholds = np.sort(rng.choice(span, size=kills, replace=kills > span))
    return [(int(t), float(rng.uniform(0.0, max_delay))) for t in thresholds]


def store_view(run_dir: str) -> dict:
    """What the checks need from a finished run's store, read through `nas.store`."""
    with SqliteTrialStore.in_run_dir(run_dir) as store:
        runs = store.runs()
        run = runs[-1]
        state = store.strategy_state(run)
        best = store.best(run)
        checkpoints = [a.trial for a in store.artefacts(run, kind="checkpoint")]
        return {"runs": len(runs), "trials": store.trials(run), "counts": store.counts(run),
                "best": None if best is None else (best.index, best.best_score),
                "elapsed": json.loads(state.state.decode())["elapsed"] if state is not None else math.nan,
                "checkpoints": checkpoints}


def compare(whole: dict, killed: dict, whole_report: dict, killed_report: dict) -> list[str]:
    """Every way the killed run differs from the whole one (empty: it resumed correctly)."""
    problems = []
    a, b = whole["trials"], killed["trials"]
    if killed["runs"] != 1:
        problems.append(f"the killed store holds {killed['runs']} runs, not 1 (a resume started a new run)")
    indices = [t.index for t in b]
    if indices != list(range(len(a))):
        lost = sorted(set(range(len(a))) - set(indices))
        extra = sorted(set(indices) - set(range(len(a))))
        problems.append(f"trial indices differ from the whole run's 0..{len(a) - 1}: lost {lost}, extra {extra}")
    unfinished = [(t.index, t.status) for t in b if t.status not in FINAL_STATUSES]
    if unfinished or killed["counts"].queued or killed["counts"].running:
        problems.append(f"trials left unfinished: {unfinished}")
    by_index = {t.index: t for t in b}
    for ta in a:
        tb = by_index.get(ta.index)
        if tb is None:
            continue  # reported as lost above
        if (ta.arch_hash, ta.hyperparameters, ta.parent) != (tb.arch_hash, tb.hyperparameters, tb.parent):
            problems.append(f"trial {ta.index}: the killed run proposed something else (arch, settings or parent)")
        elif ta.status != tb.status:
            problems.append(f"trial {ta.index}: status {tb.status} vs {ta.status} uninterrupted")
        elif (ta.best_score is None) != (tb.best_score is None) or (
                ta.best_score is not None and abs(ta.best_score - tb.best_score) > SCORE_ATOL):
            problems.append(f"trial {ta.index}: val score {tb.best_score} vs {ta.best_score} uninterrupted")
    duplicated = sorted({t for t in killed["checkpoints"] if killed["checkpoints"].count(t) > 1})
    if duplicated:
        problems.append(f"trials checkpointed twice: {duplicated}")
    kb, wb = killed["best"], whole["best"]
    if (kb is None) != (wb is None) or (kb is not None and (kb[0] != wb[0] or abs(kb[1] - wb[1]) > SCORE_ATOL)):
        problems.append(f"store best (trial, val score) {killed['best']} vs {whole['best']} uninterrupted")
    for key in ("best_trial", "test_accuracy", "test_mse"):
        va, vb = whole_report.get(key), killed_report.get(key)
        if (va is None) != (vb is None) or (va is not None and abs(float(va) - float(vb)) > SCORE_ATOL):
            problems.append(f"reported {key} {vb} vs {va} uninterrupted")
    return problems


def label(overrides: Sequence[str]) -> tuple[str, str]:
    found = dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("search.", "data.")))
    return found.get("search", "random"), found.get("data", "digits")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory (its whole/ and killed/ are replaced)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs to deliver (K)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--max-delay", type=float, default=1.0,
                        help="seconds after the threshold at most before a kill")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per nas-search process")
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if "=" not in o or o.startswith("hydra.run.dir=") or o.startswith("resume=")]
    if bad:
        parser.error(f"overrides must be key=value nas-search overrides (not hydra.run.dir or resume): {bad}")
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    strategy, data = label(overrides)
    whole_dir, killed_dir = (os.path.abspath(os.path.join(args.out, d)) for d in ("whole", "killed"))
    for d in (whole_dir, killed_dir):
        shutil.rmtree(d, ignore_errors=True)

    whole_run = run_to_end(overrides, whole_dir, False, args.timeout)
    if whole_run.returncode != 0:
        raise SystemExit(f"FAIL {strategy}/{data}: the uninterrupted search exited with {whole_run.returncode}")
    whole = store_view(whole_dir)

    invocations = []
    for threshold, delay in kill_moments(len(whole["trials"]), args.kills, args.max_delay, args.seed):
        invocations.append(run_and_kill(overrides, killed_dir, threshold, delay, args.timeout))
        if not invocations[-1].killed:
            break  # it finished before the moment came
    last = invocations[-1]
    if not last.killed and last.returncode != 0:  # it died by itself: a crash, not a kill
        raise SystemExit(f"FAIL {strategy}/{data}: a resumed search exited with {last.returncode}")
    final = last if last.report is not None else None
    if final is None:
        final = run_to_end(overrides, killed_dir, True, args.timeout)
        invocations.append(final)
    if final.returncode != 0:
        raise SystemExit(f"FAIL {strategy}/{data}: the resumed search exited with {final.returncode}")
    killed = store_view(killed_dir)
    kills = sum(i.killed for i in invocations)
    reclaimed = [t.index for t in killed["trials"] if t.attempts > 1]
    problems = compare(whole, killed, whole_run.report, final.report)
    if kills == 0:
        problems.append("no kill landed: the search finished first (lower the thresholds or use more trials)")

    report = whole_run.report
    summary = {
        "strategy": strategy, "data": data, "overrides": list(overrides), "verdict": "FAIL" if problems else "PASS",
        "problems": problems, "trials": len(whole["trials"]), "kills": kills, "reclaimed_trials": reclaimed,
        "invocations": len(invocations), "best_trial": report.get("best_trial"),
        "val_score": report.get("val_score"), "test_accuracy": report.get("test_accuracy"),
        "num_params": report.get("num_params"), "wall_seconds": report.get("wall_seconds"),
        "search_seconds": whole["elapsed"], "killed_search_seconds": killed["elapsed"],
        "killed_wall_seconds": sum(i.seconds for i in invocations), "whole_dir": whole_dir,
        "killed_dir": killed_dir,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "kill_resume.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    print(f"{summary['verdict']} {strategy}/{data}: {summary['trials']} trials; {kills} SIGKILLs "
          f"({len(reclaimed)} trials re-claimed: {reclaimed}), {len(invocations)} invocations; "
          + ("every planned trial exactly once, same scores and best trial "
             f"{summary['best_trial']} as uninterrupted" if not problems else "; ".join(problems)))
    metric = "test_accuracy" if report.get("test_accuracy") is not None else "test_mse"
    best = (f"best trial {summary['best_trial']}: {metric} {report[metric]:.4f}, {summary['num_params']:,} params"
            if summary["best_trial"] is not None else "no finite trial")
    print(f"{best}; search wall {summary['wall_seconds']:.1f} s uninterrupted "
          f"({summary['killed_wall_seconds']:.1f} s over the killed run's invocations)", flush=True)
    return summary


if __name__ == "__main__":
    raise SystemExit(0 if main()["verdict"] == "PASS" else 1)
