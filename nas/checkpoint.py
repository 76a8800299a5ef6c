"""A trained model on disk: its IR as JSON, its variables as an orbax checkpoint.

Layout of a model directory::

    arch.json        the IR (`Arch.to_json`)
    variables/       orbax StandardCheckpointer: params (+ batch_stats)
    model.json       dataset metadata, training settings and metrics
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from nas.ir import Arch


class CheckpointError(RuntimeError):
    """A model directory is missing or incomplete."""


def save_model(directory: str, arch: Arch, variables: dict, metadata: dict[str, Any]) -> str:
    """Writes (arch, variables, metadata) to `directory`, replacing what was there.

    Returns:
      The absolute path of the model directory.
    """
    directory = os.path.abspath(directory)
    if os.path.exists(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    with open(os.path.join(directory, "arch.json"), "w") as f:
        f.write(arch.to_json())
    with open(os.path.join(directory, "model.json"), "w") as f:
        json.dump(metadata, f, indent=2, default=_json_default)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, "variables"), jax.device_get(variables))
    checkpointer.wait_until_finished()
    return directory


def load_model(directory: str) -> tuple[Arch, dict, dict[str, Any]]:
    """Reads a directory written by `save_model`: (arch, variables, metadata)."""
    directory = os.path.abspath(directory)
    for part in ("arch.json", "model.json", "variables"):
        if not os.path.exists(os.path.join(directory, part)):
            raise CheckpointError(
                f"{directory} is not a model directory: {part} is missing "
                "(expected the output of nas-train or nas-search)")
    with open(os.path.join(directory, "arch.json")) as f:
        arch = Arch.from_json(f.read()).validate()
    with open(os.path.join(directory, "model.json")) as f:
        metadata = json.load(f)
    variables = ocp.StandardCheckpointer().restore(os.path.join(directory, "variables"))
    variables = {k: v for k, v in variables.items() if v}  # orbax keeps an empty batch_stats
    return arch, variables, metadata


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
