"""Which data a run trains on, and which data a saved model is evaluated or completed with.

`DataSpec` is a dataset with how it was made (its ``load_dataset``
arguments, or None for arrays in memory) and its class names. The rest
rebuilds the dataset of a checkpoint: from its ``data_args`` (the
arguments nas-train and nas-search record), or, for checkpoints written
before they were recorded, from the dataset description and the source's
data config, accepted only when the rebuilt splits have exactly the recorded
sizes (same sizes from the same seed mean the same splits: every split is
drawn by size from one seeded generator).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import numpy as np
from omegaconf import OmegaConf

from nas.checkpoint import METADATA_FILE, describe_model
from nas.api import config as api_config, settings
from nas.compile.flax_module import init_variables, to_flax
from nas.data import Dataset
from nas.ir import Arch
from nas.ir.errors import InvalidArchError

# What a rebuilt dataset must reproduce from the recorded description to be the same data.
_RECORDED_KEYS = ("task", "input_shape", "num_classes", "num_train", "num_val", "num_test")


class EvalDataError(ValueError):
    """The dataset to evaluate a checkpoint on cannot be determined, or does not fit the model."""


@dataclasses.dataclass(frozen=True, eq=False)
class DataSpec:
    """A run's dataset and what a saved model records of it.

    Attributes:
      dataset: the split, normalised data.
      data_args: the `nas.data.load_dataset` arguments that rebuild it; None
        for arrays in memory.
      class_names: the label of each class index, when the labels had names.
    """

    dataset: Dataset
    data_args: dict[str, Any] | None = None
    class_names: tuple[str, ...] | None = None

    def describe(self, run_dir: str | None = None) -> dict[str, Any]:
        """model.json keys for a model trained on it (`nas.checkpoint.describe_model`)."""
        return describe_model(self.dataset, data_args=self.data_args, class_names=self.class_names, run_dir=run_dir)


def from_data_config(cfg: Any) -> DataSpec:
    """The dataset a ``data`` config group names (``data=digits``, ``data=npz data.path=...``)."""
    args = settings.data_arguments(cfg)
    return DataSpec(settings.dataset(args), args)


def data_arguments(checkpoint: str, metadata: dict[str, Any], chosen: dict[str, Any] | None,
                   overrides: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The `load_dataset` arguments to evaluate a checkpoint with.

    Args:
      checkpoint: the model directory (named in errors).
      metadata: its model.json.
      chosen: arguments of a ``data=`` config given on the command line (None: not given).
      overrides: ``data_overrides``, applied last.

    Returns:
      (arguments, rebuilt): rebuilt is True when they were reconstructed from
      the recorded dataset description, which the caller must then check with
      `check_rebuilt`.

    Raises:
      EvalDataError: nothing says which dataset, or the description is ambiguous.
    """
    rebuilt = False
    if chosen is not None:
        args = dict(chosen)
    elif isinstance(metadata.get("data_args"), dict):
        args = dict(metadata["data_args"])
    else:
        args, rebuilt = _from_description(checkpoint, metadata.get("dataset")), True
    args.update(overrides)
    if args.get("image_size") is not None:
        args["image_size"] = tuple(args["image_size"])
    return args, rebuilt


def _from_description(checkpoint: str, described: Any) -> dict[str, Any]:
    """`load_dataset` arguments from an old model.json's dataset description and the source's data config."""
    path = os.path.join(checkpoint, METADATA_FILE)
    if not isinstance(described, dict) or not isinstance(described.get("name"), str):
        raise EvalDataError(
            f"{path} records neither 'data_args' nor a dataset name, so the data this model was trained on is "
            f"unknown; name it: nas-eval checkpoint={checkpoint} data=<digits|fashion_mnist|npz|image_folder|tfds> "
            "(plus data.seed=... and any other data.* setting the model was trained with)")
    name = described["name"]
    kind = name.partition(":")[0]
    config = os.path.join(api_config.CONFIG_DIR, "data", f"{kind}.yaml")
    if not os.path.isfile(config):
        raise EvalDataError(
            f"{path} records no 'data_args' and its dataset {name!r} has no data config ({config}) to rebuild them "
            f"from (a model trained on arrays in memory records no source); name the data: nas-eval "
            f"checkpoint={checkpoint} data=<config> data.<setting>=..., e.g. data=npz data.path=<your arrays.npz>")
    # Only the plain settings: `name` is an interpolation of `path`/`dataset`, which the recorded name already holds.
    defaults = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
    args = {"name": name, **{k: v for k, v in defaults.items() if k not in ("name", "path", "dataset")}}
    if described.get("seed") is not None:
        args["seed"] = int(described["seed"])
    args["regression"] = described.get("task") == "regression"
    if kind == "image_folder" and described.get("height") and described.get("width"):
        args["image_size"] = (int(described["height"]), int(described["width"]))
    return args


def check_rebuilt(checkpoint: str, described: dict[str, Any], data: Dataset, args: dict[str, Any]) -> None:
    """Raises `EvalDataError` unless `data` has the recorded shapes, classes and split sizes."""
    got = data.metadata()
    differ = [k for k in _RECORDED_KEYS if k in described and described[k] != got[k]]
    if differ:
        shown = ", ".join(f"{k} {described[k]} recorded vs {got[k]} rebuilt" for k in differ)
        settings_shown = ", ".join(f"{k}={v!r}" for k, v in sorted(args.items()))
        raise EvalDataError(
            f"{os.path.join(checkpoint, METADATA_FILE)} records no 'data_args' (written before nas-search "
            f"recorded them), and rebuilding its dataset with {settings_shown} does not reproduce it ({shown}); "
            f"pass the settings it was trained with, e.g. nas-eval checkpoint={checkpoint} "
            f"data={args['name'].partition(':')[0]} data.val_fraction=... data.test_fraction=... data.max_train=... "
            "(or +data_overrides.<setting>=...)")


def check_fits(checkpoint: str, arch: Arch, variables: dict, data: Dataset) -> None:
    """Raises `EvalDataError` unless the model takes `data`'s inputs and gives one output per target.

    Checks the architecture's declared input shape, its output width against
    the classes (1 for regression), and that the stored variables have the
    shapes the architecture has on these inputs (an undeclared input shape is
    otherwise only caught as a shape error deep inside Flax).
    """
    where = f"the model in {checkpoint} does not fit dataset {data.name!r}"
    try:
        arch.validate(data.input_shape)
        out = arch.output_shape(data.input_shape)
    except InvalidArchError as exc:
        raise EvalDataError(f"{where} (input shape {list(data.input_shape)}): {exc}; evaluate it on the data it "
                            "was trained on (see model.json's 'dataset')") from exc
    if out[-1] != data.num_outputs:
        needs = f"{data.num_classes} classes" if data.task == "classification" else "1 regression output"
        raise EvalDataError(f"{where}: it outputs {out[-1]} values per example but the data has {needs}; "
                            "evaluate it on the data it was trained on (see model.json's 'dataset')")
    expected = jax.eval_shape(lambda: init_variables(to_flax(arch), jax.random.PRNGKey(0), data.input_shape))
    # By key string: init may give FrozenDicts where orbax gives dicts.
    flat_stored = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(variables)}
    for path, leaf in jax.tree_util.tree_leaves_with_path(expected):
        name = jax.tree_util.keystr(path)
        stored = flat_stored.get(name)
        if stored is None or tuple(stored.shape) != tuple(leaf.shape):
            got = "missing" if stored is None else f"shape {list(stored.shape)}"
            raise EvalDataError(f"{where}: on inputs of shape {list(data.input_shape)} the variable {name} should "
                                f"have shape {list(leaf.shape)} but the checkpoint's is {got}; evaluate it on the "
                                "data it was trained on (see model.json's 'dataset')")


def completed_metadata(checkpoint: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """model.json with `describe_model`'s keys; an old checkpoint without them gets them from its rebuilt dataset.

    Raises:
      EvalDataError: they are missing and the dataset cannot be rebuilt.
    """
    if isinstance(metadata.get("preprocessing"), dict) and "input_shape" in metadata and "task" in metadata:
        return metadata
    args, rebuilt = data_arguments(checkpoint, metadata, None, {})
    data = settings.dataset(args)
    if rebuilt:
        check_rebuilt(checkpoint, metadata.get("dataset") or {}, data, args)
    described = describe_model(data, data_args=args)
    described.pop("provenance")
    return {**described, **metadata, "preprocessing": described["preprocessing"]}


def renormalised(data: Dataset, mean: Sequence[float], std: Sequence[float]) -> Dataset:
    """`data` standardised with another model's statistics instead of its own training split's.

    New data evaluated with a saved model must look as the model's training
    inputs did: undo this dataset's (x * std + mean), then apply the model's.
    """
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def convert(x: np.ndarray) -> np.ndarray:
        return (((x * data.std + data.mean) - mean) / std).astype(np.float32)

    return dataclasses.replace(data, x_train=convert(data.x_train), x_val=convert(data.x_val),
                               x_test=convert(data.x_test), mean=mean, std=std)
