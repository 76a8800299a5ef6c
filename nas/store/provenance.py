"""Which code produced a run: the package version and, when available, the git commit."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import nas


def _git(*args: str) -> str | None:
    # The package directory, not the working directory: the commit of the code that runs.
    where = os.path.dirname(os.path.abspath(nas.__file__))
    try:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """``{"nas": version, "git_commit": sha or None, "git_dirty": bool or None}``.

    An installed wheel (no git checkout) records only the version.
    """
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"nas": nas.__version__, "git_commit": commit, "git_dirty": dirty}
