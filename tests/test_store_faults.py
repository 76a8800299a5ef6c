"""Issue 12's store defects, each with its regression test.

#3 graceful interruptions are released, not counted; #4 artefact paths are
relative to the run directory and nothing outside it is read; #5 one process
per run directory; #9 an empty, truncated or garbled store is named and never
started over.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from nas.store import (
    DONE,
    QUEUED,
    STORE_FILENAME,
    ArtefactPathError,
    CorruptStoreError,
    InvalidTransitionError,
    PlannedTrial,
    RunLock,
    RunLockedError,
    SqliteTrialStore,
    TrialOutcome,
)

CONFIG = {"train": {"epochs": 3}}
DATASET = {"name": "digits"}
CODE = {"nas": "test"}


def _filled_store(directory) -> str:
    """A store with one finished trial (and its checkpoint artefact); returns its path."""
    with SqliteTrialStore.in_run_dir(directory) as store:
        run = store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE)
        store.enqueue(run, [PlannedTrial(i, "{}", "h") for i in range(3)])
        store.finish(run, store.claim_next(run).index, TrialOutcome(DONE, best_score=0.5))
        os.makedirs(os.path.join(directory, "trials", "0"))
        store.add_artefact(run, "checkpoint", os.path.join(directory, "trials", "0"), trial=0)
    return os.path.join(directory, STORE_FILENAME)


# ------------------------------------------------------------------ #3 release
def test_release_requeues_without_counting_the_attempt(tmp_path):
    with SqliteTrialStore.in_run_dir(tmp_path) as store:
        run = store.open_run(CONFIG, DATASET, "random", 0, code_version=CODE)
        store.enqueue(run, [PlannedTrial(0, "{}", "h")])
        for _ in range(5):  # five Ctrl-Cs in a row never exhaust max_attempts
            claimed = store.claim_next(run)
            assert claimed.attempts == 1
            released = store.release(run, 0, "interrupted by the user (SIGINT)", attempt=claimed.attempts)
            assert (released.status, released.attempts) == (QUEUED, 0)
            assert "SIGINT" in released.error
            assert store.requeue_interrupted(run, max_attempts=1) == ()
        claimed = store.claim_next(run)
        with pytest.raises(InvalidTransitionError, match="stale"):
            store.release(run, 0, "x", attempt=claimed.attempts + 1)
        store.finish(run, 0, TrialOutcome(DONE, best_score=0.1))
        with pytest.raises(InvalidTransitionError, match="only a running trial"):
            store.release(run, 0, "x")


# ------------------------------------------------------------------ #4 artefact paths
def test_artefact_paths_are_stored_relative_and_read_back_under_the_current_directory(tmp_path):
    original = tmp_path / "run"
    path = _filled_store(str(original))
    raw = sqlite3.connect(path).execute("SELECT path FROM artefacts").fetchall()
    assert raw == [(os.path.join("trials", "0"),)]
    moved = tmp_path / "moved"
    shutil.move(str(original), str(moved))
    copied = tmp_path / "copied"
    shutil.copytree(str(moved), str(copied))
    for directory in (moved, copied):  # each reads its own files, never the other's
        with SqliteTrialStore.in_run_dir(directory) as store:
            (artefact,) = store.artefacts(store.runs()[0])
            assert artefact.path == os.path.join(str(directory), "trials", "0")


def test_an_artefact_outside_the_run_directory_is_refused(tmp_path):
    path = _filled_store(str(tmp_path / "run"))
    with SqliteTrialStore(path) as store:
        run = store.runs()[0]
        for outside in ("/etc", str(tmp_path / "elsewhere"), "../elsewhere", "trials/../../elsewhere"):
            with pytest.raises(ArtefactPathError, match="outside the run directory"):
                store.add_artefact(run, "best", outside, trial=0)
    # A path edited into the file (or an absolute one written by an older
    # version, from another directory) is refused when read, not followed.
    sqlite3.connect(path, isolation_level=None).execute("UPDATE artefacts SET path = '/etc'")
    with SqliteTrialStore(path) as store, pytest.raises(ArtefactPathError, match="/etc.*outside"):
        store.artefacts(store.runs()[0])


# ------------------------------------------------------------------ #9 damaged stores
def _assert_refused_and_untouched(path, match):
    before = open(path, "rb").read()
    with pytest.raises(CorruptStoreError, match=match) as info:
        SqliteTrialStore(path)
    assert str(path) in str(info.value)
    assert open(path, "rb").read() == before  # never repaired, replaced or started over


def test_an_empty_store_is_refused_not_started_over(tmp_path):
    path = _filled_store(str(tmp_path))
    open(path, "wb").close()
    _assert_refused_and_untouched(path, "empty")


def test_a_truncated_store_is_named(tmp_path):
    path = _filled_store(str(tmp_path))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(CorruptStoreError) as info:
        with SqliteTrialStore(path) as store:  # a truncation may surface at open or at the first read
            store.trials(store.runs()[0])
    assert path in str(info.value)


def test_a_garbled_store_is_named(tmp_path):
    path = _filled_store(str(tmp_path))
    with open(path, "r+b") as f:
        f.write(b"\x00garbage" * 16)  # over the header
    _assert_refused_and_untouched(path, "not a database")


def test_another_sqlite_file_is_not_taken_for_a_store(tmp_path):
    path = str(tmp_path / STORE_FILENAME)
    sqlite3.connect(path).execute("CREATE TABLE mine (x)")
    _assert_refused_and_untouched(path, "not a nas store")


def test_creating_a_store_leaves_no_temporary_file(tmp_path):
    SqliteTrialStore.in_run_dir(tmp_path).close()
    assert sorted(os.listdir(tmp_path)) == [STORE_FILENAME]


def test_a_file_system_without_hard_links_still_gets_a_whole_store(tmp_path, monkeypatch):
    def no_links(source, destination):
        raise PermissionError(1, "Operation not permitted")  # the fault: e.g. some FUSE or SMB mounts

    monkeypatch.setattr(os, "link", no_links)
    _filled_store(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [STORE_FILENAME, "trials"]
    with SqliteTrialStore.in_run_dir(tmp_path) as store:
        assert store.trials(store.runs()[0])[0].status == DONE


# ------------------------------------------------------------------ #5 one process per run directory
_HOLDER = textwrap.dedent("""
    import sys, time
    from nas.store import RunLock
    with RunLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"{tmp_path} is in use by process {holder.pid}\b"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    # The kernel released the dead holder's lock: no stale lock file blocks a resume.
    deadline = time.monotonic() + 10
    while True:
        try:
            with RunLock(tmp_path):
                break
        except RunLockedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released on exit
        pass
