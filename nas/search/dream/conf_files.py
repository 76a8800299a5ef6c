"""Reading DREAM's settings from the project's `conf/` tree outside a Hydra app.

The Hydra entry points compose `conf/` themselves; tests, benchmarks and the
action space read single files from it (the `dream` group's thresholds, an
optimizer's or schedule's defaults) through here, so every number stays in
`conf/`. The tree is `nas.config_dir.CONFIG_DIR` (``$NAS_CONFIG_DIR`` when
set, else the repository's `conf/`), the rule every entry point follows.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nas.config_dir import CONFIG_DIR


def conf_dir() -> str:
    return CONFIG_DIR


def conf_path(group: str, name: str) -> str:
    """``conf/<group>/<name>.yaml`` as an absolute path."""
    return os.path.normpath(os.path.join(conf_dir(), group, f"{name}.yaml"))


def load_yaml(path: str) -> dict[str, Any]:
    """A YAML mapping; a missing, unreadable or non-mapping file is a ValueError naming it."""
    try:
        doc = OmegaConf.load(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, DictConfig):
        raise ValueError(f"{path}: expected a mapping of settings, got a list")
    return OmegaConf.to_container(doc, resolve=True)
