"""A trained model on disk: its IR as JSON, its variables as an orbax checkpoint.

Layout of a model directory::

    arch.json        the IR (`Arch.to_json`)
    variables/       orbax StandardCheckpointer: params (+ batch_stats)
    model.json       what makes the model usable on its own (`describe_model`: input
                     shape, task, class names, output count, preprocessing, the
                     data's load arguments), provenance (`provenance`), dataset
                     metadata, training settings and metrics
    checksums.json   SHA-256 of every file under variables/

orbax stores arrays as zstd chunks without a checksum, so a garbled byte there
would load as a wrong weight without any error; checksums.json turns that into
an error naming the file. (Directories written before it existed load without
the check.)

`save_model` and `copy_model` publish a directory atomically (`nas.atomic_io`):
a kill at any moment leaves the complete old model or the complete new one at
the path, plus at most a hidden ``.<name>.tmp-*`` sibling that readers ignore
and the next write deletes. (Where the filesystem cannot swap two directories
in one step, a kill between the two renames that replace it leaves the path
empty for a moment; the next load or save completes that swap.)

`load_model` turns every fault into a `CheckpointError` that names the
directory, the part at fault and what to do.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import re
import shutil
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from nas import atomic_io
from nas.data import Dataset
from nas.ir import Arch
from nas.ir.errors import IRError
from nas.store.provenance import code_version

ARCH_FILE = "arch.json"
METADATA_FILE = "model.json"
VARIABLES_DIR = "variables"
CHECKSUMS_FILE = "checksums.json"
PARTS = (ARCH_FILE, METADATA_FILE, VARIABLES_DIR)

REWRITE = ("rewrite it: for a search's trials/<i> or best/, run the search again in its run directory with "
           "resume=true (or train that architecture again); for a nas-train model/, train again")
NOT_A_MODEL = ("pass a model directory written by nas-train (<run dir>/model) or nas-search "
               "(<run dir>/best, <run dir>/trials/<i>)")


class CheckpointError(RuntimeError):
    """A model directory is missing, incomplete or corrupt.

    Attributes:
      directory: the absolute path of the model directory.
      part: the file or folder at fault, relative to `directory` (None: the directory itself).
    """

    def __init__(self, directory: str, part: str | None, problem: str, remedy: str = REWRITE):
        self.directory = directory
        self.part = part
        where = directory if part is None else os.path.join(directory, part)
        super().__init__(f"{where}: {problem}; {remedy}")


def save_model(directory: str, arch: Arch, variables: dict, metadata: dict[str, Any]) -> str:
    """Writes (arch, variables, metadata) to `directory`, atomically replacing what was there.

    Everything is written into a hidden sibling folder and fsynced, then
    swapped in: a kill at any moment leaves either the previous model or the
    new one at `directory`, never a mix.

    Args:
      directory: the model directory to create or replace.
      arch: the architecture.
      variables: ``params`` (and ``batch_stats``), any array type.
      metadata: JSON-ready dict (numpy scalars/arrays and tuples are converted).

    Returns:
      The absolute path of the model directory.

    A ``provenance`` block in `metadata` (`describe_model` starts one) is
    completed where it leaves keys open (`provenance`): which code wrote the
    model and when, and the trial (from ``metadata["trial"]``); other
    metadata is written as given.
    """
    directory = os.path.abspath(directory)
    if isinstance(metadata.get("provenance"), dict):  # started by `describe_model`: completed at save time
        metadata = dict(metadata, provenance=provenance(**{"trial": metadata.get("trial"), **metadata["provenance"]}))
    # Serialised first: metadata JSON cannot hold fails before anything on disk changes.
    texts = {ARCH_FILE: arch.to_json(), METADATA_FILE: json.dumps(metadata, indent=2, default=_json_default)}
    with atomic_io.staged_directory(directory) as staging:
        for name, text in texts.items():
            with open(os.path.join(staging, name), "w") as f:
                f.write(text)
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(os.path.join(staging, VARIABLES_DIR), jax.device_get(variables))
        checkpointer.wait_until_finished()
        with open(os.path.join(staging, CHECKSUMS_FILE), "w") as f:
            json.dump({"algorithm": "sha256", "files": _checksums(staging)}, f, indent=2)
    return directory


def describe_model(data: Dataset, *, data_args: dict[str, Any] | None,
                   class_names: Sequence[str] | None = None, run_dir: str | None = None) -> dict[str, Any]:
    """The model.json keys that let a model be used without the data it was trained on.

    Args:
      data: the dataset the model was trained on (its normalisation statistics).
      data_args: the `nas.data.load_dataset` arguments that rebuild it (None:
        made from arrays in memory, which nothing can rebuild).
      class_names: the label of each class index, when the labels had names.
      run_dir: the run directory that wrote the model.

    Returns:
      ``input_shape``, ``task``, ``num_outputs``, ``class_names``,
      ``data_args``, ``preprocessing`` (how a raw input becomes what the
      network takes: uint8 inputs divided by 255, as `nas.data.normalise.as_float32`
      does, then ``(x - mean) / std`` over the last axis) and ``provenance``
      (the run directory; `save_model` adds the rest).
    """
    return {
        "input_shape": [int(d) for d in data.input_shape],
        "task": data.task,
        "num_outputs": int(data.num_outputs),
        "class_names": list(class_names) if class_names is not None else None,
        "data_args": dict(data_args) if data_args is not None else None,
        "preprocessing": {"scale_uint8": True, "mean": np.asarray(data.mean, np.float32).tolist(),
                          "std": np.asarray(data.std, np.float32).tolist(), "axis": -1},
        "provenance": {"run_dir": os.path.abspath(run_dir) if run_dir else None},
    }


def provenance(**known: Any) -> dict[str, Any]:
    """Which code wrote a model and when: nas version, git commit (when run from a checkout), JAX version, time.

    Args:
      known: keys already known (``run_dir``, ``trial``...); they win over the defaults.
    """
    return {**_code(), "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **known}


@functools.lru_cache(maxsize=1)
def _code() -> dict[str, Any]:
    # Asked once per process: a search saves many checkpoints and git runs as a subprocess.
    return {**code_version(), "jax": jax.__version__}


def copy_model(source: str, destination: str) -> str:
    """Copies the model directory `source` to `destination`, atomically replacing what was there.

    The source is checked first (its parts exist, its variables match their
    checksums), so a corrupt model is never published under a new name.

    Args:
      source: a model directory written by `save_model`.
      destination: the directory to create or replace (not `source` itself).

    Returns:
      The absolute path of `destination`.

    Raises:
      CheckpointError: `source` is not a complete, intact model directory.
      ValueError: `destination` is `source`.
    """
    source, destination = os.path.abspath(source), os.path.abspath(destination)
    if source == destination:
        raise ValueError(f"copy_model: source and destination are the same directory {source}")
    _check_parts(source)
    _verify_checksums(source)
    with atomic_io.staged_directory(destination) as staging:
        for part in (*PARTS, CHECKSUMS_FILE):
            path = os.path.join(source, part)
            if os.path.isdir(path):
                shutil.copytree(path, os.path.join(staging, part))
            elif os.path.exists(path):
                shutil.copy2(path, os.path.join(staging, part))
    return destination


def load_model(directory: str) -> tuple[Arch, dict, dict[str, Any]]:
    """Reads a directory written by `save_model`.

    Args:
      directory: the model directory.

    Returns:
      (arch, variables, metadata): the validated architecture, ``params`` (and
      ``batch_stats`` when the model has any) and the model.json dict.

    Raises:
      CheckpointError: the directory or one of its parts is missing, truncated
        or corrupt; the message names the file.
    """
    directory = os.path.abspath(directory)
    if not os.path.lexists(directory):
        try:  # a writer that died between the two renames of a swap leaves the model aside
            atomic_io.recover_directory(directory)
        except OSError:
            pass  # read-only place: report it missing
    _check_parts(directory)
    try:
        with open(os.path.join(directory, ARCH_FILE), "rb") as f:
            arch = Arch.from_json(f.read().decode("utf-8")).validate()
    except (OSError, UnicodeDecodeError, IRError) as exc:
        raise CheckpointError(directory, ARCH_FILE, f"is not a readable architecture ({exc})") from exc
    metadata = _read_json(directory, METADATA_FILE)
    if not isinstance(metadata, dict):
        raise CheckpointError(directory, METADATA_FILE, f"holds a JSON {type(metadata).__name__}, not an object")
    _verify_checksums(directory)
    return arch, _restore_variables(directory), metadata


def _check_parts(directory: str) -> None:
    if not os.path.isdir(directory):
        problem = "does not exist" if not os.path.lexists(directory) else "is not a directory"
        raise CheckpointError(directory, None, problem, NOT_A_MODEL)
    missing = [p for p in PARTS if not os.path.exists(os.path.join(directory, p))]
    if len(missing) == len(PARTS):
        raise CheckpointError(directory, None, f"is not a model directory (none of {', '.join(PARTS)})",
                              NOT_A_MODEL)
    if missing:
        raise CheckpointError(directory, missing[0], "is missing (the model directory is incomplete)")


def _read_json(directory: str, part: str) -> Any:
    try:
        with open(os.path.join(directory, part), "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(directory, part, f"is truncated or not JSON ({exc})") from exc


def _checksums(directory: str) -> dict[str, str]:
    """SHA-256 of every file under variables/, by path relative to `directory` ('/'-separated)."""
    found = {}
    for root, dirs, files in os.walk(os.path.join(directory, VARIABLES_DIR)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory).replace(os.sep, "/")] = _sha256(path)
    return found


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_checksums(directory: str) -> None:
    """Compares variables/ with checksums.json (when the directory has one)."""
    if not os.path.exists(os.path.join(directory, CHECKSUMS_FILE)):
        return  # written before checksums existed
    recorded = _read_json(directory, CHECKSUMS_FILE)
    files = recorded.get("files") if isinstance(recorded, dict) else None
    if not isinstance(files, dict) or recorded.get("algorithm") != "sha256":
        raise CheckpointError(directory, CHECKSUMS_FILE, "is not a checksum list written by save_model")
    for part, expected in sorted(files.items()):
        path = os.path.join(directory, *part.split("/"))
        if not os.path.isfile(path):
            raise CheckpointError(directory, part, "is missing (listed in checksums.json)")
        if _sha256(path) != expected:
            raise CheckpointError(directory, part, "is corrupt: its SHA-256 differs from the one recorded "
                                  "in checksums.json when it was saved")


def _restore_variables(directory: str) -> dict:
    variables_dir = os.path.join(directory, VARIABLES_DIR)
    index = os.path.join(variables_dir, "_METADATA")
    part = f"{VARIABLES_DIR}/_METADATA"
    if not os.path.isfile(index):  # orbax's own error would not say which file
        raise CheckpointError(directory, part, "is missing (orbax's index of the saved arrays)")
    _read_json(directory, part)
    try:
        variables = ocp.StandardCheckpointer().restore(variables_dir)
    except Exception as exc:  # orbax/tensorstore raise ValueError, OSError, KeyError...
        raise CheckpointError(directory, _named_file(str(exc), directory) or VARIABLES_DIR + "/",
                              f"cannot be restored by orbax ({_first_line(exc)})") from exc
    if not isinstance(variables, dict) or "params" not in variables:
        raise CheckpointError(directory, VARIABLES_DIR + "/", "holds no 'params' tree")
    return {k: v for k, v in variables.items() if v}  # orbax keeps an empty batch_stats


def _named_file(message: str, directory: str) -> str | None:
    """The last file under `directory` that an orbax/tensorstore message names, relative to it."""
    named = None
    for path in re.findall(r'"([^"]+)"', message):
        if path.startswith(directory + os.sep) and os.path.isfile(path):
            named = os.path.relpath(path, directory)
    return named


def _first_line(exc: Exception) -> str:
    text = str(exc).split("\n")[0].split(" [tensorstore_spec=")[0]
    return f"{type(exc).__name__}: {text[:400]}"


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
