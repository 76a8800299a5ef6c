"""setup.cfg's install_requires matches what `nas` and its Hydra plugin import.

Every third-party module imported under nas/ and hydra_plugins/ (read with
`ast`, never run; imports inside functions count) must come from a declared
distribution, not from one that happens to arrive with another package; and
every declared distribution is either imported or carries a comment above it
in setup.cfg saying which package needs it (issue 17: `chex` was declared and
unused, `equinox` imported and undeclared, `importlib_resources` unexplained).
Import names map to distributions through the installed metadata
(importlib.metadata.packages_distributions), so `PIL` is pillow and `sklearn`
scikit-learn. An import inside ``try: ... except ImportError`` is optional
(nas says what to install when it is missing) and need not be declared.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = (REPO / "nas", REPO / "hydra_plugins")
FIRST_PARTY = frozenset({"nas", "hydra_plugins"})


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements() -> dict[str, str]:
    """Distribution name (normalised) -> the comment lines above it in install_requires ('' if none)."""
    lines = (REPO / "setup.cfg").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"install_requires\s*=", line))
    found, comment = {}, []
    for line in lines[start + 1:]:
        if line.strip() and not line[0].isspace():
            break  # the next key or section
        text = line.strip()
        if text.startswith("#"):
            comment.append(text.lstrip("# "))
        elif text:
            name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", text).group(0)
            found[_normalise(name)] = " ".join(comment)
            comment = []
    assert found, "setup.cfg: no install_requires entries found"
    return found


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def imported_modules() -> dict[str, dict[str, list[str]]]:
    """Top-level module -> {"required": [where...], "optional": [where...]}, third-party only."""
    found: dict[str, dict[str, list[str]]] = {}

    def visit(node: ast.AST, path: Path, optional: bool) -> None:
        if isinstance(node, ast.Try):
            guarded = optional or any(_catches_import_error(h) for h in node.handlers)
            for child in node.body:
                visit(child, path, guarded)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, path, optional)
            return
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top not in FIRST_PARTY and top not in sys.stdlib_module_names and top != "__future__":
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                found.setdefault(top, {"required": [], "optional": []})["optional" if optional else "required"].append(
                    where)
        for child in ast.iter_child_nodes(node):
            visit(child, path, optional)

    for root in SOURCE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                visit(ast.parse(path.read_text(), filename=str(path)), path, False)
    return found


def test_the_import_scan_sees_known_imports():
    # Guards the scan itself: these imports exist today, in these forms.
    modules = imported_modules()
    assert {"jax", "numpy", "omegaconf", "equinox", "PIL", "sklearn"} <= set(modules)
    assert modules["tensorflow"]["optional"] and not modules["tensorflow"]["required"]
    assert not {"os", "json", "nas", "hydra_plugins", "__future__"} & set(modules)


def test_every_third_party_import_comes_from_a_declared_distribution():
    declared = declared_requirements()
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, where in sorted(imported_modules().items()):
        if not where["required"]:
            continue
        distributions = {_normalise(d) for d in providers.get(module, [])}
        if not distributions:
            problems.append(f"{module} ({where['required'][0]}) is imported but no installed distribution "
                            "provides it")
        elif not distributions & set(declared):
            problems.append(f"{module} ({where['required'][0]}) comes from {sorted(distributions)}, "
                            "which setup.cfg's install_requires does not declare")
    assert not problems, "\n".join(problems)


def test_every_declared_distribution_is_imported_or_says_who_needs_it():
    providers = importlib.metadata.packages_distributions()
    imported = {_normalise(d) for module in imported_modules() for d in providers.get(module, [])}
    unexplained = [name for name, comment in declared_requirements().items()
                   if name not in imported and not comment]
    assert not unexplained, (f"setup.cfg declares {unexplained}, which nas and hydra_plugins never import; "
                             "remove them, or say above each in a comment which package needs it")
