"""A search killed with SIGKILL at random moments mid-trial resumes with no trial lost or repeated.

Runs `nas-search` in subprocesses on digits: a small Deep-n-Cheap search
(BO, grid, BO), DREAM's feedback-driven search and a random search that
DREAM repairs; kills it while a trial is training, resumes it with
`resume=true` until it finishes, and compares the store with an
uninterrupted run of the same command.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_DNC = [
    "search=dnc", "search.space.stage1_trials=4", "search.space.n_initial=2", "search.space.n_candidates=100",
    "search.space.mlp_width=[16,64]", "search.space.mlp_dropout_grid=[0.0,0.3]", "search.space.stage3_trials=3",
    "search.space.batch_size=64", "search.space.batch_range=[32,128]", "train.epochs=2", "logger=console",
    "progress=false", "runtime.compilation_cache=null",
]
COMMON = ["logger=console", "progress=false", "runtime.compilation_cache=null"]
# name -> (settings, trials); a DREAM table is written per test (tests/test_dream_search.py's)
SEARCHES = {
    "dnc": (SMALL_DNC, 4 + 2 + 3),
    "dream": (["search=dream", "search.space.family=mlp", "search.space.hidden=[32]", "search.space.initial_epochs=3",
               "search.space.epochs=2", "search.max_trials=6", *COMMON], 6),
    "random+dream": (["search=random", "search.repair=dream", "search.space.families=[mlp]",
                      "search.space.mlp_width=[16,32]", "search.space.learning_rate=[1e-7,1e-5]", "train.epochs=3",
                      "search.max_trials=6", *COMMON], 6),
}


def _command(run_dir, settings, *extra):
    return [sys.executable, "-m", "nas.cli.search", *settings, f"hydra.run.dir={run_dir}", *extra]


def _env():
    return dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true")


def _trials(run_dir):
    path = os.path.join(run_dir, "store.sqlite")
    if not os.path.exists(path):
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT trial_index, status, attempts, arch_hash, hyperparameters, best_score "
                                "FROM trials ORDER BY trial_index").fetchall()
    except sqlite3.OperationalError:  # the schema is still being created
        return []


def _run_to_end(run_dir, settings, *extra):
    proc = subprocess.run(_command(run_dir, settings, *extra), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _kill_mid_trial(run_dir, settings, finished_at_least, delay, extra):
    """Starts the search, waits until a trial is running after `finished_at_least` have finished, SIGKILLs it."""
    proc = subprocess.Popen(_command(run_dir, settings, *extra), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            rows = _trials(run_dir)
            finished = sum(r[1] in ("done", "diverged", "failed") for r in rows)
            if any(r[1] == "running" for r in rows) and finished >= finished_at_least:
                time.sleep(delay)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return True
                break
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# Slow set (79 s on 2 cores): the default set keeps resume covered by tests/faults (SIGINT, full disk,
# moved run directory) and test_engine's continued search; this one SIGKILLs at random moments.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_sigkilled_search_resumes_with_every_trial_exactly_once(tmp_path, name):
    settings, total = SEARCHES[name]
    if "dream" in name:
        from tests.test_dream_search import _rows, _table

        settings = [*settings, f"dream.priorities={_table(tmp_path / 'table.json', _rows())}"]
    reference = _run_to_end(tmp_path / "whole", settings)
    assert reference["trials"] == total and reference["counts"]["done"] == total

    run_dir = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills = 0
    for finished_at_least in sorted(rng.choice(total - 1, size=3, replace=False)):
        kills += _kill_mid_trial(run_dir, settings, int(finished_at_least), float(rng.uniform(0.0, 0.3)),
                                 ["resume=true"] if os.path.exists(run_dir / "store.sqlite") else [])
    assert kills >= 2, "the search finished before it could be killed mid-trial"
    interrupted = [r for r in _trials(run_dir) if r[1] != "done"]
    assert interrupted, "a SIGKILL mid-trial leaves that trial running"
    resumed = _run_to_end(run_dir, settings, "resume=true")

    whole, killed = _trials(tmp_path / "whole"), _trials(run_dir)
    assert [r[0] for r in killed] == list(range(total))  # each planned trial exactly once
    assert all(r[1] == "done" for r in killed)
    assert [(r[3], r[4]) for r in killed] == [(r[3], r[4]) for r in whole]  # the same proposals, in order
    assert max(r[2] for r in killed) >= 2  # some trial was claimed again after a kill
    np.testing.assert_allclose([r[5] for r in killed], [r[5] for r in whole], atol=1e-6)
    assert resumed["best_trial"] == reference["best_trial"]
    assert resumed["val_score"] == pytest.approx(reference["val_score"], abs=1e-6)
    assert resumed["test_accuracy"] == pytest.approx(reference["test_accuracy"], abs=1e-6)
