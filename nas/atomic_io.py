"""Atomic writes: a reader of a path sees its whole old content or its whole new one.

A run can be killed at any instant (Ctrl-C, the OOM killer, a pre-empted node,
a full disk). A file or a model directory written in place is then left
truncated or half filled, and the next reader (nas-eval, a resumed search)
fails on it, or worse, misreads it. Everything here first writes the new
content next to its target (same folder, hence same filesystem), fsyncs it,
and then publishes it with a rename: POSIX makes a rename within one
filesystem atomic, and the fsync makes the content durable before the name
points at it.

Files: `write_text_atomic`, `write_json_atomic` (temporary file + ``os.replace``).

Directories: `staging_directory` gives a fresh hidden sibling
``.<name>.tmp-<pid>-<token>`` to fill; `replace_directory` puts it in place.
Linux swaps the two paths in one step (``renameat2(RENAME_EXCHANGE)``);
where the filesystem cannot, the old directory is renamed aside to
``.<name>.old-<pid>-<token>`` first, and `recover_directory` (run before the
next write or by a reader that finds the target missing) finishes a swap whose
writer died between the two renames. Leftover hidden siblings of dead writers
are deleted by the next `recover_directory`; readers never look at them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import sys
import threading
import tempfile
from typing import Any, Callable, Iterator

# Read once at import (os.umask can only be read by setting it, which is not thread-safe later).
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_text_atomic(path: str, text: str, encoding: str = "utf-8") -> str:
    """Writes `text` to `path` so that `path` is never seen half written.

    Args:
      path: the file to create or replace; its folder must exist.
      text: the whole new content.
      encoding: text encoding.

    Returns:
      The absolute path written.
    """
    return write_bytes_atomic(path, text.encode(encoding))


def write_bytes_atomic(path: str, data: bytes) -> str:
    """Writes `data` to `path` so that `path` is never seen half written (temporary sibling, fsync, rename).

    Returns:
      The absolute path written.
    """
    path = os.path.abspath(path)
    folder, name = os.path.split(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; an ordinary open() would honour the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    _fsync_directory(folder)
    return path


def write_json_atomic(path: str, value: Any, *, indent: int | None = 2,
                      default: Callable[[Any], Any] | None = None) -> str:
    """`write_text_atomic` of ``json.dumps(value)``.

    The value is serialised before anything is written, so a value JSON cannot
    hold raises ``TypeError`` and leaves `path` untouched.

    Args:
      path: the file to create or replace.
      value: any JSON-serialisable value.
      indent: as for ``json.dumps``.
      default: as for ``json.dumps`` (converts what JSON cannot hold).

    Returns:
      The absolute path written.
    """
    return write_text_atomic(path, json.dumps(value, indent=indent, default=default) + "\n")


@contextlib.contextmanager
def staged_directory(target: str) -> Iterator[str]:
    """Yields an empty staging folder beside `target`; on success it replaces `target` atomically.

    What a killed earlier writer left at `target` is recovered first; on any
    error (or interrupt) the staging folder is removed and `target` is left as
    it was.
    """
    recover_directory(target)
    staging = staging_directory(target)
    try:
        yield staging
        fsync_tree(staging)
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def staging_directory(target: str) -> str:
    """Creates an empty hidden sibling of `target` to build its next content in.

    Args:
      target: the directory that `replace_directory` will later replace.

    Returns:
      The absolute path of the new, empty staging directory.
    """
    target = os.path.abspath(target)
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(staging)
    return staging


def fsync_tree(directory: str) -> None:
    """fsyncs every file and folder under `directory` (itself included)."""
    for root, _, files in os.walk(directory, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_directory(root)


def replace_directory(staging: str, target: str) -> str:
    """Publishes the complete directory `staging` at `target`, replacing what is there.

    `staging` must come from `staging_directory(target)` and be complete and
    fsynced (`fsync_tree`). Afterwards `staging` no longer exists and the old
    content of `target`, if any, is deleted.

    Args:
      staging: the new content.
      target: where it goes.

    Returns:
      The absolute path of `target`.
    """
    staging, target = os.path.abspath(staging), os.path.abspath(target)
    parent = os.path.dirname(target)
    if not os.path.lexists(target):
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # it now holds the old content
    else:
        aside = _aside_name(staging)
        os.rename(target, aside)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(aside, target)
            raise
        shutil.rmtree(aside)
    _fsync_directory(parent)
    return target


def recover_directory(target: str) -> None:
    """Finishes or clears what writers of `target` that died left behind.

    A swap interrupted between its two renames (target missing, the old copy
    aside, the new one complete in its staging folder) is completed; staging
    and aside folders of dead writers are deleted. Folders of live processes
    are left alone: their writer may still be at work.

    Args:
      target: a directory written through `replace_directory`.
    """
    target = os.path.abspath(target)
    parent, name = os.path.split(target)
    if not os.path.isdir(parent):
        return
    pattern = re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(\d+)-([0-9a-f]+)$")
    leftovers = []  # (kind, writer pid-token, path) of writers that are gone
    for entry in sorted(os.listdir(parent)):
        match = pattern.match(entry)
        if match and not _alive(int(match.group(2))):
            leftovers.append((match.group(1), f"{match.group(2)}-{match.group(3)}", os.path.join(parent, entry)))
    if not os.path.lexists(target):
        for kind, writer, path in leftovers:
            if kind != "old":
                continue
            staged = os.path.join(parent, f".{name}.tmp-{writer}")
            # Died between the renames: its staged copy was complete before the old one went aside.
            os.rename(staged if os.path.isdir(staged) else path, target)
            break
    for _, _, path in leftovers:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
    _fsync_directory(parent)


def _aside_name(staging: str) -> str:
    """``.<name>.tmp-<pid>-<token>`` -> ``.<name>.old-<pid>-<token>`` (the same writer's aside folder)."""
    parent, entry = os.path.split(staging)
    head, _, writer = entry.rpartition(".tmp-")  # the last one: <name> itself may hold ".tmp-"
    return os.path.join(parent, f"{head}.old-{writer}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


# renameat2(RENAME_EXCHANGE) swaps two paths in one atomic step (Linux >= 3.15, glibc >= 2.28;
# ext4, xfs, btrfs, tmpfs, overlayfs). Elsewhere `_exchange` says False and the caller falls back.
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None


_RENAMEAT2 = _renameat2()


def _exchange(a: str, b: str) -> bool:
    """Swaps paths `a` and `b` atomically; False where this system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), a, None, b)


def _fsync_directory(path: str) -> None:
    """Makes renames and new entries in `path` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _remove_with_sidecars(path: str) -> None:
    for leftover in (path, path + "-wal", path + "-shm"):  # SQLite's write-ahead log and shared memory
        if os.path.exists(leftover):
            os.remove(leftover)


@contextlib.contextmanager
def created_once(path: str):
    """Yields a temporary path beside `path` to build a new file in, then links it into place.

    A process killed at any moment leaves either no file at `path` or a
    complete one (plus at most a stray temporary), never a half-built one;
    of two processes creating the same file at once, the first link wins and
    the other keeps using the winner's (a link, unlike a rename, never
    replaces). The temporary and SQLite's ``-wal``/``-shm`` beside it are
    removed whatever happens.
    """
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.creating-{os.getpid()}-{threading.get_ident()}")
    _remove_with_sidecars(temporary)
    try:
        yield temporary
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError:
            # A file system without hard links: a rename is atomic too, and only a second process creating
            # the same file in the same instant could lose its (empty) schema to this one's.
            if not os.path.exists(path):
                os.rename(temporary, path)
    finally:
        _remove_with_sidecars(temporary)
