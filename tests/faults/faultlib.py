"""What the fault-injection tests share: the tiny search, running the CLIs, and judging the damage.

Every fault is injected into the real entry points run as a user runs them
(subprocesses), on scikit-learn's digits with a tiny budget. After a fault
the run is resumed to completion and compared with an uninterrupted
reference run of the same settings, using the kill/resume machinery of
``experiments/kill_resume.py`` (`store_view`, `compare`, `run_and_kill`):

- trials lost: trials of the reference that the faulted run lacks, or holds
  with another proposal, status or validation score;
- repeated: trials trained to completion more than once (``metrics.jsonl``
  logs one line per trial each time an invocation finishes training it, and
  replayed trials are not logged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Iterable, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAULTS_DIR = os.path.dirname(os.path.abspath(__file__))
INJECT = os.path.join(FAULTS_DIR, "inject.py")
PY = sys.executable

sys.path.insert(0, os.path.join(REPO, "experiments"))
import kill_resume  # noqa: E402  (the existing kill/resume comparison machinery)

# Four one- or two-layer MLPs of 16..32 units, two epochs each: ~2 s a trial on one
# CPU core, compilation included. The first finished trial is always on the
# Pareto front, so every run writes at least one checkpoint and a best/.
TRIALS = 4
CORE = ("search.max_trials=4", "train.epochs=2", "search.space.families=[mlp]", "search.space.mlp_width=[16,32]",
        "runtime.compilation_cache=null")
QUIET = tuple(kill_resume.QUIET)  # logger=console progress=false
TINY = CORE + QUIET
SCORE_ATOL = kill_resume.SCORE_ATOL  # CPU training is deterministic given (seed, trial)
CLI_TIMEOUT = 300.0
# An address-space cap for children that could allocate without bound (an
# oversized model, mining /dev/zero): a bug then fails that child with
# MemoryError instead of pushing the shared machine into the OOM killer.
# JAX on CPU reserves ~3 GiB of address space at start-up; 12 GiB leaves room.
MEMORY_CAP = 12 << 30


@dataclasses.dataclass(frozen=True)
class Proc:
    """One finished child process.

    Attributes:
      rc: exit status (negative: killed by that signal).
      out: stdout then stderr, as the user sees them.
      seconds: wall time.
    """

    rc: int
    out: str
    seconds: float

    def report(self) -> dict | None:
        """The final JSON line (results.json) of a process that finished, else None."""
        if self.rc != 0:
            return None
        for line in reversed(self.out.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return None

    def tail(self, n: int = 3000) -> str:
        return f"exit {self.rc} after {self.seconds:.1f} s; output tail:\n{self.out[-n:]}"


def env(**extra: str) -> dict:
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), WANDB_SILENT="true",
                **extra)


def search_argv(run_dir: str | os.PathLike, *extra: str, resume: bool = False, injected: bool = False,
                base: Sequence[str] = TINY) -> list[str]:
    """nas-search (through inject.py when `injected`) on the tiny search in `run_dir`."""
    program = [PY, INJECT] if injected else [PY, "-m", "nas.cli.search"]
    return [*program, *base, *extra, f"hydra.run.dir={os.fspath(run_dir)}", *(["resume=true"] if resume else [])]


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run(argv: Sequence[str], *, timeout: float = CLI_TIMEOUT, cap_memory: bool = False, **env_extra: str) -> Proc:
    """Runs a command from the repository root to its end (a timeout kills it and fails the test)."""
    start = time.perf_counter()
    proc = subprocess.run(list(argv), cwd=REPO, env=env(**env_extra), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_cap_memory if cap_memory else None)
    return Proc(proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start)


def search(run_dir, *extra: str, resume: bool = False, fault: str | None = None, fault_log: str | None = None,
           base: Sequence[str] = TINY, timeout: float = CLI_TIMEOUT, **env_extra: str) -> Proc:
    """Runs the tiny search in `run_dir`, with the fault `fault` injected (see inject.py) if given."""
    if fault is not None:
        env_extra.update(NAS_FAULT=fault, NAS_FAULT_LOG=fault_log or os.path.join(os.fspath(run_dir) + ".faults"))
    return run(search_argv(run_dir, *extra, resume=resume, injected=fault is not None, base=base), timeout=timeout,
               **env_extra)


class Background:
    """A child process whose output goes to a file (a pipe nobody reads could fill and stall it)."""

    def __init__(self, argv: Sequence[str], log_path: str, **env_extra: str):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.start = time.perf_counter()
        self.proc = subprocess.Popen(list(argv), cwd=REPO, env=env(**env_extra), stdout=self._log,
                                     stderr=subprocess.STDOUT, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = CLI_TIMEOUT) -> Proc:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        with open(self.log_path) as f:
            return Proc(self.proc.returncode, f.read(), time.perf_counter() - self.start)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05, alive: Background | None = None) -> None:
    """Waits until `predicate()` holds; fails naming `what` on timeout or if `alive` exits first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(f"the process exited ({alive.proc.returncode}) before {what}; "
                                 f"its output: {open(alive.log_path).read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def fired(fault_log: str) -> list[str]:
    """The lines inject.py wrote when its fault fired."""
    if not os.path.exists(fault_log):
        return []
    with open(fault_log) as f:
        return [line.strip() for line in f if line.startswith("fired ")]


# ----------------------------------------------------------------------------- what the user was told
HYDRA_ECHO = "Error executing job with overrides"


def message(out: str) -> str:
    """What the program said, without Hydra's echo of the overrides (which names every key and file)."""
    return "\n".join(line for line in out.splitlines() if HYDRA_ECHO not in line)


def line_with(said: str, needle: str, width: int = 140) -> str:
    """The last line of `said` that holds `needle` (else its last line), cut to `width` from the needle's end."""
    lines = [line for line in said.splitlines() if line.strip()]
    line = next((line for line in reversed(lines) if needle in line), lines[-1] if lines else "")
    # From just before the needle's end: a long path's tail, then what is said about it.
    start = max(0, line.find(needle) + len(needle) - 40) if needle in line else max(0, len(line) - width)
    return line[start:start + width]


# ----------------------------------------------------------------------------- SIGINT / SIGTERM
def resume_hint(said: str) -> list[str]:
    """The lines that say how to resume (Hydra's echo of the command line already left out)."""
    return [line for line in said.splitlines() if "resume=true" in line]


@dataclasses.dataclass(frozen=True)
class Interruption:
    """How an interrupted search stopped (once or several times) and resumed.

    Attributes:
      signals: signals delivered while the search ran.
      clean: of those, the stops that went as specified.
      problems: every way it departed from the contract (empty: as specified).
      named: every stop printed exactly one line saying how to resume (resume=true), naming the run directory.
      lost, repeated: trials lost or trained twice, against the reference.
    """

    signals: int
    clean: int
    problems: tuple[str, ...]
    named: bool
    lost: int
    repeated: int


def _stop_once(argv: Sequence[str], run_dir: str, log_path: str, signum: int, expected_rc: int, *,
               threshold: int = 1, delay: float | None = None, **env_extra: str) -> tuple[bool, list[str], list[str]]:
    """Starts `argv`, delivers `signum` at the moment asked, checks how the search stopped.

    With `delay` None, the moment is when inject.py's hold fault fires
    (NAS_FAULT_LOG in `env_extra`); otherwise `delay` seconds after a trial
    starts training with at least `threshold` finished.

    Returns:
      (whether the signal was delivered, the problems, the lines saying how to resume).
    """
    proc = Background(argv, log_path, **env_extra)
    delivered = False
    try:
        if delay is None:
            wait_for(lambda: fired(env_extra["NAS_FAULT_LOG"]), 240, "the held trial to train", alive=proc)
        else:
            try:
                wait_for(lambda: (lambda f, r: f >= threshold and r)(*running_trials(run_dir)), 240,
                         f"a trial to train with {threshold} finished", poll=0.02, alive=proc)
            except AssertionError:
                if proc.proc.poll() == 0:  # it finished before the moment came: no signal
                    return False, [], []
                raise
            time.sleep(delay)
        if proc.proc.poll() is None:
            proc.signal(signum)
            delivered = True
        stopped = proc.finish(timeout=120)
    finally:
        kill_all([proc])
    if not delivered:
        return False, [], []
    said = message(stopped.out)
    hints = resume_hint(said)
    rows = trial_rows(run_dir)
    running = [r["index"] for r in rows if r["status"] == "running"]
    counted = [r["index"] for r in rows if r["status"] == "queued" and r["attempts"] != 0]
    problems = []
    if stopped.rc != expected_rc:
        problems.append(f"exit {stopped.rc}, not {expected_rc}"
                        + (" (the signal was swallowed and the search ran on)" if stopped.rc == 0 else ""))
    if len(hints) != 1 or run_dir not in hints[0]:
        problems.append(f"{len(hints)} lines say how to resume the run directory (resume=true), not 1")
    if "Traceback" in said:
        problems.append("a traceback was printed: " + line_with(said, "Traceback", 60))
    if running or counted:
        problems.append(f"after the stop: trials running {running}, queued with an attempt counted {counted}")
    return True, problems, hints


def hint_argv(line: str) -> list[str]:
    """The resume command an interrupted nas-search printed, as argv (as the user would paste it)."""
    command = line[line.rindex("nas-search "):]
    words = shlex.split(command[:command.rindex("resume=true") + len("resume=true")])
    return [PY, "-m", "nas.cli.search", *words[1:]]


def interrupt_and_resume(workdir, reference, signum: int, expected_rc: int, *,
                         moments: Sequence[tuple[int, float]] | None = None) -> Interruption:
    """Stops the tiny search with `signum`, checks each stop, resumes with the command it printed.

    Args:
      workdir: a fresh folder for the run and its logs.
      reference: the uninterrupted run to compare with.
      signum, expected_rc: the signal and the exit status it must give (130 SIGINT, 143 SIGTERM).
      moments: None: one signal while trial 1 is held after its first epoch (a
        deterministic moment, in Python). Else (trials finished at least, delay)
        pairs (`kill_resume.kill_moments`): one signal each, `delay` seconds after
        a trial starts training with that many finished (wherever that lands: an
        XLA compile or step, a checkpoint, between trials); each invocation after
        the first is the resume command the previous one printed.
    """
    os.makedirs(workdir, exist_ok=True)
    run_dir = os.path.join(os.fspath(workdir), "run")
    problems: list[str] = []
    signals = clean = 0
    named = True
    argv = search_argv(run_dir, injected=moments is None)
    if moments is None:
        fault_log = os.path.join(workdir, "faults.log")
        delivered, found, hints = _stop_once(
            argv, run_dir, os.path.join(workdir, "stop.out"), signum, expected_rc, NAS_FAULT="hold-train:trial=1",
            NAS_FAULT_LOG=fault_log, NAS_FAULT_RELEASE=os.path.join(workdir, "release"))
        signals, clean, named = 1, int(not found), len(hints) == 1
        problems += found
    else:
        hints = []
        for i, (threshold, delay) in enumerate(moments):
            delivered, found, hints = _stop_once(argv, run_dir, os.path.join(workdir, f"stop{i}.out"), signum,
                                                 expected_rc, threshold=threshold, delay=delay)
            if not delivered:
                break  # the search finished before this moment
            signals += 1
            clean += not found
            named = named and len(hints) == 1
            problems += [f"{threshold} done+{delay:.2f} s: {p}" for p in found]
            argv = hint_argv(hints[-1]) if hints else search_argv(run_dir, resume=True)
    resumed = run(hint_argv(hints[-1])) if hints else search(run_dir, resume=True)
    if resumed.rc != 0:
        problems.append("the resume failed: " + resumed.tail(300))
    harm = damage(reference, run_dir, resumed.report())
    problems += harm.problems
    return Interruption(signals, clean, tuple(problems), named, len(harm.lost), len(harm.repeated))


# ----------------------------------------------------------------------------- the store, read-only
def trial_rows(run_dir) -> list[dict]:
    """Every trial of a store, read through a read-only SQLite connection (never creates or changes it)."""
    path = os.path.join(os.fspath(run_dir), kill_resume.STORE_FILENAME)
    if not os.path.exists(path):
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT trial_index, status, attempts, error, best_score, arch_hash, hyperparameters, "
                            "parent FROM trials ORDER BY trial_index").fetchall()
    keys = ("index", "status", "attempts", "error", "best_score", "arch_hash", "hyperparameters", "parent")
    return [dict(zip(keys, r)) for r in rows]


def artefact_paths(run_dir) -> list[tuple[str, str]]:
    """(kind, path as stored) of every artefact, read-only."""
    path = os.path.join(os.fspath(run_dir), kill_resume.STORE_FILENAME)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute("SELECT kind, path FROM artefacts ORDER BY id").fetchall()


def running_trials(run_dir) -> tuple[int, bool]:
    """(finished trials, whether one is running) of a live store (kill_resume.progress)."""
    return kill_resume.progress(os.fspath(run_dir))


@dataclasses.dataclass(frozen=True)
class Damage:
    """What a faulted run lost, measured against the uninterrupted reference.

    Attributes:
      lost: reference trials missing, or held with another proposal, status
        or validation score.
      repeated: trials trained to completion more than once.
      problems: every difference, in words (kill_resume.compare's, plus ours).
    """

    lost: tuple[int, ...]
    repeated: tuple[int, ...]
    problems: tuple[str, ...]


def lost_in_store(reference: "Reference", run_dir) -> list[int]:
    """Reference trials that a run's store (read-only) lacks or holds with another proposal, status or score.

    For a run stopped on purpose part way (a refused resume): its finished trials must still be there.
    """
    rows = {r["index"]: r for r in trial_rows(run_dir)}
    lost = []
    for t in reference.view["trials"]:
        r = rows.get(t.index)
        if (r is None or r["arch_hash"] != t.arch_hash or r["status"] != t.status
                or (r["best_score"] is None) != (t.best_score is None)
                or (t.best_score is not None and abs(r["best_score"] - t.best_score) > SCORE_ATOL)):
            lost.append(t.index)
    return lost


def trained_counts(run_dir) -> dict[int, int]:
    """Trial -> how many invocations finished training it (from metrics.jsonl)."""
    counts: dict[int, int] = {}
    path = os.path.join(os.fspath(run_dir), "metrics.jsonl")
    if not os.path.exists(path):
        return counts
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a SIGKILL
                continue
            if "trial/trial" in row:
                counts[int(row["trial/trial"])] = counts.get(int(row["trial/trial"]), 0) + 1
    return counts


def damage(reference: "Reference", run_dir, report: dict | None, *, exclude: Iterable[int] = (),
           per_trial: bool = False) -> Damage:
    """Compares the finished run in `run_dir` with the reference.

    Args:
      reference: the uninterrupted run.
      run_dir: the faulted run, resumed to completion.
      report: its final results (None: it never finished, so every reference trial counts as lost).
      exclude: trials expected to differ (given up on purpose), checked by the caller.
      per_trial: compare trials only, not the best trial and test accuracy (for a run
        whose objective differs from the reference's while its proposals do not).
    """
    repeated = tuple(sorted(t for t, n in trained_counts(run_dir).items() if n > 1))
    if report is None or not os.path.exists(os.path.join(os.fspath(run_dir), kill_resume.STORE_FILENAME)):
        return Damage(tuple(t.index for t in reference.view["trials"]), repeated, ("the run never finished",))
    view = kill_resume.store_view(os.fspath(run_dir))
    exclude = set(exclude)
    by_index = {t.index: t for t in view["trials"]}
    lost = []
    for ta in reference.view["trials"]:
        if ta.index in exclude:
            continue
        tb = by_index.get(ta.index)
        if (tb is None or (ta.arch_hash, ta.hyperparameters, ta.parent) != (tb.arch_hash, tb.hyperparameters, tb.parent)
                or ta.status != tb.status or (ta.best_score is None) != (tb.best_score is None)
                or (ta.best_score is not None and abs(ta.best_score - tb.best_score) > SCORE_ATOL)):
            lost.append(ta.index)
    if exclude or per_trial:
        problems = [f"trial {t} differs from the reference" for t in lost]
    else:
        problems = kill_resume.compare(reference.view, view, reference.report, report)
    problems += [f"trial {t} was trained to completion more than once" for t in repeated]
    return Damage(tuple(lost), repeated, tuple(problems))


@dataclasses.dataclass(frozen=True)
class Reference:
    """An uninterrupted run of the tiny search: its directory, store view and final report."""

    run_dir: str
    view: dict
    report: dict


# ----------------------------------------------------------------------------- files
def tree_digest(directory) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `directory` (hidden leftovers included)."""
    found = {}
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def copy_run(source, destination) -> str:
    """A copy of a run directory, as `cp -a` makes it."""
    shutil.copytree(source, destination, symlinks=True)
    return os.fspath(destination)


def largest_file(directory) -> str:
    files = [os.path.join(r, n) for r, _, ns in os.walk(directory) for n in ns]
    return max(files, key=os.path.getsize)


def is_complete_model(directory) -> bool:
    """Whether `directory` holds every part of a model directory (arch.json, model.json, a committed variables/)."""
    return all(os.path.isfile(os.path.join(directory, *part.split("/")))
               for part in ("arch.json", "model.json", "variables/_METADATA"))


def load_error(directory) -> str | None:
    """None when `nas.checkpoint.load_model` reads the directory, else its error."""
    from nas.checkpoint import load_model

    try:
        load_model(os.fspath(directory))
    except Exception as exc:  # noqa: BLE001 - the error is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def inside(root, path) -> bool:
    root, path = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([root, path]) == root


def resolve_artefact(run_dir, stored: str) -> str:
    """Where a stored artefact path points: relative paths are relative to the run directory."""
    return stored if os.path.isabs(stored) else os.path.join(os.fspath(run_dir), stored)


def kill_all(background: Iterable[Background]) -> None:
    for b in background:
        if b.proc.poll() is None:
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait()
