"""A trained model as a Python object: predict on raw inputs, save, export, load.

A `Model` is the architecture, its variables and the model.json metadata
that makes it self-contained (`nas.checkpoint.describe_model`): input shape,
task, class names and the preprocessing a raw input needs. `predict` takes
inputs as the user had them (uint8 pixels or floats, HW or HWC images) and
applies that preprocessing itself, so a model never silently sees mis-scaled
inputs.

Checkpoints written before model.json recorded the preprocessing still load:
their statistics are recomputed from the dataset their ``data_args`` (or
dataset description) rebuild, as nas-eval does (`nas.api.datasource`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Mapping

import jax
import numpy as np

from nas import checkpoint
from nas.compile.flax_module import to_flax
from nas.data.normalise import as_float32
from nas.ir import Arch

PREDICT_BATCH = 1024  # examples per compiled call; the last batch is padded so one program serves all


class NotAClassifierError(ValueError):
    """predict_proba was asked of a regression model."""


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A trained architecture with what it needs to run on raw inputs.

    Attributes:
      arch: the architecture (`nas.ir.Arch`).
      variables: ``params`` (and ``batch_stats``).
      metadata: the model.json dict (`describe_model`'s keys, provenance,
        metrics, training settings).
      path: the model directory it was loaded from or saved to (None: only in memory).
    """

    arch: Arch
    variables: dict = dataclasses.field(repr=False)
    metadata: Mapping[str, Any] = dataclasses.field(repr=False)
    path: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.metadata["input_shape"])

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def class_names(self) -> tuple[str, ...] | None:
        names = self.metadata.get("class_names")
        return tuple(names) if names is not None else None

    @property
    def preprocessing(self) -> dict[str, Any]:
        """``scale_uint8``, per-channel ``mean`` and ``std`` (lists), ``axis``: what `predict` applies."""
        return dict(self.metadata["preprocessing"])

    @property
    def provenance(self) -> dict[str, Any]:
        """nas version, git commit, JAX version, creation time, run directory and trial."""
        return dict(self.metadata.get("provenance") or {})

    @property
    def num_params(self) -> int:
        return int(self.arch.num_params(self.input_shape))

    @property
    def metrics(self) -> dict[str, Any]:
        """What the run measured (nas-train's metrics; a search trial's score, error, t_tr...)."""
        keys = ("score", "error", "objective", "t_tr", "num_params", "epochs")
        return dict(self.metadata.get("metrics") or {k: self.metadata[k] for k in keys if k in self.metadata})

    def summary(self) -> str:
        """The architecture's layer table on this model's input shape."""
        return self.arch.summary(self.input_shape)

    def prepare(self, x: Any) -> np.ndarray:
        """Raw inputs -> what the network takes: shape checked, uint8 scaled, standardised (float32).

        Accepts (N, *input_shape); for models whose inputs have one channel
        also (N, *input_shape[:-1]) (HW images, scalar features).

        Raises:
          ValueError: the inputs' shape does not fit the model (names both shapes).
        """
        x = np.asarray(x)
        shape = self.input_shape
        if shape[-1] == 1 and x.shape[1:] == shape[:-1]:
            x = x[..., None]
        if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
            accepted = f"(N, {', '.join(map(str, shape))})"
            if shape[-1] == 1:
                accepted += f" or (N, {', '.join(map(str, shape[:-1]))})" if len(shape) > 1 else " or (N,)"
            raise ValueError(f"inputs of shape {x.shape} do not fit this model: it takes {accepted}")
        if x.dtype.kind not in "biuf":
            raise ValueError(f"inputs have dtype {x.dtype}; they must be numbers (uint8 pixels or floats)")
        pre = self.preprocessing
        scaled = as_float32(x) if pre.get("scale_uint8", True) else x.astype(np.float32)
        mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
        return ((scaled - mean) / std).astype(np.float32)

    def outputs(self, x: Any, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """The network's raw outputs (logits, or the regression value) on raw inputs, (N, num_outputs)."""
        prepared = self.prepare(x)
        if len(prepared) == 0:
            return np.zeros((0, int(self.metadata["num_outputs"])), np.float32)
        batch = max(1, min(batch_size, len(prepared)))
        program = _forward(self.arch)
        chunks = []
        for start in range(0, len(prepared), batch):
            part = prepared[start:start + batch]
            padded = np.concatenate([part, np.zeros((batch - len(part), *part.shape[1:]), part.dtype)]) \
                if len(part) < batch else part
            chunks.append(np.asarray(program(self.variables, padded))[:len(part)])
        return np.concatenate(chunks).astype(np.float32)

    def predict(self, x: Any, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Class labels (the class names when the model has them, else indices), or regression values.

        Args:
          x: raw inputs, as the model's training inputs were given (uint8 or float).
          batch_size: examples per compiled call.
        """
        out = self.outputs(x, batch_size)
        if self.task == "regression":
            return out[:, 0]
        indices = out.argmax(axis=-1)
        names = self.class_names
        return np.asarray(names, dtype=object)[indices].astype(str) if names is not None else indices

    def predict_proba(self, x: Any, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Class probabilities (softmax of the outputs), (N, classes), columns in class index order.

        Raises:
          NotAClassifierError: the model is a regression model.
        """
        if self.task != "classification":
            raise NotAClassifierError("predict_proba needs a classification model; this one is a regression "
                                      "model: use predict")
        return np.asarray(jax.nn.softmax(self.outputs(x, batch_size), axis=-1))

    def save(self, path: str) -> str:
        """Writes the model directory (atomically; see `nas.checkpoint.save_model`); returns its absolute path."""
        return checkpoint.save_model(path, self.arch, self.variables, dict(self.metadata))

    def export(self, path: str, format: str = "stablehlo") -> str:
        """Writes a portable copy that takes raw inputs (preprocessing included); returns the written path.

        Args:
          path: the file to write.
          format: ``stablehlo`` (`jax.export`, no TensorFlow) or ``onnx`` (the ``onnx`` extra).
        """
        from nas.compile.export import export_model  # only exporting needs the exporters

        pre = self.preprocessing
        return export_model(self.arch, self.variables, path, format=format, input_shape=self.input_shape,
                            mean=np.asarray(pre["mean"], np.float32), std=np.asarray(pre["std"], np.float32),
                            scale_uint8=bool(pre.get("scale_uint8", True)))

    def __repr__(self) -> str:
        where = f", path={self.path!r}" if self.path else ""
        return (f"Model({self.arch.name!r}, task={self.task!r}, input_shape={self.input_shape}, "
                f"num_params={self.num_params:,}{where})")


@functools.lru_cache(maxsize=32)
def _forward(arch: Arch):
    module = to_flax(arch)
    return jax.jit(lambda variables, x: module.apply(variables, x, train=False))


def load(path: str) -> Model:
    """Reads a model directory (nas-train's model/, a search's best/ or trials/<i>/, or `Model.save`).

    Raises:
      nas.checkpoint.CheckpointError: the directory is missing or damaged (names the file).
      nas.api.datasource.EvalDataError: an old checkpoint without recorded
        preprocessing whose dataset cannot be rebuilt.
    """
    from nas.api.datasource import completed_metadata

    arch, variables, metadata = checkpoint.load_model(path)
    directory = os.path.abspath(path)
    return Model(arch, variables, completed_metadata(directory, metadata), directory)
