"""`RunLock`: one process at a time in a run directory.

Two processes resuming the same run would both re-queue and train the same
`running` trial, and the first would then fail to record it (its attempt is
stale). The lock is an OS-level ``flock`` on ``<run_dir>/.lock``: the kernel
releases it when its holder exits, however it exits (SIGKILL and OOM kills
included), so a lock is never left behind by a dead process, and the holder's
PID written into the file lets the refusal name who holds it. Readers (export,
dashboards) open the store without the lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time

from nas.store.errors import StoreError

LOCK_FILENAME = ".lock"


class RunLockedError(StoreError):
    """Another live process holds the run directory."""


class RunLock:
    """An exclusive, non-blocking lock on a run directory (a context manager).

    Args:
      run_dir: the directory (created if missing).

    Raises (on `acquire` / entering):
      RunLockedError: another process holds it; the message names its PID.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = os.path.abspath(os.fspath(run_dir))
        self.path = os.path.join(self.run_dir, LOCK_FILENAME)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "an unknown process"
            os.close(fd)
            raise RunLockedError(
                f"{self.run_dir} is in use by {holder}: one process at a time may run a search in a run "
                "directory (two would train the same trials twice). Wait for it to finish or stop it, "
                "then resume; or use another hydra.run.dir") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # The file stays: removing it would let a third process lock a new
            # inode while a second one still waits on the old.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
