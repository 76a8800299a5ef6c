"""SIGKILL campaigns and the long injections (the slow part of the fault suite: `pytest -m slow tests/faults`).

- SIGKILL at seeded random moments (`kill_resume.kill_moments` / `run_and_kill`:
  mid-trial, mid-checkpoint or between trials, whatever the moment hits);
- SIGKILL at exact moments through tests/faults/inject.py: before, during and
  after a checkpoint's variables are written, half way through the copy to
  best/, half way through writing results.json and c0.json;
- three SIGKILLs in the training of one trial (given up loudly with
  search.max_attempts=3, completed with 4);
- SIGTERM at a random moment;
- a real full disk (a small tmpfs, where this machine lets us mount one).

After each, the run is resumed to completion and compared with the
uninterrupted reference run: no trial lost, none trained twice.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess

import pytest

import faultlib
from faultlib import line_with, message

pytestmark = pytest.mark.slow

KILLED = -signal.SIGKILL


def _finish(run_dir, *extra: str) -> faultlib.Proc:
    return faultlib.search(run_dir, *extra, resume=True)


def _checkpoint_problems(run_dir) -> list[str]:
    """Every recorded checkpoint of a finished run must load; best/ must be its best trial's copy."""
    problems = []
    for kind, stored in faultlib.artefact_paths(run_dir):
        if kind not in ("checkpoint", "best"):
            continue
        path = faultlib.resolve_artefact(run_dir, stored)
        error = faultlib.load_error(path)
        if error:
            problems.append(f"{kind} {stored} does not load: {error[:200]}")
    return problems


def _best_is_copy(run_dir, report) -> bool:
    best = os.path.join(run_dir, "trials", str(report["best_trial"]))
    return faultlib.tree_digest(os.path.join(run_dir, "best")) == faultlib.tree_digest(best)


# ----------------------------------------------------------------------------- random moments
CAMPAIGN_SEEDS = (0, 1, 2)
KILLS_PER_CAMPAIGN = 3
MAX_DELAY_S = 1.5  # a trial takes ~2 s: a kill lands anywhere in it, in its checkpoint, or between trials


@pytest.mark.parametrize("seed", CAMPAIGN_SEEDS)
def test_sigkill_at_random_moments_loses_nothing(tmp_path, reference, fault_row, seed):
    row = fault_row("SIGKILL, random moment", f"campaign seed {seed}: {KILLS_PER_CAMPAIGN} kills")
    run_dir = str(tmp_path / "killed")
    overrides = list(faultlib.CORE)
    moments = faultlib.kill_resume.kill_moments(faultlib.TRIALS, KILLS_PER_CAMPAIGN, MAX_DELAY_S, seed)
    invocations = []
    for threshold, delay in moments:
        invocations.append(faultlib.kill_resume.run_and_kill(overrides, run_dir, threshold, delay,
                                                              faultlib.CLI_TIMEOUT))
        row.injected += invocations[-1].killed
        if not invocations[-1].killed:
            break  # the search finished before this moment came
    crashed = [i.returncode for i in invocations if not i.killed and i.returncode != 0]
    final = _finish(run_dir)
    harm = faultlib.damage(reference, run_dir, final.report())
    problems = list(harm.problems) + (_checkpoint_problems(run_dir) if final.rc == 0 else [])
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = row.injected if final.rc == 0 and not problems and not crashed else 0
    moments_text = ", ".join(f"{t} done+{d:.2f}s" for t, d in moments)
    row.note = f"moments: {moments_text}; " + ("; ".join(problems)[:100] if problems else "4/4 trials as the reference")
    assert not crashed, f"a resumed search crashed by itself (exit {crashed})"
    assert row.injected >= 2, "fewer than 2 kills landed: the search finished first"
    assert final.rc == 0, "the final resume failed: " + final.tail()
    assert not problems, problems


# ----------------------------------------------------------------------------- checkpoint writes
CHECKPOINT_MOMENTS = {
    "before": "before orbax writes trial variables (arch.json, model.json written)",
    "during": "while orbax's asynchronous commit of the variables runs",
    "after": "after save_model returned, before the store records the checkpoint",
}


@pytest.mark.parametrize("when", list(CHECKPOINT_MOMENTS))
def test_sigkill_during_a_checkpoint_write_loses_nothing(tmp_path, reference, fault_row, when):
    row = fault_row("SIGKILL in a checkpoint write", CHECKPOINT_MOMENTS[when])
    run_dir, fault_log = str(tmp_path / "run"), str(tmp_path / "faults.log")
    # nth=2: trial 1's checkpoint, written while trial 0's is already on disk.
    killed = faultlib.search(run_dir, fault=f"kill-ckpt:when={when}:nth=2", fault_log=fault_log)
    row.injected = int(killed.rc == KILLED and bool(faultlib.fired(fault_log)))
    rows = faultlib.trial_rows(run_dir)
    unfinished = [r["index"] for r in rows if r["status"] not in ("done", "diverged", "failed")]
    trials_dir = os.path.join(run_dir, "trials")
    published = [d for d in os.listdir(trials_dir) if not d.startswith(".")] if os.path.isdir(trials_dir) else []
    half_written = [d for d in published if not faultlib.is_complete_model(os.path.join(trials_dir, d))]
    final = _finish(run_dir)
    harm = faultlib.damage(reference, run_dir, final.report())
    problems = list(harm.problems) + (_checkpoint_problems(run_dir) if final.rc == 0 else [])
    if half_written:
        problems.append(f"after the kill trials/{half_written} were half written under their final name")
    leftovers = sorted(d for d in os.listdir(trials_dir) if d.startswith(".")) if os.path.isdir(trials_dir) else []
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = int(row.injected and final.rc == 0 and not problems)
    row.note = (f"killed with trials {unfinished} unfinished; " + ("; ".join(problems)[:120] if problems else
                "4/4 trials as the reference, every checkpoint loads")
                + (f"; hidden leftovers in trials/: {leftovers}" if leftovers else ""))
    assert row.injected, "the kill did not happen in the checkpoint write: " + killed.tail()
    assert final.rc == 0, "the resume failed: " + final.tail()
    assert not problems, problems


# ----------------------------------------------------------------------------- best/
@pytest.mark.parametrize("case", ["first export (no best/ yet)", "re-export over an existing best/"])
def test_sigkill_while_best_is_copied_leaves_a_whole_best(tmp_path, reference, fault_row, case):
    row = fault_row("SIGKILL in the best/ copy", case)
    fault_log = str(tmp_path / "faults.log")
    if case.startswith("first"):
        run_dir, resume, old = str(tmp_path / "run"), False, None
    else:
        run_dir, resume = faultlib.copy_run(reference.run_dir, tmp_path / "run"), True
        old = faultlib.tree_digest(os.path.join(reference.run_dir, "best"))
    killed = faultlib.search(run_dir, resume=resume, fault="kill-best:nth=2", fault_log=fault_log)
    row.injected = int(killed.rc == KILLED and bool(faultlib.fired(fault_log)))
    best = os.path.join(run_dir, "best")
    if old is None:
        whole = not os.path.lexists(best) or faultlib.load_error(best) is None
    else:
        whole = os.path.isdir(best) and faultlib.tree_digest(best) == old
    final = _finish(run_dir)
    report = final.report()
    harm = faultlib.damage(reference, run_dir, report)
    problems = list(harm.problems)
    if not whole:
        problems.append("after the kill best/ was half copied" if old is None
                        else "after the kill best/ was not the old best/")
    if report is not None and not _best_is_copy(run_dir, report):
        problems.append("after the resume best/ differs from trials/<best>")
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = int(row.injected and final.rc == 0 and not problems)
    row.note = "; ".join(problems)[:160] or "best/ whole after the kill and after the resume"
    assert row.injected, "the kill did not happen while best/ was copied: " + killed.tail()
    assert final.rc == 0, "the resume failed: " + final.tail()
    assert not problems, problems


# ----------------------------------------------------------------------------- results.json and c0.json
def test_sigkill_while_results_json_is_written_leaves_it_whole(tmp_path, reference, fault_row):
    row = fault_row("SIGKILL mid-write", "results.json rewritten by a resume")
    run_dir, fault_log = faultlib.copy_run(reference.run_dir, tmp_path / "run"), str(tmp_path / "faults.log")
    path = os.path.join(run_dir, "results.json")
    killed = faultlib.search(run_dir, resume=True, fault="kill-write:name=results.json", fault_log=fault_log)
    row.injected = int(killed.rc == KILLED and bool(faultlib.fired(fault_log)))
    try:
        with open(path) as f:
            whole = json.load(f).get("best_trial") == reference.report["best_trial"]
    except (OSError, ValueError):
        whole = False
    final = _finish(run_dir)
    harm = faultlib.damage(reference, run_dir, final.report())
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = int(row.injected and whole and final.rc == 0 and not harm.problems)
    row.note = "results.json " + ("whole" if whole else "HALF WRITTEN") + " after the kill"
    assert row.injected, "the kill did not happen while results.json was written: " + killed.tail()
    assert whole, f"{path} was left half written"
    assert final.rc == 0 and not harm.problems, final.tail() + str(harm.problems)


def test_sigkill_while_c0_json_is_written_leaves_a_resumable_run(tmp_path, reference, fault_row):
    row = fault_row("SIGKILL mid-write", "c0.json (search.objective.w_c=1)")
    run_dir, fault_log = str(tmp_path / "run"), str(tmp_path / "faults.log")
    extra = ("search.objective.w_c=1", "search.objective.complexity=num_params")
    killed = faultlib.search(run_dir, *extra, fault="kill-write:name=c0.json", fault_log=fault_log)
    row.injected = int(killed.rc == KILLED and bool(faultlib.fired(fault_log)))
    path = os.path.join(run_dir, "c0.json")
    try:
        with open(path) as f:
            whole = json.load(f)["c_0"] > 0
    except FileNotFoundError:
        whole = True  # not published yet: the resume measures c_0 again
    except (OSError, ValueError, KeyError, TypeError):
        whole = False
    final = _finish(run_dir, *extra)
    # The objective (and so the best trial) depends on w_c; the proposals and scores do not.
    harm = faultlib.damage(reference, run_dir, final.report(), per_trial=True)
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = int(row.injected and whole and final.rc == 0 and not harm.problems)
    row.note = "c0.json " + ("whole or absent" if whole else "HALF WRITTEN") + " after the kill"
    assert row.injected, "the kill did not happen while c0.json was written: " + killed.tail()
    assert whole, f"{path} was left half written"
    assert final.rc == 0 and not harm.problems, final.tail() + str(harm.problems)


# ----------------------------------------------------------------------------- three kills in one trial
@pytest.mark.parametrize("max_attempts", [3, 4])
def test_three_kills_in_one_trial(tmp_path, reference, fault_row, max_attempts):
    outcome = "given up loudly" if max_attempts == 3 else "completed by the 4th attempt"
    row = fault_row("3 SIGKILLs in one trial", f"search.max_attempts={max_attempts}: {outcome}")
    run_dir, fault_log = str(tmp_path / "run"), str(tmp_path / "faults.log")
    setting = f"search.max_attempts={max_attempts}"
    for attempt in range(3):
        killed = faultlib.search(run_dir, setting, resume=attempt > 0, fault="kill-train:trial=1",
                                 fault_log=fault_log)
        assert killed.rc == KILLED, f"attempt {attempt + 1} was not killed in trial 1's training: " + killed.tail()
        row.injected += 1
    assert len(faultlib.fired(fault_log)) == 3
    final = _finish(run_dir, setting)
    report = final.report()
    said = message(final.out)
    if max_attempts == 3:
        harm = faultlib.damage(reference, run_dir, report, exclude=(1,))
        trial = next((r for r in faultlib.trial_rows(run_dir) if r["index"] == 1), None)
        given_up = (report is not None and report.get("gave_up") == 1 and trial is not None
                    and trial["status"] == "failed" and "attempt" in (trial["error"] or ""))
        warning = [line for line in said.splitlines() if "warning" in line.lower() and "1" in line
                   and "attempt" in line]
        row.named = bool(warning)
        ok = final.rc == 0 and given_up and not harm.problems
        row.note = (f"trial 1: {trial and trial['status']}, error {trial and (trial['error'] or '')[:60]!r}; "
                    f"gave_up={report and report.get('gave_up')}; " + line_with(said, "warning")[:60])
    else:
        harm = faultlib.damage(reference, run_dir, report)
        ok = final.rc == 0 and not harm.problems
        row.note = "; ".join(harm.problems)[:160] or "trial 1 done in attempt 4, 4/4 trials as the reference"
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = row.injected if ok else 0
    assert final.rc == 0, "the final resume failed: " + final.tail()
    assert not harm.problems, harm.problems
    if max_attempts == 3:
        assert given_up, f"trial 1 was not given up with its reason stored and gave_up=1 in results: {row.note}"
        assert row.named, "no warning names the given-up trial and its attempts: " + final.tail()


# ----------------------------------------------------------------------------- SIGINT / SIGTERM at random moments
INTERRUPTS = 6  # per signal; a stop inside JAX has gone wrong in about 1 of 3 tries, so 6 catch it ~90% of runs


@pytest.mark.parametrize("name,expected_rc", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupt_at_random_moments_stops_cleanly_and_resumes(tmp_path, reference, fault_row, name, expected_rc):
    row = fault_row("user interruption", f"{name} at {INTERRUPTS} random moments, one run")
    moments = faultlib.kill_resume.kill_moments(faultlib.TRIALS, INTERRUPTS, MAX_DELAY_S, seed=expected_rc)
    got = faultlib.interrupt_and_resume(tmp_path, reference, getattr(signal, name), expected_rc, moments=moments)
    row.injected, row.named, row.lost, row.repeated = got.signals, got.named, got.lost, got.repeated
    row.survived = got.clean if not (got.lost or got.repeated) else 0
    row.note = "; ".join(got.problems)[:160] or f"exit {expected_rc}, one resume line each, resumed to the reference"
    assert got.signals >= 3, f"only {got.signals} signals landed before the search finished"
    assert not got.problems, got.problems


# ----------------------------------------------------------------------------- a real full disk
def _mount_tmpfs(where: str, size: str) -> str | None:
    """Mounts a tmpfs; returns why not when this machine does not allow it."""
    if os.geteuid() != 0:
        return "not root"
    os.makedirs(where, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where], capture_output=True,
                          text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"mount exited {proc.returncode}")


def _fill(folder: str) -> str:
    """Writes a ballast file until the file system is full; returns its path."""
    path = os.path.join(folder, "ballast")
    block = b"\0" * (64 << 10)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return path


def test_real_full_disk_stops_naming_the_path_and_resumes_losing_nothing(tmp_path, reference, fault_row):
    row = fault_row("disk full", "a 64 MB tmpfs filled while trial 1 trains")
    mount = str(tmp_path / "mnt")
    why = _mount_tmpfs(mount, "64m")
    if why is not None:
        row.note = f"not run: cannot mount a tmpfs here ({why}); the injected ENOSPC row covers it"
        pytest.skip(row.note)
    try:
        run_dir, fault_log, release = os.path.join(mount, "run"), str(tmp_path / "faults.log"), str(tmp_path / "go")
        proc = faultlib.Background(faultlib.search_argv(run_dir, injected=True), str(tmp_path / "first.out"),
                                   NAS_FAULT="hold-train:trial=1", NAS_FAULT_LOG=fault_log, NAS_FAULT_RELEASE=release)
        try:
            faultlib.wait_for(lambda: faultlib.fired(fault_log), 240, "trial 1 to train", alive=proc)
            ballast = _fill(mount)
            row.injected = 1
            open(release, "w").close()
            stopped = proc.finish()
        finally:
            faultlib.kill_all([proc])
        said = message(stopped.out)
        rows = faultlib.trial_rows(run_dir)
        counted = [r["index"] for r in rows if r["status"] != "done" and r["attempts"] != 0]
        row.named = run_dir in said and ("No space" in said or "ENOSPC" in said or "full" in said)
        os.remove(ballast)  # free the space, as the user would
        final = _finish(run_dir)
        harm = faultlib.damage(reference, run_dir, final.report())
        row.lost, row.repeated = len(harm.lost), len(harm.repeated)
        # With the disk full, SQLite may fail to record the release too (after the store gives back its
        # journal's space and tries again); then the attempt counts, and the message must say so.
        honest = not counted or "counts toward search.max_attempts" in said
        row.survived = int(stopped.rc != 0 and honest and final.rc == 0 and not harm.problems)
        row.note = (f"exit {stopped.rc}; attempts counted for {counted}; " + line_with(said, "No space")[:100])
        assert stopped.rc != 0, "the search went on with a full disk: " + stopped.tail()
        assert row.named, f"the error does not name a path in {run_dir} and the full disk: " + stopped.tail()
        assert honest, f"a trial stopped by the full disk had its attempt counted without a word: {rows}"
        assert final.rc == 0, "the resume after freeing space failed: " + final.tail()
        assert not harm.problems, harm.problems
    finally:
        subprocess.run(["umount", "-l", mount], capture_output=True)
