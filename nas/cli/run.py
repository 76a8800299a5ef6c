"""What every entry point does around its job: JAX set-up, run directory, final report."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
from omegaconf import DictConfig

# Configs live in the repository's top-level conf/ (the design card's layout).
# Hydra would read a relative config_path as a Python package when the entry
# point runs as an installed module, so it gets this absolute directory.
CONFIG_DIR = os.environ.get(
    "NAS_CONFIG_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "conf"))


def configure_jax(runtime: DictConfig) -> None:
    # orbax logs every checkpoint step at INFO through absl; Hydra shows INFO.
    logging.getLogger("absl").setLevel(logging.WARNING)
    if runtime.get("enable_x64"):
        jax.config.update("jax_enable_x64", True)
    if runtime.get("compilation_cache"):
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(runtime.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return os.path.abspath(HydraConfig.get().runtime.output_dir)


def report(directory: str, results: dict[str, Any]) -> dict[str, Any]:
    """Writes results.json and prints the same object as one JSON line (last line of output)."""
    path = os.path.join(directory, "results.json")
    results = dict(results, results_path=path)
    with open(path, "w") as f:
        json.dump(results, f, indent=2, default=str)
    print(json.dumps(results, default=str), flush=True)
    return results
