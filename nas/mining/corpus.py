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

from nas.mining.errors import MiningError

MANIFEST = "manifest.json"
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


def _manifest(root: str) -> dict:
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
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
      The files, in sorted path order.
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
