"""Exports a trained architecture as a portable inference program.

The exported program takes RAW inputs, shaped (batch, *input_shape), and does
everything `nas.data` and the trainer do to them before the network sees them,
so a user needs neither nas nor the normalisation statistics to run it:

1. uint8 pixels become float32 in [0, 1] (``x / 255``, as
   `nas.data.normalise.as_float32`) when ``scale_uint8``; otherwise the input
   is float32;
2. ``(x - mean) / std`` per channel (last axis), when mean/std are given (as
   `nas.data.normalise.standardise`);
3. the network in inference mode: BatchNorm uses its running statistics,
   Dropout is off.

It returns the network's outputs (logits for classification, values for
regression), one array per output node.

Formats (`FORMATS`):

- ``stablehlo``: `jax.export` serialised StableHLO, lowered for CPU, CUDA and
  TPU, with a symbolic batch dimension. Portable, no TensorFlow; run it with
  `load_stablehlo` (JAX only, no nas IR).
- ``onnx``: an ONNX model converted by jax2onnx (the optional extra
  ``pip install 'nas[onnx]'``), with a dynamic batch dimension; run it with
  onnxruntime or any ONNX runtime that supports opset `ONNX_OPSET`.

Both write a JSON sidecar ``<path>.json`` (`SIDECAR_SUFFIX`) describing the
input (shape, dtype), the preprocessing, the outputs and the versions; the
ONNX file carries the same entries in its ``metadata_props``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import warnings
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import nas
from nas.atomic_io import write_bytes_atomic, write_json_atomic
from nas.compile.flax_module import init_variables, to_flax
from nas.ir import Arch

FORMATS = ("stablehlo", "onnx")
# Bumped when the exported program's contract (inputs, preprocessing, sidecar keys) changes.
FORMAT_VERSION = 1
SIDECAR_SUFFIX = ".json"
# Lowered for every platform JAX serves, so one file runs wherever the user's JAX runs
# (lowering needs no such device here: the program has no platform-specific custom calls).
STABLEHLO_PLATFORMS = ("cpu", "cuda", "tpu")
# Opset 18 (2022; onnxruntime >= 1.14 reads it): jax2onnx writes ReduceMean with its axes as an
# input, which opset 17 rejects. Every op of the IR converts at 18 (tests/test_export.py).
ONNX_OPSET = 18
ONNX_INSTALL_HINT = "pip install 'nas[onnx]'"
INPUT_NAME = "x"
BATCH = "batch"


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What the exported program expects and does before the network.

    Attributes:
      input_shape: per-example shape, without the batch axis.
      scale_uint8: the input is uint8 pixels, mapped to [0, 1] first; else the
        input is float32.
      mean, std: per-channel (last axis) statistics of the training split, or
        None for no standardisation (both or neither).
    """

    input_shape: tuple[int, ...]
    scale_uint8: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.scale_uint8 else np.float32)

    def input_struct(self) -> jax.ShapeDtypeStruct:
        """The input with a symbolic batch dimension (any batch size >= 1)."""
        (batch,) = jax.export.symbolic_shape(BATCH)
        return jax.ShapeDtypeStruct((batch, *self.input_shape), self.input_dtype)

    def to_json(self) -> dict[str, Any]:
        return {
            "input": {"name": INPUT_NAME, "shape": [BATCH, *self.input_shape], "dtype": self.input_dtype.name},
            "preprocessing": {
                "scale_uint8": self.scale_uint8,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std),
            },
        }


def make_spec(input_shape: Sequence[int], mean=None, std=None, scale_uint8: bool = True) -> ExportSpec:
    """Checks the preprocessing arguments of `export_model` and returns them as a spec.

    Raises:
      ValueError: naming the argument at fault (input_shape, mean, std).
    """
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a sequence of positive integers, got {input_shape!r}") from None
    if not shape or any(d < 1 for d in shape) or any(d != s for d, s in zip(shape, input_shape)):
        raise ValueError(f"input_shape must be a non-empty sequence of positive integers, got {input_shape!r}")
    if (mean is None) != (std is None):
        raise ValueError("mean and std must be given together (or neither), got "
                         f"mean={'None' if mean is None else 'an array'}, std={'None' if std is None else 'an array'}")
    if mean is None:
        return ExportSpec(shape, bool(scale_uint8))
    channels = shape[-1]
    stats = {}
    for name, value in (("mean", mean), ("std", std)):
        array = np.asarray(value, dtype=np.float64).reshape(-1)
        if array.size == 1:
            array = np.repeat(array, channels)
        if array.size != channels:
            raise ValueError(f"{name} must hold one value per channel (the last axis of input_shape {shape}: "
                             f"{channels}), got shape {np.shape(value)}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite, got {array.tolist()}")
        # float32, as nas.data keeps them, so the export computes what training saw.
        stats[name] = tuple(float(v) for v in array.astype(np.float32))
    if min(stats["std"]) <= 0:
        raise ValueError(f"std must be positive, got {list(stats['std'])}")
    return ExportSpec(shape, bool(scale_uint8), stats["mean"], stats["std"])


def inference_function(arch: Arch, variables: dict, spec: ExportSpec) -> Callable[[jax.Array], Any]:
    """The exported computation: raw batch -> preprocessing -> network in inference mode.

    Args:
      arch: the architecture.
      variables: its ``params`` (and ``batch_stats``), e.g. a `TrainResult`'s.
      spec: input and preprocessing (`make_spec`).
    Returns:
      A pure function of one array (batch, *spec.input_shape); the weights are
      baked in as constants.
    Raises:
      ValueError: the variables do not fit the architecture (naming the
        collection and node).
      nas.ir.InvalidArchError: the architecture is invalid for the input shape.
    """
    module = to_flax(arch, input_shape=spec.input_shape)
    kept = _checked_variables(module, variables, spec.input_shape)
    mean = None if spec.mean is None else jnp.asarray(spec.mean, jnp.float32)
    std = None if spec.std is None else jnp.asarray(spec.std, jnp.float32)

    def predict(x):
        x = x.astype(jnp.float32)
        if spec.scale_uint8:
            x = x / jnp.float32(255.0)
        if mean is not None:
            x = (x - mean) / std
        return module.apply(kept, x, train=False)

    return predict


def export_model(arch: Arch, variables: dict, path: str | os.PathLike, *, format: str,
                 input_shape: tuple[int, ...], mean=None, std=None, scale_uint8: bool = True) -> str:
    """Writes `arch` with its trained `variables` as one inference program file.

    Args:
      arch: the architecture.
      variables: its ``params`` (and ``batch_stats``).
      path: the file to write (e.g. ``model.stablehlo``, ``model.onnx``); its
        folder is created. The sidecar goes to ``<path>.json``. Both are
        replaced atomically.
      format: one of `FORMATS`.
      input_shape: per-example input shape, without the batch axis.
      mean, std: per-channel standardisation statistics (e.g. a `Dataset`'s), or
        None for inputs the network takes as they are.
      scale_uint8: the program takes uint8 pixels and divides them by 255 first;
        False: it takes float32. (A network that starts with an Embedding
        takes token ids: pass False and no mean/std; the ids travel as float32
        and the Embedding casts them to int32, as in training.)
    Returns:
      The absolute path of the exported file.
    Raises:
      ValueError: an unknown format, or bad arguments (named).
      ImportError: ``format="onnx"`` without the ``onnx`` extra installed.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    spec = make_spec(input_shape, mean, std, scale_uint8)
    predict = inference_function(arch, variables, spec)
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    metadata = _metadata(arch, spec, format, os.path.basename(path))
    if format == "stablehlo":
        exported = jax.export.export(jax.jit(predict), platforms=STABLEHLO_PLATFORMS)(spec.input_struct())
        write_bytes_atomic(path, bytes(exported.serialize()))
    else:
        write_bytes_atomic(path, _to_onnx(predict, spec, arch, metadata))
    write_json_atomic(path + SIDECAR_SUFFIX, metadata)
    return path


def load_stablehlo(path: str | os.PathLike) -> Callable[[np.ndarray], Any]:
    """Loads a ``stablehlo`` export as a function of a raw numpy batch.

    Needs JAX only (no nas IR, no Flax). The function checks the input's shape
    and dtype against the exported ones and returns numpy arrays (a tuple for
    an architecture with several outputs).

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the file is not a serialised `jax.export` program (naming it).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    try:
        exported = jax.export.deserialize(bytearray(blob))
    except Exception as e:  # flatbuffers/MLIR raise assorted types on garbage
        raise ValueError(f"{path}: not a serialised jax.export StableHLO program ({type(e).__name__}: {e})") from e
    (aval,) = exported.in_avals
    expected_shape, expected_dtype = tuple(aval.shape[1:]), np.dtype(aval.dtype)
    call = jax.jit(exported.call)

    def run(x: np.ndarray):
        x = np.asarray(x)
        if x.ndim != 1 + len(expected_shape) or tuple(x.shape[1:]) != expected_shape or x.shape[0] < 1:
            raise ValueError(f"{path}: expects a batch of shape (batch>=1, {', '.join(map(str, expected_shape))}), "
                             f"got {x.shape}")
        if x.dtype != expected_dtype:
            if expected_dtype == np.uint8 or not np.issubdtype(x.dtype, np.number):
                # Casting floats to uint8 would silently wrap or truncate pixels.
                raise TypeError(f"{path}: expects {expected_dtype.name} inputs, got {x.dtype.name}")
            x = x.astype(expected_dtype)
        return jax.tree.map(np.asarray, call(x))

    return run


# ---------------------------------------------------------------------------- helpers
def _checked_variables(module, variables: dict, input_shape: tuple[int, ...]) -> dict:
    """``params``/``batch_stats`` as float32, after checking they fit the architecture."""
    if not isinstance(variables, dict) or "params" not in variables:
        raise ValueError("variables must be a dict with a 'params' collection (and 'batch_stats' for BatchNorm), "
                         f"got {type(variables).__name__}"
                         + (f" with keys {sorted(variables)}" if isinstance(variables, dict) else ""))
    expected = jax.eval_shape(lambda: init_variables(module, jax.random.key(0), input_shape))
    kept = {}
    for collection, want in expected.items():
        got = variables.get(collection)
        if got is None:
            raise ValueError(f"variables lack the {collection!r} collection the architecture needs")
        for node_id, leaves in want.items():
            if node_id not in got:
                raise ValueError(f"variables[{collection!r}] lack node {node_id!r}")
            for name, leaf in leaves.items():
                have = got[node_id].get(name) if isinstance(got[node_id], dict) else None
                if have is None or tuple(np.shape(have)) != tuple(leaf.shape):
                    raise ValueError(f"variables[{collection!r}][{node_id!r}][{name!r}] should have shape "
                                     f"{tuple(leaf.shape)}, got {None if have is None else np.shape(have)}")
        # The program is float32 (what ONNX runtimes and accelerators serve), also for a float64-trained model.
        kept[collection] = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), {k: got[k] for k in want})
    return kept


def _metadata(arch: Arch, spec: ExportSpec, format: str, filename: str) -> dict[str, Any]:
    shapes = arch.shapes(spec.input_shape)
    meta = {
        "format": format,
        "format_version": FORMAT_VERSION,
        "file": filename,
        **spec.to_json(),
        "outputs": [{"name": node_id, "shape": [BATCH, *shapes[node_id]], "dtype": "float32"}
                    for node_id in arch.outputs],
        "architecture": {"name": arch.name, "structural_hash": arch.structural_hash()},
        "nas_version": nas.__version__,
        "jax_version": jax.__version__,
    }
    if format == "stablehlo":
        meta["platforms"] = list(STABLEHLO_PLATFORMS)
    else:
        meta["onnx_opset"] = ONNX_OPSET
    return meta


def _to_onnx(predict: Callable, spec: ExportSpec, arch: Arch, metadata: dict) -> bytes:
    """The serialised ONNX model of `predict`, with `metadata` in its metadata_props."""
    try:
        with _quiet_converter():
            import jax2onnx
            import onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs jax2onnx and onnx ({e}): {ONNX_INSTALL_HINT}") from e
    with _quiet_converter():
        model = jax2onnx.to_onnx(predict, [spec.input_struct()], model_name=arch.name or "nas_model",
                                 opset=ONNX_OPSET, input_names=[INPUT_NAME], output_names=list(arch.outputs))
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value in metadata.items()})
    model.producer_name, model.producer_version = "nas", nas.__version__
    return model.SerializeToString()


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """Silences jax2onnx's chatter during a conversion.

    jax2onnx 0.13 prints DEBUG lines from its Flax Conv plugin, logs a traceback
    for each optional plugin (dm_pix) that fails to import against newer JAX,
    onnx_ir warns about shape-only constants it leaves untyped, and both use
    JAX APIs JAX deprecates; none of it concerns the model (the tests check
    the result against Flax). Real failures still raise. Not thread-safe
    (stdout is process-wide).
    """
    loggers = [logging.getLogger(name) for name in ("jax2onnx", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="jax2onnx")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
