"""Runs nas-search with one fault injected at a precise moment (the fault suite's wrapper).

    NAS_FAULT=SPEC NAS_FAULT_LOG=FILE python tests/faults/inject.py OVERRIDES...

patches the write or training primitive that SPEC names, then calls
`nas.cli.search.main()` exactly as the ``nas-search`` entry point does. When
the fault fires, one line ``fired <spec> <where>`` is appended (and fsynced)
to NAS_FAULT_LOG *before* the fault takes effect, so the test can tell an
injected death from any other. A SPEC is ``name[:key=value...]``:

``kill-train:trial=K[:epoch=E]``
    SIGKILL after epoch E (default 1) of trial K's training: mid-trial.
``hold-train:trial=K[:epoch=E]``
    after epoch E of trial K, wait until the file NAS_FAULT_RELEASE exists
    (at most 300 s): a deterministic moment at which the test acts (a second
    process, a signal, a full disk) while a trial is in training.
``kill-ckpt:when=before|during|after[:nth=N]``
    SIGKILL at the N-th (default 1) checkpoint write: ``before`` orbax starts
    writing the variables (arch.json and model.json already written),
    ``during`` right after orbax's asynchronous save has started (its commit
    thread still writing), ``after`` once `save_model` has returned but before
    the store records the checkpoint.
``enospc-ckpt[:nth=N]``
    the N-th checkpoint write raises ``OSError(ENOSPC)`` with no file name, as
    a full disk does from ``write(2)``: the engine has to name the path itself.
``kill-best[:nth=N]``
    SIGKILL after N (default 2) files have been copied while `best/` is being
    exported (the copy is then half done).
``kill-write:name=NAME``
    SIGKILL in the middle of the first write to a file whose name contains
    NAME (``results.json``, ``c0.json``; a temporary sibling such as
    ``.results.json.x.tmp`` counts): half of that write reaches the disk.

Why patch generic primitives (orbax's ``StandardCheckpointer.save``,
``shutil.copyfile``, ``open``) rather than the engine's helpers: the fault
must land inside the real write whatever function the engine uses around
it, so the suite keeps testing the same moment when the engine changes.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import signal
import sys
import threading
import time

SPEC = os.environ.get("NAS_FAULT", "")
LOG = os.environ.get("NAS_FAULT_LOG")
RELEASE = os.environ.get("NAS_FAULT_RELEASE")
HOLD_LIMIT_S = 300.0


def _parse(spec: str) -> tuple[str, dict[str, str]]:
    name, *pairs = spec.split(":")
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"inject.py: bad NAS_FAULT {spec!r}: {pair!r} is not key=value")
        args[key] = value
    return name, args


def _note(what: str) -> None:
    """Appends one line to NAS_FAULT_LOG and makes it durable before the fault takes effect."""
    if not LOG:
        return
    fd = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"fired {SPEC} {what}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _die(what: str) -> None:
    _note(what)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # SIGKILL is not deliverable late, but never go on writing if it somehow were


def _patch_training(trial: int, epoch: int, action) -> None:
    """Calls `action()` after epoch `epoch` of trial `trial`'s training (the evaluator's train calls)."""
    import nas.search.engine as engine
    import nas.search.evaluator as evaluator

    current: set[int] = set()
    real_evaluate = engine.evaluate_candidates

    def evaluate_candidates(candidates, *args, **kwargs):
        current.clear()
        current.update(c.trial for c in candidates)
        try:
            return real_evaluate(candidates, *args, **kwargs)
        finally:
            current.clear()

    def hooked(real):
        def train(*args, on_epoch=None, **kwargs):
            def hook(e, rows):
                if on_epoch is not None:
                    on_epoch(e, rows)
                if e == epoch and trial in current:
                    action(f"trial {trial} epoch {e}")
            return real(*args, on_epoch=hook, **kwargs)
        return train

    engine.evaluate_candidates = evaluate_candidates
    evaluator.train = hooked(evaluator.train)
    evaluator.train_population = hooked(evaluator.train_population)


def _hold(where: str) -> None:
    _note(f"{where} (holding)")
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not (RELEASE and os.path.exists(RELEASE)) and time.monotonic() < deadline:
        time.sleep(0.05)


def _patch_checkpoint_write(nth: int, action_before=None, action_during=None) -> None:
    """Runs an action at the `nth` call of orbax's StandardCheckpointer.save (a checkpoint's variables)."""
    import orbax.checkpoint as ocp

    real_save = ocp.StandardCheckpointer.save
    calls = [0]

    def save(self, directory, *args, **kwargs):
        calls[0] += 1
        if calls[0] == nth and action_before is not None:
            action_before(f"checkpoint write {nth} ({directory})")
        out = real_save(self, directory, *args, **kwargs)
        if calls[0] == nth and action_during is not None:
            action_during(f"checkpoint write {nth} in flight ({directory})")
        return out

    ocp.StandardCheckpointer.save = save


def _patch_after_save_model(nth: int) -> None:
    import nas.checkpoint
    import nas.search.engine as engine

    real = nas.checkpoint.save_model
    calls = [0]

    def save_model(directory, *args, **kwargs):
        out = real(directory, *args, **kwargs)
        calls[0] += 1
        if calls[0] == nth:
            _die(f"after save_model {nth} returned ({directory})")
        return out

    nas.checkpoint.save_model = save_model
    if getattr(engine, "save_model", None) is real:
        engine.save_model = save_model


def _patch_best_copy(nth: int) -> None:
    """SIGKILLs after `nth` file copies made while export_artefacts runs (best/ is being published)."""
    import nas.cli.search as cli
    import nas.search as search
    import nas.search.engine as engine

    exporting = threading.Event()
    copies = [0]
    real_export = engine.export_artefacts
    real_copyfile = shutil.copyfile

    def export_artefacts(*args, **kwargs):
        exporting.set()
        try:
            return real_export(*args, **kwargs)
        finally:
            exporting.clear()

    def copyfile(src, dst, *args, **kwargs):
        out = real_copyfile(src, dst, *args, **kwargs)
        if exporting.is_set():
            copies[0] += 1
            if copies[0] == nth:
                _die(f"best/ export after {nth} files ({dst})")
        return out

    for module in (engine, search, cli):
        if getattr(module, "export_artefacts", None) is real_export:
            module.export_artefacts = export_artefacts
    shutil.copyfile = copyfile


class _KillingFile:
    """A file object whose first write puts half its data on disk, then SIGKILLs the process."""

    def __init__(self, f, name: str):
        self._f, self._name = f, name

    def write(self, data):
        half = data[: max(1, len(data) // 2)]
        self._f.write(half)
        self._f.flush()
        os.fsync(self._f.fileno())
        _die(f"mid-write of {self._name} ({len(half)} of {len(data)} characters written)")

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _patch_file_write(name: str) -> None:
    real_open = builtins.open
    fired = [False]

    def opened_path(file) -> str:
        if isinstance(file, int):
            try:
                return os.readlink(f"/proc/self/fd/{file}")
            except OSError:
                return ""
        return os.fspath(file) if isinstance(file, (str, bytes, os.PathLike)) else ""

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        path = opened_path(file)
        path = path.decode() if isinstance(path, bytes) else path
        if not fired[0] and any(m in mode for m in "wax+") and name in os.path.basename(path):
            fired[0] = True
            return _KillingFile(f, path)
        return f

    builtins.open = open_
    io.open = open_  # os.fdopen (used for temporary files) opens through io.open


def install(spec: str) -> None:
    """Installs the fault `spec` (see the module docstring)."""
    name, args = _parse(spec)
    nth = int(args.get("nth", 1))
    if name == "kill-train":
        _patch_training(int(args["trial"]), int(args.get("epoch", 1)), _die)
    elif name == "hold-train":
        _patch_training(int(args["trial"]), int(args.get("epoch", 1)), _hold)
    elif name == "kill-ckpt":
        when = args.get("when", "during")
        if when == "before":
            _patch_checkpoint_write(nth, action_before=_die)
        elif when == "during":
            _patch_checkpoint_write(nth, action_during=_die)
        elif when == "after":
            _patch_after_save_model(nth)
        else:
            raise SystemExit(f"inject.py: kill-ckpt when={when!r}; use before, during or after")
    elif name == "enospc-ckpt":
        def enospc(where):
            _note(where)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _patch_checkpoint_write(nth, action_before=enospc)
    elif name == "kill-best":
        _patch_best_copy(int(args.get("nth", 2)))
    elif name == "kill-write":
        _patch_file_write(args["name"])
    elif name:
        raise SystemExit(f"inject.py: unknown fault {name!r} (see tests/faults/inject.py)")


if __name__ == "__main__":
    install(SPEC)
    from nas.cli.search import main

    sys.argv[0] = "nas-search"
    main()
