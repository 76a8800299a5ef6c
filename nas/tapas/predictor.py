"""TAP, the train-less accuracy predictor (NeuNetS section 4.1.2, Figures 6 and 8).

Two stacked LSTMs (50 and 100 units) read an architecture layer by layer. Step
t sees the pair (layer t-1, layer t) of `nas.tapas.encoding` vectors, the first
half carrying the accuracy field A_{t-1} of the sub-network up to layer t-1
(1/N_classes before the first layer); the dataset's DCN is concatenated to the
second LSTM's output, and a Dense(1) + sigmoid gives A_t, the accuracy of the
sub-network up to layer t. The last step's A_N is the network's predicted peak
validation accuracy.

Prediction is autoregressive: A_t is fed into step t+1. Training feeds the
known A_t where the example has one (teacher forcing: the incrementally
trained prefixes of experiments/lde_init.py give many) and otherwise the
model's own previous prediction, as at prediction time (with a stop_gradient:
the loss is on what each step predicts from what it is fed). The loss is the
mean squared error over the steps with a known accuracy.

Every static feature is standardised with the training examples' mean and
standard deviation (stored with the model); the accuracy field and the DCN are
fed as they are, both already in [0, 1]. (The pair's second accuracy field,
always 0 in the paper's Figure 8, is left out: a constant input carries nothing.)

Trained with optax's RMSprop (learning rate 1e-3), He-normal initialisation
of the input kernels and the output layer, batches of 512, all as the paper.
Saved as a directory: ``tap.json`` (format, `ENCODING_VERSION`, config,
standardisation, datasets and DCNs used, LDE size at training time) and
``params/`` (an orbax StandardCheckpointer).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import math
import os
import time
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from nas import atomic_io
from nas.ir import Arch
from nas.tapas import encoding
from nas.tapas.examples import TrainingExample

log = logging.getLogger(__name__)

FORMAT = "nas.tap"
METADATA_FILE = "tap.json"
PARAMS_DIR = "params"
BUCKET = 16            # sequences are padded to a multiple of this: few compiled shapes
PREDICT_CHUNK = 1024   # archs per compiled prediction call


class TAPError(RuntimeError):
    """A TAP cannot be trained, loaded or used; the message names the directory or the input at fault."""


@dataclasses.dataclass(frozen=True)
class TAPConfig:
    """TAP's training settings (the paper's, but epochs).

    Attributes:
      lstm_units: hidden units of the two stacked LSTMs.
      learning_rate: RMSprop's learning rate.
      batch_size: examples per step (smaller data sets use one batch of all).
      epochs: passes over the examples.
      seed: initialisation and shuffling; the same seed and examples give the same TAP.
      tau: the DCN neighbourhood the examples were selected with (recorded, not used by `fit`).
    """

    lstm_units: tuple[int, int] = (50, 100)
    learning_rate: float = 1e-3
    batch_size: int = 512
    epochs: int = 200
    seed: int = 0
    tau: float = 0.05

    def __post_init__(self):
        object.__setattr__(self, "lstm_units", tuple(int(u) for u in self.lstm_units))
        if len(self.lstm_units) != 2 or min(self.lstm_units) < 1:
            raise TAPError(f"TAPConfig.lstm_units must be two positive widths, got {self.lstm_units}")
        for name in ("batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise TAPError(f"TAPConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise TAPError(f"TAPConfig.learning_rate must be positive, got {self.learning_rate}")

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "lstm_units": list(self.lstm_units)}


# ---------------------------------------------------------------------------- the network
class TAPCell(nn.Module):
    """One step: (carries, pair of encodings, DCN) -> (carries, accuracy in (0, 1))."""

    units: tuple[int, int]

    @nn.compact
    def __call__(self, carry, x, dcn):
        he = nn.initializers.he_normal()
        c1, c2 = carry
        c1, h1 = nn.OptimizedLSTMCell(self.units[0], kernel_init=he, name="lstm1")(c1, x)
        c2, h2 = nn.OptimizedLSTMCell(self.units[1], kernel_init=he, name="lstm2")(c2, h1)
        logit = nn.Dense(1, kernel_init=he, name="out")(jnp.concatenate([h2, dcn[:, None]], axis=-1))
        return (c1, c2), jax.nn.sigmoid(logit[:, 0])


def _zero_carry(units: tuple[int, int], batch: int):
    return tuple((jnp.zeros((batch, u)), jnp.zeros((batch, u))) for u in units)


def _unroll(cell: TAPCell, params, prev, cur, prev_acc, prev_known, dcn):
    """Runs the cell over the steps; returns A_t for every step, (B, T).

    prev, cur: standardised static features (B, T, S) of layers t-1 and t;
    prev_acc, prev_known: the accuracy field A_{t-1} where it is given (step 0:
    1/N_classes, always given); elsewhere the previous step's own prediction.
    """
    batch = prev.shape[0]

    def step(state, xs):
        carry, previous_prediction = state
        p, c, acc, known = xs
        field = jnp.where(known, acc, jax.lax.stop_gradient(previous_prediction))
        carry, prediction = cell.apply(params, carry, jnp.concatenate([p, field[:, None], c], axis=-1), dcn)
        return (carry, prediction), prediction

    time_major = [jnp.swapaxes(a, 0, 1) for a in (prev, cur, prev_acc, prev_known)]
    _, predictions = jax.lax.scan(step, (_zero_carry(cell.units, batch), jnp.zeros((batch,))), time_major)
    return jnp.swapaxes(predictions, 0, 1)


@functools.lru_cache(maxsize=None)
def _forward_for(units: tuple[int, int]):
    """The jitted unroll for one width (shared by every TAP of that width: compiled once per process)."""
    return jax.jit(functools.partial(_unroll, TAPCell(units)))


def _masked_mse(cell: TAPCell, params, prev, cur, prev_acc, prev_known, dcn, target, known):
    predictions = _unroll(cell, params, prev, cur, prev_acc, prev_known, dcn)
    weights = known.astype(jnp.float32)
    return jnp.sum(weights * (predictions - target) ** 2) / jnp.maximum(jnp.sum(weights), 1.0)


@functools.lru_cache(maxsize=None)
def _training_for(units: tuple[int, int], learning_rate: float):
    """(optimizer, jitted train step) for one width and learning rate, compiled once per process."""
    cell = TAPCell(units)
    optimizer = optax.rmsprop(learning_rate)

    @jax.jit
    def train_step(params, opt_state, *arrays):
        loss, grads = jax.value_and_grad(functools.partial(_masked_mse, cell))(params, *arrays)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return optimizer, train_step


# ---------------------------------------------------------------------------- arrays
@dataclasses.dataclass
class _Encoded:
    """Examples as padded arrays (B, T, ...); static features not yet standardised."""

    prev: np.ndarray        # (B, T, S) layer t-1 (the input layer at t = 0)
    cur: np.ndarray         # (B, T, S) layer t
    prev_acc: np.ndarray    # (B, T) known A_{t-1}
    prev_known: np.ndarray  # (B, T) whether A_{t-1} is known
    target: np.ndarray      # (B, T) known A_t
    target_known: np.ndarray
    length: np.ndarray      # (B,) real steps
    dcn: np.ndarray         # (B,)


def _padded_length(n: int) -> int:
    return max(BUCKET, -(-n // BUCKET) * BUCKET)


def _encode_rows(arch: Arch, input_shape, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(prev rows, cur rows), each (N, S): the static features of layers t-1 and t."""
    rows = encoding.encode(arch, input_shape, num_classes)[:, :encoding.NUM_STATIC]
    first = encoding.input_row(arch.shapes(input_shape)[arch.inputs[0]])[None, :encoding.NUM_STATIC]
    return np.concatenate([first, rows[:-1]], axis=0), rows


def _encode(items: Sequence[tuple[Arch, Any, int, float, Mapping[int, float]]], length: int | None = None,
            teacher: bool = True) -> _Encoded:
    encoded = [_encode_rows(arch, shape, classes) for arch, shape, classes, _, _ in items]
    lengths = np.array([len(cur) for _, cur in encoded], np.int32)
    if lengths.size and lengths.min() == 0:
        raise TAPError("an architecture has no layer besides its Input; TAP has nothing to read")
    steps = length or _padded_length(int(lengths.max(initial=1)))
    b, s = len(items), encoding.NUM_STATIC
    out = _Encoded(
        prev=np.zeros((b, steps, s), np.float32), cur=np.zeros((b, steps, s), np.float32),
        prev_acc=np.zeros((b, steps), np.float32), prev_known=np.zeros((b, steps), bool),
        target=np.zeros((b, steps), np.float32), target_known=np.zeros((b, steps), bool),
        length=lengths, dcn=np.array([item[3] for item in items], np.float32),
    )
    for i, ((prev, cur), (_, _, classes, _, targets)) in enumerate(zip(encoded, items)):
        n = len(cur)
        out.prev[i, :n], out.cur[i, :n] = prev, cur
        out.prev_acc[i, 0], out.prev_known[i, 0] = 1.0 / classes, True
        for step, value in targets.items():
            if not 0 <= step < n:
                raise TAPError(f"target step {step} is outside the {n} layers of architecture "
                               f"{_arch_name(items[i][0])}")
            out.target[i, step], out.target_known[i, step] = value, True
            if teacher and step + 1 < n:
                out.prev_acc[i, step + 1], out.prev_known[i, step + 1] = value, True
    return out


def _arch_name(arch: Arch) -> str:
    return repr(arch.name) if arch.name else f"(structural hash {arch.structural_hash()[:12]})"


def _standardised(enc: _Encoded, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    real = (np.arange(enc.cur.shape[1])[None, :] < enc.length[:, None])[..., None]
    return (np.where(real, (enc.prev - mean) / std, 0).astype(np.float32),
            np.where(real, (enc.cur - mean) / std, 0).astype(np.float32))


# ---------------------------------------------------------------------------- the predictor
class TAP:
    """A trained predictor: the cell's parameters, the feature standardisation and metadata.

    Attributes:
      params: the `TAPCell` variables.
      metadata: JSON-ready dict: format, encoding_version, config,
        standardisation (mean, std), datasets (fingerprint, dcn, examples),
        dcn_range, examples, targets, lde_count, unknown_ops, fit_seconds,
        final_loss, created.
    """

    def __init__(self, params, metadata: dict[str, Any]):
        self.params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
        self.metadata = metadata
        self.config = TAPConfig(**{**metadata["config"], "lstm_units": tuple(metadata["config"]["lstm_units"])})
        self.mean = np.asarray(metadata["standardisation"]["mean"], np.float32)
        self.std = np.asarray(metadata["standardisation"]["std"], np.float32)
        self._forward = _forward_for(self.config.lstm_units)

    # ------------------------------------------------------------ prediction
    def predict_steps(self, archs: Sequence[Arch], input_shape, num_classes: int, dcn: float) -> list[np.ndarray]:
        """Predicted accuracy after every layer (`encoding.layer_sequence`) of each arch."""
        if num_classes is None or int(num_classes) < 1:
            raise TAPError(f"TAP predicts classification accuracy: num_classes must be positive, got {num_classes}")
        unknown = collections.Counter()
        for arch in archs:
            unknown.update(encoding.unknown_ops(arch))
        if unknown:
            log.warning("TAP: op(s) outside its vocabulary, encoded in the UNKNOWN slot: %s",
                        ", ".join(f"{op} x{n}" for op, n in sorted(unknown.items())))
        results: list[np.ndarray] = []
        for start in range(0, len(archs), PREDICT_CHUNK):
            chunk = archs[start:start + PREDICT_CHUNK]
            rows = 1 << max(3, math.ceil(math.log2(len(chunk))))  # few compiled batch sizes
            items = [(a, input_shape, int(num_classes), float(dcn), {}) for a in chunk]
            enc = _encode(items, teacher=False)
            prev, cur = _standardised(enc, self.mean, self.std)
            pad = rows - len(chunk)
            arrays = [np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]) for a in
                      (prev, cur, enc.prev_acc, enc.prev_known, enc.dcn)]
            predictions = np.asarray(self._forward(self.params, *arrays))
            results.extend(predictions[i, :enc.length[i]].copy() for i in range(len(chunk)))
        return results

    def predict(self, archs: Sequence[Arch], input_shape, num_classes: int, dcn: float) -> np.ndarray:
        """Predicted peak validation accuracy of each arch on a dataset of this DCN, (len(archs),) float32."""
        return np.array([steps[-1] for steps in self.predict_steps(archs, input_shape, num_classes, dcn)],
                        np.float32)

    def stale(self, lde_count: int, growth: float = 0.2) -> bool:
        """Whether the LDE has grown by more than `growth` (a fraction) since this TAP was trained."""
        trained_on = self.metadata.get("lde_count")
        if trained_on is None:
            return False
        return lde_count > trained_on * (1.0 + growth)

    # ------------------------------------------------------------ storage
    def save(self, directory: str) -> str:
        """Writes ``tap.json`` and ``params/`` to `directory`, atomically replacing what was there."""
        directory = os.path.abspath(directory)
        text = json.dumps(self.metadata, indent=2)
        with atomic_io.staged_directory(directory) as staging:
            checkpointer = ocp.StandardCheckpointer()
            checkpointer.save(os.path.join(staging, PARAMS_DIR), jax.device_get(self.params))
            checkpointer.wait_until_finished()
            with open(os.path.join(staging, METADATA_FILE), "w") as f:
                f.write(text)
        return directory

    @classmethod
    def load(cls, directory: str) -> "TAP":
        """Reads a directory written by `save`.

        Raises:
          TAPError: naming the directory, when it is missing, not a TAP, of another
            `ENCODING_VERSION`, or its parameters cannot be restored.
        """
        directory = os.path.abspath(directory)
        path = os.path.join(directory, METADATA_FILE)
        try:
            with open(path, "rb") as f:
                metadata = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            raise TAPError(f"{directory}: not a saved TAP (no {METADATA_FILE}); train one with "
                           "nas.tapas.predictor.fit and TAP.save") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TAPError(f"{path}: unreadable ({exc}); retrain the TAP") from exc
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise TAPError(f"{path}: not a TAP metadata file (format is not {FORMAT!r})")
        version = metadata.get("encoding_version")
        if version != encoding.ENCODING_VERSION:
            raise TAPError(f"{directory}: this TAP was trained with layer encoding version {version!r}, "
                           f"this code encodes with version {encoding.ENCODING_VERSION}; its inputs would mean "
                           "other things: retrain the TAP on the LDE")
        try:
            params = ocp.StandardCheckpointer().restore(os.path.join(directory, PARAMS_DIR))
            return cls(params, metadata)
        except Exception as exc:  # orbax/tensorstore raise ValueError, OSError, KeyError...
            raise TAPError(f"{os.path.join(directory, PARAMS_DIR)}: cannot be restored "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); retrain the TAP") from exc


# ---------------------------------------------------------------------------- training
def fit(examples: Sequence[TrainingExample], config: TAPConfig = TAPConfig(), *,
        lde_count: int | None = None, extra_metadata: Mapping[str, Any] | None = None) -> TAP:
    """Trains a TAP on `examples` (`nas.tapas.examples.examples_from_lde`).

    Args:
      examples: architectures with their known accuracies (at least one).
      config: training settings.
      lde_count: experiments in the LDE when the examples were read (for `TAP.stale`).
      extra_metadata: more JSON-ready keys for the metadata (e.g. the DCN queried).

    Returns:
      The trained TAP; the same examples and config give the same parameters.
    """
    started = time.perf_counter()
    examples = [e for e in examples if e.targets]
    if not examples:
        raise TAPError("no training example with a known accuracy: the LDE has no finished experiment on "
                       "a dataset within tau of this DCN (nas-lde stats lists what it holds)")
    items = [(e.arch, e.input_shape, e.num_classes, e.dcn, e.targets) for e in examples]
    enc = _encode(items, teacher=True)
    real = np.arange(enc.cur.shape[1])[None, :] < enc.length[:, None]
    rows = enc.cur[real].astype(np.float64)
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)  # a constant column (an op never seen): centred, not scaled
    mean32, std32 = mean.astype(np.float32), std.astype(np.float32)
    prev, cur = _standardised(enc, mean32, std32)

    cell = TAPCell(config.lstm_units)
    n = len(items)
    batch = min(int(config.batch_size), -(-n // 8) * 8)
    key = jax.random.PRNGKey(config.seed)
    params = cell.init(key, _zero_carry(config.lstm_units, 1),
                       jnp.zeros((1, 2 * encoding.NUM_STATIC + 1)), jnp.zeros((1,)))
    optimizer, train_step = _training_for(config.lstm_units, float(config.learning_rate))
    opt_state = optimizer.init(params)

    data = (prev, cur, enc.prev_acc, enc.prev_known, enc.dcn, enc.target, enc.target_known)
    rng = np.random.default_rng(config.seed)
    batches = -(-n // batch)
    loss = float("nan")
    for _ in range(config.epochs):
        order = rng.permutation(n)
        order = np.concatenate([order, np.full(batches * batch - n, -1)])  # -1: padding rows, no targets
        losses = []
        for b in range(batches):
            index = order[b * batch:(b + 1) * batch]
            take = np.maximum(index, 0)
            arrays = [a[take] for a in data]
            arrays[-1] = arrays[-1] & (index >= 0)[:, None]
            params, opt_state, value = train_step(params, opt_state, *arrays)
            losses.append(value)
        loss = float(np.mean(jax.device_get(losses)))
    if not math.isfinite(loss):
        raise TAPError(f"TAP training diverged (loss {loss}); check the examples' targets lie in [0, 1]")

    per_dataset: dict[str, dict[str, Any]] = {}
    unknown = collections.Counter()
    for e in examples:
        entry = per_dataset.setdefault(e.dataset, {"dataset": e.dataset, "dcn": float(e.dcn), "examples": 0,
                                                   "targets": 0})
        entry["examples"] += 1
        entry["targets"] += len(e.targets)
        unknown.update(encoding.unknown_ops(e.arch))
    dcns = [float(e.dcn) for e in examples]
    metadata = {
        "format": FORMAT,
        "encoding_version": encoding.ENCODING_VERSION,
        "feature_names": list(encoding.FEATURE_NAMES[:encoding.NUM_STATIC]),
        "config": config.to_json(),
        "standardisation": {"mean": [float(v) for v in mean32], "std": [float(v) for v in std32]},
        "datasets": sorted(per_dataset.values(), key=lambda d: (d["dcn"], d["dataset"])),
        "dcn_range": [min(dcns), max(dcns)],
        "examples": n,
        "targets": int(enc.target_known.sum()),
        "lde_count": lde_count,
        "unknown_ops": dict(sorted(unknown.items())),
        "fit_seconds": round(time.perf_counter() - started, 3),
        "final_loss": loss,
        "created": time.time(),
        **dict(extra_metadata or {}),
    }
    return TAP(jax.device_get(params), metadata)
