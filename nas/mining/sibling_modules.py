"""Reading the modules of the mined file's own repository that it imports names from.

Public Keras code keeps its widths in a module beside the model
(``from config import NUM_CLASSES, IMAGE_SIZE``, ``from .config import
IMG_SIZE``). A `ModuleReader` finds such a module *inside the repository*
and returns its text; the interpreter then evaluates only its top-level
assignments (`nas.mining.interpreter.Interpreter._sibling_constant`), never
running it. Nothing outside the repository root is read (links that lead out
are refused), only regular files of at most `MAX_MODULE_BYTES`.

Where the module is looked for, as Python would find it when the mined file
is run as a script from its own directory or imported from the repository
root: for ``from .a.b import x`` (level 1), ``a/b.py`` or
``a/b/__init__.py`` beside the file (level 2 goes one folder up, ...); for
``from a.b import x``, the same beside the file, then from the root.
"""

from __future__ import annotations

import os
from typing import Callable

from nas.mining.corpus import read_regular_file
from nas.mining.errors import MiningError

MAX_MODULE_BYTES = 256 * 1024

# (module path parts, import level) -> (a key naming the file, its text), or None when not found.
ModuleReader = Callable[[tuple[str, ...], int], "tuple[str, str] | None"]


def repository_root(path: str, relpath: str) -> str:
    """The repository root of a corpus file: ``path`` less its repository-relative ``relpath``."""
    path = os.path.normpath(os.path.abspath(path))
    rel = os.path.normpath(relpath)
    if rel and not rel.startswith("..") and path.endswith(os.sep + rel):
        return path[:-len(rel) - 1] or os.sep
    return os.path.dirname(path)


def module_reader(path: str, relpath: str) -> ModuleReader:
    """A `ModuleReader` for the file at ``path`` whose path inside its repository is ``relpath``."""
    root = os.path.realpath(repository_root(path, relpath))
    here = os.path.dirname(os.path.realpath(path))

    def inside(candidate: str) -> bool:
        return candidate == root or candidate.startswith(root.rstrip(os.sep) + os.sep)

    def read(parts: tuple[str, ...], level: int) -> tuple[str, str] | None:
        if not parts or any(not p.isidentifier() for p in parts) or level > 8:
            return None
        if level > 0:
            base = here
            for _ in range(level - 1):
                base = os.path.dirname(base)
            bases = [base]
        else:
            bases = [here] if here == root else [here, root]
        for base in bases:
            for candidate in (os.path.join(base, *parts) + ".py", os.path.join(base, *parts, "__init__.py")):
                real = os.path.realpath(candidate)
                if not inside(real) or real == os.path.realpath(path):
                    continue
                try:
                    data = read_regular_file(real, MAX_MODULE_BYTES)
                except (MiningError, OSError):
                    continue
                return real, data.decode("utf-8", "replace")
        return None

    return read
