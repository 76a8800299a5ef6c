"""``--help`` of each app: OmegaConf resolvers that conf/hydra/help/<app>.yaml's template calls.

Hydra's default help lists every config group in the search path, used by
the app or not, and nothing about what an option does. Each app's help
template (selected in its primary config: ``override hydra/help: <app>``)
names its own groups instead and asks these resolvers for the rest, so the
text follows conf/ with no list to keep in step:

* ``${nas_options:search}``: one line per conf/search/*.yaml, the option's
  name and its description: the first sentence of the file's leading
  comment (a new strategy config appears in ``nas-search --help`` as soon
  as it exists);
* ``${nas_config:}``: the app's composed settings as YAML (without Hydra's
  own node and without the keys a schema only types, `nas.api.schema`).

Hydra passes the resolved template through `string.Template`, so a ``$`` in
the text is written as ``$$``.
"""

from __future__ import annotations

import importlib.resources
import pathlib
import re
import textwrap
from typing import Any, Iterator

import yaml
from omegaconf import DictConfig, OmegaConf

WIDTH = 100


def description(text: str) -> str:
    """The first sentence of a config file's leading comment ('' when it has none).

    The comment's first paragraph ends at a blank ``#`` line or an indented
    example line (``#   nas-search ...``).
    """
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        words = line[1:].strip()
        if not words or line.startswith("#  "):
            break
        lines.append(words)
    paragraph = " ".join(lines)
    sentence = re.match(r"(.+?\.)(\s|$)", paragraph)
    return sentence.group(1) if sentence else paragraph


def _config_dirs(root: DictConfig) -> Iterator[Any]:
    """The app's config directories (``--config-dir`` first), from Hydra's record of its search path."""
    for source in OmegaConf.select(root, "hydra.runtime.config_sources", default=None) or ():
        if source.provider in ("hydra", "schema") or source.provider.startswith("hydra-"):
            continue  # Hydra's own configs and the structured-config schemas
        if source.schema == "file":
            yield pathlib.Path(source.path)
        elif source.schema == "pkg":
            yield importlib.resources.files(source.path.replace("/", "."))


def group_options(root: DictConfig, group: str) -> dict[str, str]:
    """Option name -> description for every ``<group>/<name>.yaml`` of the app's config directories."""
    found: dict[str, str] = {}
    for directory in _config_dirs(root):
        folder = directory / group
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml") and entry.name[:-5] not in found:
                text = entry.read_text(encoding="utf-8")
                found[entry.name[:-5]] = description(text) or _settings_line(text)
    return found


def _settings_line(text: str) -> str:
    """An uncommented option's own settings (``learning_rate=0.001, b1=0.9``), so its line says something."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError:
        return ""
    if not isinstance(values, dict):
        return ""
    return ", ".join(f"{k}={v}" for k, v in values.items() if k not in ("name", "builder", "defaults"))


def _escaped(text: str) -> str:
    return text.replace("$", "$$")


def options_text(group: str, _root_: DictConfig) -> str:
    """One line per option of `group` (wrapped under its name when long), the current choice marked."""
    chosen = OmegaConf.select(_root_, f"hydra.runtime.choices.{group}", default=None)
    options = group_options(_root_, group)
    if not options:
        return f"  (no {group} configs found)"
    width = max(len(name) for name in options) + 2
    lines = []
    for name, about in options.items():
        label = f"{name}{' *' if name == chosen else ''}".ljust(width + 2)
        wrapped = textwrap.wrap(about or "-", WIDTH - 2 - len(label)) or [""]
        lines.append(f"  {label}{wrapped[0]}")
        lines += [" " * (2 + len(label)) + more for more in wrapped[1:]]
    return _escaped("\n".join(lines))


def config_text(_root_: DictConfig) -> str:
    """The app's settings as YAML: what the YAML files and overrides set (Hydra's node left out).

    Keys left missing (``???``) are not shown: the schemas add one for every
    spec field a YAML does not set, and the spec's default applies to those.
    """
    def without_missing(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: without_missing(v) for k, v in value.items() if v != "???" and k != "hydra"}
        return value

    shown = without_missing(OmegaConf.to_container(_root_, resolve=False))
    # Lists of numbers on one line ([32, 512]), as the YAML files write them.
    return _escaped(yaml.safe_dump(shown, default_flow_style=None, sort_keys=False).rstrip())


def register() -> None:
    """Registers the resolvers (idempotent)."""
    for name, resolver in (("nas_options", options_text), ("nas_config", config_text)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register()
