"""Configs for the CLI and for Python alike: where conf/ lives, Hydra's Compose API over it, the JAX set-up and the run directory check.

`compose` takes overrides exactly as the command line writes them
(``["train.epochs=5", "search=dnc"]``) and refuses a bad one naming its key,
before any data is read: the composition itself catches unknown keys and
groups, and `check` runs the checks the CLI runs on every value
(`nas.api.settings`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Sequence

import jax
from omegaconf import DictConfig

from nas.api import settings
from nas.config_dir import CONFIG_DIR

def configure_jax(runtime: DictConfig) -> None:
    # orbax logs every checkpoint step at INFO through absl; Hydra shows INFO.
    logging.getLogger("absl").setLevel(logging.WARNING)
    # JAX probes every platform on first use and reports at INFO that there is no TPU
    # ("Unable to initialize backend 'tpu'"): not a problem on a CPU or GPU machine. Its warnings
    # (a GPU present but no CUDA jaxlib) and errors still show.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    if runtime.get("enable_x64"):
        jax.config.update("jax_enable_x64", True)
    if runtime.get("compilation_cache"):
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(runtime.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


class RunDirError(OSError):
    """The run directory cannot be created or written."""


def check_writable_directory(path: str, key: str) -> str:
    """Creates `path` if needed and proves a file can be written in it.

    Args:
      path: the directory.
      key: the setting it came from, named in the error (``hydra.run.dir``).

    Returns:
      The absolute path.

    Raises:
      RunDirError: naming the directory, why it cannot be written and the fix.
    """
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        blocker = path
        while not os.path.lexists(blocker) and os.path.dirname(blocker) != blocker:
            blocker = os.path.dirname(blocker)
        why = (f"{blocker} is a file, not a directory" if not os.path.isdir(blocker)
               else f"it cannot be created ({exc.strerror or exc})")
        raise RunDirError(f"cannot write the run directory {path} ({key}): {why}; pass {key}=<a directory you "
                          "can write>") from exc
    try:
        fd, probe = tempfile.mkstemp(prefix=".nas-write-check-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise RunDirError(f"cannot write the run directory {path} ({key}): no file can be created in it "
                          f"({exc.strerror or exc}); make it writable or pass {key}=<a directory you can write>"
                          ) from exc
    return path


def config_dir() -> str:
    """Where the configs live: the one place both the CLI and the Python API read (`CONFIG_DIR`)."""
    return CONFIG_DIR


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``nas-<config_name>`` would run with these command-line overrides.

    Args:
      config_name: ``search``, ``train``, ``eval`` or ``predict``.
      overrides: Hydra override strings, as on the command line.

    Raises:
      settings.SettingsError: an override that is not a string, cannot be
        parsed, or names an unknown key, group or option (the message names it).
    """
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    for o in overrides:
        if not isinstance(o, str) or "=" not in o.lstrip("~"):
            raise settings.SettingsError(f"setting {o!r}: overrides are strings KEY=VALUE as on the command line "
                                         "(e.g. 'train.epochs=5')")
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=config_name):
            return hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        named = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in str(exc)]
        key = named[0].split("=", 1)[0] if named else "?"
        first = " ".join(str(exc).split())
        raise settings.SettingsError(f"setting {key}: {first}") from exc


def check(cfg: DictConfig, *, search: bool) -> None:
    """The CLI's checks of every setting (types, ranges, unknown keys), naming the key; no data is read."""
    settings.train_config(cfg)
    settings.logger_config(cfg.logger)
    if search:
        settings.repair(cfg, settings.strategy(cfg.search), settings.train_config(cfg))
        settings.max_attempts(cfg.search)
        settings.budget(cfg.search)
