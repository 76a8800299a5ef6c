"""A corpus on disk: the Python files under a directory and the repository each belongs to.

Two layouts are read:

* a collection (the default): every immediate subdirectory of DIR is one
  repository; files directly in DIR belong to a repository named after DIR;
* ``repo_root=True``: DIR itself is one repository.

A ``manifest.json`` in DIR names repositories and commits:
``{"<subdirectory>": {"repo": "owner/name", "commit": "<sha>"}}`` (the key
``"."`` names DIR itself). Without an entry the repository is the directory's
name and the commit is unknown. Paths in provenance are relative to the
repository's root. An entry may also map notebooks to the scripts made from
them, ``"notebooks_converted": {"nb.ipynb": "nb.ipynb.py"}``; a model mined
from such a script is credited to the notebook (its line numbers count
lines of the script, the notebook's code cells in order).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat

from nas.mining.errors import FileTooLargeError, MiningError, NotRegularFileError

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 2**20
# Opening a FIFO for reading blocks until a writer appears; O_NONBLOCK makes the open return at once
# (it changes nothing for a regular file), and the fstat after it then refuses the FIFO.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """A Python file of the corpus.

    Attributes:
      path: where it is on disk.
      relpath: its path inside its repository (POSIX separators).
      repo: the repository's name.
      commit: the repository's commit, when the manifest gives one.
    """

    path: str
    relpath: str
    repo: str | None = None
    commit: str | None = None


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def read_regular_file(path: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, never blocking on or exhausting memory.

    The size is checked with ``stat`` before the file is opened (so a device is
    never opened), again on the open file (so a path swapped in between is
    caught), and at most ``limit + 1`` bytes are read (so a file that grows, or
    lies about its size, cannot exhaust memory).

    Args:
      path: the file; a symbolic link is followed when it resolves to a regular file.
      limit: the most bytes to read.
    Returns:
      The file's bytes.
    Raises:
      NotRegularFileError: ``path`` is a FIFO, device, socket or directory, or a link to one.
      FileTooLargeError: the file is over ``limit`` bytes.
      OSError: the file cannot be read (missing, a dangling link, no permission).
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(path, _kind(info.st_mode))
    if info.st_size > limit:
        raise FileTooLargeError(path, limit, info.st_size)
    fd = os.open(path, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(path, _kind(info.st_mode))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(path, limit)
    return data


def _manifest(root: str) -> dict:
    path = os.path.join(root, MANIFEST)
    if not os.path.lexists(path):
        return {}
    try:
        doc = json.loads(read_regular_file(path, MAX_MANIFEST_BYTES).decode("utf-8"))
    except (MiningError, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MiningError(f"{path}: cannot read the manifest ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise MiningError(f"{path}: the manifest maps directories to {{\"repo\": ..., \"commit\": ...}} objects")
    return doc


def python_files(root: str, *, repo_root: bool = False) -> list[SourceFile]:
    """The ``*.py`` files under ``root``, sorted, with their repository.

    Args:
      root: the directory to walk (hidden directories and ``__pycache__`` are skipped).
      repo_root: treat ``root`` as one repository instead of a collection of them.
    Returns:
      The files, in sorted path order. Every entry named ``*.py`` is listed,
      FIFOs, devices and dangling links included: `nas.mining.funnel.mine_file`
      gives each one an outcome without reading it.
    Raises:
      MiningError: ``root`` is not a directory or its manifest is malformed.
    """
    if not os.path.isdir(root):
        raise MiningError(f"{root} is not a directory")
    manifest = _manifest(root)
    base_name = os.path.basename(os.path.normpath(os.path.abspath(root)))
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIPPED_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            parts = os.path.relpath(path, root).split(os.sep)
            if repo_root or len(parts) == 1:
                key, default, rel = ".", base_name, parts
            else:
                key, default, rel = parts[0], parts[0], parts[1:]
            entry = manifest.get(key, {})
            relpath = "/".join(rel)
            notebooks = entry.get("notebooks_converted")
            if isinstance(notebooks, dict):
                relpath = {script: nb for nb, script in notebooks.items() if isinstance(script, str)}.get(relpath,
                                                                                                       relpath)
            files.append(SourceFile(path, relpath, entry.get("repo") or default, entry.get("commit")))
    return files
