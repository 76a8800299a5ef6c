"""Faults in a run directory: a damaged store or checkpoint, two processes, a moved or copied run,
a full disk, Ctrl-C. The fast part of the fault suite (the default test run).

Each faulted run is resumed where the contract says it can be, and compared
with the uninterrupted reference run (the `reference` fixture) trial by
trial: the table counts trials lost and trials trained twice. Where the
contract says the run must stop instead, the test checks that nothing was
changed and that the message names the file.
"""

from __future__ import annotations

import os
import signal
import sqlite3

import numpy as np
import pytest

import faultlib
from faultlib import line_with, message


def _store(run_dir) -> str:
    return os.path.join(os.fspath(run_dir), faultlib.kill_resume.STORE_FILENAME)


# ----------------------------------------------------------------------------- a damaged store
def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _garble(path):
    # Bytes 100.. of page 1 (the schema table) and page 2: keeps SQLite's 100-byte
    # header, so the file still looks like a database until its contents are read.
    noise = np.random.default_rng(0).integers(0, 256, size=8092, dtype=np.uint8).tobytes()
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(noise)


def _empty(path):
    with open(path, "r+b") as f:
        f.truncate(0)


DAMAGED_STORE = {"truncated to half": _truncate, "garbled pages": _garble, "0 bytes": _empty}


@pytest.mark.parametrize("case", list(DAMAGED_STORE))
def test_damaged_store_stops_the_resume_and_is_left_as_it_was(tmp_path, reference, fault_row, case):
    row = fault_row("damaged store.sqlite", case)
    run_dir = faultlib.copy_run(reference.run_dir, tmp_path / "run")
    store = _store(run_dir)
    DAMAGED_STORE[case](store)
    before = faultlib.sha256(store)
    row.injected = 1
    proc = faultlib.search(run_dir, resume=True)
    said = message(proc.out)
    unchanged = os.path.exists(store) and faultlib.sha256(store) == before
    row.lost = 0 if unchanged else faultlib.TRIALS
    row.named = store in said
    row.survived = int(proc.rc != 0 and unchanged)
    row.note = f"exit {proc.rc}; store {'unchanged' if unchanged else 'CHANGED'}; " + line_with(said, store)
    assert proc.rc != 0, "the search went on with a damaged store: " + proc.tail()
    assert unchanged, f"{store} was changed or replaced: its history would be lost"
    assert row.named, f"the message does not name {store}: " + proc.tail()


# ----------------------------------------------------------------------------- a damaged checkpoint
def _best_trial_dir(reference, run_dir) -> str:
    return os.path.join(run_dir, "trials", str(reference.report["best_trial"]))


def test_corrupt_checkpoint_stops_the_resume_naming_the_file(tmp_path, reference, fault_row):
    row = fault_row("damaged checkpoint", "variables data file truncated (search resume)")
    run_dir = faultlib.copy_run(reference.run_dir, tmp_path / "run")
    model_dir = _best_trial_dir(reference, run_dir)
    victim = faultlib.largest_file(os.path.join(model_dir, "variables"))
    _truncate(victim)
    row.injected = 1
    proc = faultlib.search(run_dir, resume=True)
    said = message(proc.out)
    row.lost = len(faultlib.lost_in_store(reference, run_dir))
    row.named = model_dir in said and os.path.basename(victim) in said
    row.survived = int(proc.rc != 0)
    row.note = f"exit {proc.rc}; " + line_with(said, model_dir)
    assert proc.rc != 0, "a corrupt checkpoint was used: " + proc.tail()
    assert row.named, f"the error does not name {model_dir} and {os.path.basename(victim)}: " + proc.tail()


def _garble_arch(model_dir):
    with open(os.path.join(model_dir, "arch.json"), "w") as f:
        f.write('{"format": "nas.arch", "nodes": [')
    return "arch.json"


def _empty_metadata(model_dir):
    open(os.path.join(model_dir, "model.json"), "w").close()
    return "model.json"


DAMAGED_MODEL = {"arch.json cut short (nas-eval)": _garble_arch, "model.json 0 bytes (nas-eval)": _empty_metadata}


@pytest.mark.parametrize("case", list(DAMAGED_MODEL))
def test_corrupt_model_file_is_named_by_nas_eval(tmp_path, reference, fault_row, case):
    row = fault_row("damaged checkpoint", case)
    run_dir = faultlib.copy_run(reference.run_dir, tmp_path / "run")
    model_dir = _best_trial_dir(reference, run_dir)
    part = DAMAGED_MODEL[case](model_dir)
    row.injected = 1
    proc = faultlib.run([faultlib.PY, "-m", "nas.cli.evaluate", f"checkpoint={model_dir}",
                         "runtime.compilation_cache=null", f"hydra.run.dir={tmp_path / 'eval'}"])
    said = message(proc.out)
    row.named = os.path.join(model_dir, part) in said
    row.survived = int(proc.rc != 0)
    row.note = f"exit {proc.rc}; " + line_with(said, model_dir)
    assert proc.rc != 0, "a corrupt model directory was evaluated: " + proc.tail()
    assert row.named, f"the error does not name {os.path.join(model_dir, part)}: " + proc.tail()


# ----------------------------------------------------------------------------- an artefact outside the run
def test_artefact_path_outside_the_run_is_refused(tmp_path, reference, fault_row):
    row = fault_row("tampered store", "checkpoint path points into another run")
    run_dir = faultlib.copy_run(reference.run_dir, tmp_path / "run")
    best = reference.report["best_trial"]
    # Another run's intact checkpoint of the same trial: using it would be silent.
    outside = os.path.join(reference.run_dir, "trials", str(best))
    with sqlite3.connect(_store(run_dir)) as conn:
        changed = conn.execute("UPDATE artefacts SET path = ? WHERE kind = 'checkpoint' AND trial_index = ?",
                               (outside, best)).rowcount
    assert changed == 1, "the reference store records no checkpoint of its best trial"
    row.injected = 1
    proc = faultlib.search(run_dir, resume=True)
    said = message(proc.out)
    row.named = outside in said
    row.survived = int(proc.rc != 0)
    row.lost = 0
    row.note = f"exit {proc.rc}; " + line_with(said, outside)
    assert proc.rc != 0, f"the resume used {outside}, outside its run directory: " + proc.tail()
    assert row.named, f"the refusal does not name {outside}: " + proc.tail()


# ----------------------------------------------------------------------------- moved and copied runs
def _paths_outside(run_dir) -> list[str]:
    """Stored artefact paths that resolve outside `run_dir` (empty: all inside)."""
    return [p for _, p in faultlib.artefact_paths(run_dir)
            if not faultlib.inside(run_dir, faultlib.resolve_artefact(run_dir, p))]


def test_moved_run_resumes(tmp_path, reference, half_run, fault_row):
    row = fault_row("run directory", "moved, then resumed")
    first = faultlib.copy_run(half_run, tmp_path / "first")
    moved = str(tmp_path / "elsewhere" / "moved")
    os.makedirs(os.path.dirname(moved))
    os.rename(first, moved)
    row.injected = 1
    proc = faultlib.search(moved, resume=True)
    report = proc.report()
    harm = faultlib.damage(reference, moved, report)
    outside = _paths_outside(moved) if report else []
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = int(proc.rc == 0 and not harm.problems and not outside)
    row.note = ("; ".join(harm.problems + tuple(f"artefact outside: {p}" for p in outside))[:160]
                or "4/4 trials as the reference")
    assert proc.rc == 0, "the moved run did not resume: " + proc.tail()
    assert not harm.problems, harm.problems
    assert not outside, f"the store points outside the moved run: {outside}"


def test_copied_run_uses_its_own_checkpoints(tmp_path, reference, half_run, fault_row):
    row = fault_row("run directory", "copied, original poisoned, copy resumed")
    original = faultlib.copy_run(half_run, tmp_path / "original")
    copy = faultlib.copy_run(original, tmp_path / "copy")
    # Poison the original's checkpoints: a copy that read them would publish this in its best/.
    for trial in os.listdir(os.path.join(original, "trials")):
        with open(os.path.join(original, "trials", trial, "model.json"), "a") as f:
            f.write("\n")
    poisoned = faultlib.tree_digest(original)
    row.injected = 1
    proc = faultlib.search(copy, resume=True)
    report = proc.report()
    harm = faultlib.damage(reference, copy, report)
    problems = list(harm.problems)
    if report is not None:
        problems += [f"artefact outside the copy: {p}" for p in _paths_outside(copy)]
        best = os.path.join(copy, "trials", str(report["best_trial"]))
        if faultlib.tree_digest(os.path.join(copy, "best")) != faultlib.tree_digest(best):
            problems.append("the copy's best/ is not its own trials/<best>")
    if faultlib.tree_digest(original) != poisoned:
        problems.append("resuming the copy changed the original run directory")
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = int(proc.rc == 0 and not problems)
    row.note = "; ".join(problems)[:160] or "4/4 trials as the reference; original untouched"
    assert proc.rc == 0, "the copied run did not resume: " + proc.tail()
    assert not problems, problems


# ----------------------------------------------------------------------------- two processes on one run
def test_second_process_on_a_run_is_refused(tmp_path, reference, fault_row):
    row = fault_row("two processes", "resume=true while the first trains")
    run_dir = str(tmp_path / "run")
    fault_log, release = str(tmp_path / "faults.log"), str(tmp_path / "release")
    # The first process holds in trial 1's training until released: the second starts
    # at a known moment, whatever the machine's speed.
    first = faultlib.Background(faultlib.search_argv(run_dir, injected=True), str(tmp_path / "first.out"),
                                NAS_FAULT="hold-train:trial=1", NAS_FAULT_LOG=fault_log, NAS_FAULT_RELEASE=release)
    try:
        faultlib.wait_for(lambda: faultlib.fired(fault_log), 240, "the first process to train trial 1", alive=first)
        row.injected = 1
        second = faultlib.run(faultlib.search_argv(run_dir, resume=True), timeout=120)
        open(release, "w").close()
        done = first.finish()
    finally:
        faultlib.kill_all([first])
    said = message(second.out)
    report = done.report()
    harm = faultlib.damage(reference, run_dir, report)
    row.named = "in use" in said and str(first.pid) in said
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = int(second.rc != 0 and done.rc == 0 and not harm.problems)
    row.note = (f"second: exit {second.rc} in {second.seconds:.0f} s; first: exit {done.rc}; "
                + line_with(said, "in use"))
    assert second.rc != 0, "a second process ran in the same run directory: " + second.tail()
    assert row.named, f"the refusal does not say 'in use' with the holder's PID {first.pid}: " + second.tail()
    assert done.rc == 0, "the first process did not finish normally: " + done.tail()
    assert not harm.problems, harm.problems


# ----------------------------------------------------------------------------- a full disk (injected ENOSPC)
def test_disk_full_at_a_checkpoint_stops_naming_the_path_and_resumes_losing_nothing(tmp_path, reference, fault_row):
    row = fault_row("disk full", "ENOSPC from the 2nd checkpoint write (injected)")
    run_dir = str(tmp_path / "run")
    fault_log = str(tmp_path / "faults.log")
    row.injected = 1
    proc = faultlib.search(run_dir, fault="enospc-ckpt:nth=2", fault_log=fault_log)
    said = message(proc.out)
    rows = faultlib.trial_rows(run_dir)
    unfinished = [r for r in rows if r["status"] not in ("done", "diverged", "failed")]
    victim = unfinished[0]["index"] if unfinished else None
    path = os.path.join(run_dir, "trials", str(victim))
    requeued = victim is not None and unfinished[0]["status"] == "queued" and unfinished[0]["attempts"] == 0
    row.named = victim is not None and path in said
    resumed = faultlib.search(run_dir, resume=True)
    harm = faultlib.damage(reference, run_dir, resumed.report())
    row.lost, row.repeated = len(harm.lost), len(harm.repeated)
    row.survived = int(proc.rc != 0 and requeued and resumed.rc == 0 and not harm.problems)
    row.note = (f"exit {proc.rc}; trial {victim} " + (f"{unfinished[0]['status']}, attempts {unfinished[0]['attempts']}"
                                                      if unfinished else "-") + "; " + line_with(said, "trials/"))
    assert faultlib.fired(fault_log), "the ENOSPC was never injected (no 2nd checkpoint write?): " + proc.tail()
    assert proc.rc != 0, "the search went on after a checkpoint could not be written: " + proc.tail()
    assert row.named, f"the error does not name the checkpoint path {path}: " + proc.tail()
    assert requeued, f"the trial whose checkpoint failed is not queued with its attempt uncounted: {unfinished}"
    assert resumed.rc == 0, "the resume after freeing space failed: " + resumed.tail()
    assert not harm.problems, harm.problems


# ----------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_stops_cleanly_and_the_printed_command_resumes(tmp_path, reference, fault_row):
    row = fault_row("user interruption", "SIGINT while trial 1 trains (held after epoch 1)")
    got = faultlib.interrupt_and_resume(tmp_path, reference, signal.SIGINT, 130)
    row.injected, row.named, row.lost, row.repeated = got.signals, got.named, got.lost, got.repeated
    row.survived = got.clean if not got.problems else 0
    row.note = "; ".join(got.problems)[:160] or "exit 130, one resume line, resumed to the reference"
    assert not got.problems, got.problems
