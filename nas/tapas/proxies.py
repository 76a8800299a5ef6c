"""Training-free baselines for TAP: what a user would rank networks by instead of a predictor.

Four scores, each a pure function of an `Arch` (and for NASWOT a batch of real inputs),
higher meaning "expected to be more accurate":

- `params_score`: trainable parameter count (``Arch.num_params``).
- `flops_score`: inference FLOPs of one example (``Arch.flops``).
- `naswot_score`: Mellor et al. 2021, "Neural Architecture Search without Training". Each
  input of a minibatch gets a binary code: one bit per ReLU unit, 1 where the unit is active.
  K_H[i, j] = N_A - Hamming(c_i, c_j) (N_A = number of ReLU units), and the score is
  log|det K_H|. Networks that separate inputs into distinct linear regions at
  initialisation score higher.
- `synflow_score`: Tanaka et al. 2020 (SynFlow), used as a zero-cost proxy by Abdelfattah et
  al. 2021: with every parameter replaced by its absolute value and an input of ones,
  R = sum(outputs) and the score is sum over parameters of dR/dtheta * theta. No data needed.

Which nodes are ReLU units (NASWOT): ``Activation(fn="relu")`` nodes and ``ReLU`` nodes (Keras's
ReLU layer; its unit is active where its input exceeds ``threshold``). Leaky ReLU, relu6, gelu,
etc. are not counted: NASWOT's code is defined for the on/off pattern of a ReLU, and a network
with none of them gets NaN plus a reason (`naswot_undefined_reason`), never an exception.

Why a module of our own instead of Flax's ``capture_intermediates``: that flag records the
outputs of *submodules* only, and `nas.compile.ArchModule` applies activations inline (plain jnp
functions in its ``__call__``), so ReLU outputs are not captured. `_TracedArchModule` subclasses
`ArchModule`, keeps its parameter layout (every layer a submodule named by node id, so
`init_variables` of the plain module applies unchanged) and also returns the values of the
nodes it is asked for. It reuses the compiler's per-op builders, so the two cannot disagree on
what a layer computes; only the node loop is repeated here.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nas.compile import ArchModule, init_variables
from nas.compile.flax_module import _ACTIVATIONS, _BUILDERS
from nas.ir import Arch, Node

log = logging.getLogger(__name__)

DEFAULT_BATCH = 64
PROXIES = ("params", "flops", "naswot", "synflow")


def relu_nodes(arch: Arch) -> tuple[str, ...]:
    """Ids of the nodes whose units count for NASWOT: Activation(fn=relu) and ReLU layers."""
    return tuple(n.id for n in arch.topological_order() if _is_relu(n))


def _is_relu(node: Node) -> bool:
    if node.op == "ReLU":
        return True
    return node.op == "Activation" and node.normalized_attrs()["fn"] == "relu"


def naswot_undefined_reason(arch: Arch) -> str | None:
    """Why NASWOT has no value for `arch` (None when it has one)."""
    if not relu_nodes(arch):
        return (f"NASWOT undefined for arch {arch.name!r}: it has no ReLU unit "
                "(no Activation(fn='relu') or ReLU node), so there is no activation code")
    return None


class _TracedArchModule(ArchModule):
    """`ArchModule` that also returns the values of the nodes named in `keep`.

    `batch_stats_from_batch`: BatchNorm normalises with the batch's statistics (NASWOT's
    reference code hooks a freshly built PyTorch network, whose default is training mode) while Dropout stays
    off (random masks would make the activation codes random). False: inference BatchNorm.
    Values of ReLU nodes are returned as their binary code (1.0 active, 0.0 inactive).
    """

    keep: tuple[str, ...] = ()
    batch_stats_from_batch: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # the mode is fixed by batch_stats_from_batch
        values: dict[str, Any] = {}
        kept: dict[str, Any] = {}
        for node in self.arch.topological_order():
            attrs = node.normalized_attrs()
            if node.op == "Input":
                values[node.id] = x if jnp.issubdtype(x.dtype, jnp.integer) else x.astype(self.dtype)
                continue
            xs = [values[i] for i in node.inputs]
            if node.op == "Activation":
                y = _ACTIVATIONS[attrs["fn"]](xs[0])
            else:
                mode = self.batch_stats_from_batch and node.op == "BatchNorm"
                y = _BUILDERS[node.op](node, attrs, xs, mode, self.dtype)
            values[node.id] = y
            if node.id in self.keep:
                if node.op == "ReLU":
                    kept[node.id] = (xs[0] > attrs["threshold"]).astype(self.dtype)
                elif _is_relu(node):
                    kept[node.id] = (xs[0] > 0).astype(self.dtype)
                else:
                    kept[node.id] = y
        return kept


def init_key(seed: int) -> jax.Array:
    """The initialisation key of the proxies: JAX's "rbg" generator.

    Why not the default threefry: XLA:CPU compiles threefry's many per-layer random draws
    slowly; measured on this 2-core machine, initialising a small CNN took ~10 s with
    threefry and ~2 s with rbg, and every architecture is a new program. The initializers
    (He normal etc.) and so the distribution of the weights are the same; the values are
    not the ones nas-train draws for the same seed, which a score of "a network at
    initialisation" does not need.
    """
    return jax.random.key(int(seed), impl="rbg")


def _hamming_kernel(codes: Sequence[jax.Array]) -> jax.Array:
    """K_H = c c^T + (1-c)(1-c)^T summed over layers, i.e. N_A - Hamming distance.

    Entries are integers up to N_A; float32 represents them exactly up to 2**24 units, far
    more than any network here has per batch example.
    """
    n = codes[0].shape[0]
    k = jnp.zeros((n, n), jnp.float32)
    for c in codes:
        c = c.reshape(n, -1).astype(jnp.float32)
        k = k + c @ c.T + (1.0 - c) @ (1.0 - c).T
    return k


def naswot_kernel(arch: Arch, x_batch: np.ndarray, seed: int = 0) -> np.ndarray:
    """The (B, B) matrix K_H of `arch` at initialisation (He/Glorot init of seed `seed`)."""
    ids = relu_nodes(arch)
    if not ids:
        raise ValueError(naswot_undefined_reason(arch))
    x = jnp.asarray(x_batch)
    input_shape = tuple(x.shape[1:])
    arch.validate(input_shape)
    module = _TracedArchModule(arch=arch, keep=ids, batch_stats_from_batch=True)
    plain = ArchModule(arch=arch)

    @jax.jit
    def kernel(key, x):
        # Initialisation inside the one compiled program: run eagerly, Flax's init dispatches
        # (and compiles) every op of every layer separately.
        variables = init_variables(plain, key, input_shape)
        kept, _ = module.apply(variables, x, mutable=["batch_stats"])
        return _hamming_kernel([kept[i] for i in ids])

    return np.asarray(kernel(init_key(seed), x), np.float64)


def naswot_score(arch: Arch, x_batch: np.ndarray, seed: int = 0) -> float:
    """log|det K_H| over `x_batch` (B real inputs, batch axis first; B = 64 by default).

    Returns NaN (and logs the reason) for an arch without ReLU units; -inf when K_H is
    singular (two inputs with identical codes, e.g. a dead network or repeated inputs).
    """
    reason = naswot_undefined_reason(arch)
    if reason is not None:
        log.info(reason)
        return math.nan
    k = naswot_kernel(arch, x_batch, seed)
    sign, logdet = np.linalg.slogdet(k)
    return float(logdet) if sign != 0 else -math.inf


def synflow_score(arch: Arch, input_shape: Sequence[int], seed: int = 0) -> float:
    """SynFlow: sum over parameters of theta * dR/dtheta, R = sum of outputs on an input of ones.

    Parameters are replaced by their absolute values; BatchNorm runs in inference mode (its
    running mean 0 and variance 1 at initialisation, so it only rescales). The output is
    taken before a final softmax/sigmoid (the sum of a softmax is constant, its gradient zero).

    Computed in float64: R is roughly a product over layers of (fan-in x mean |weight|)
    summed over all paths, so it grows exponentially with depth. A 24-layer 64-channel
    conv net on 28x28 inputs already overflows float32's 3.4e38 (tests pin a case), and
    the reference implementations (Abdelfattah et al.'s zero-cost proxies) also run SynFlow
    in double precision.
    """
    input_shape = tuple(int(s) for s in input_shape)
    arch.validate(input_shape)
    out_id = arch.outputs[0]
    out_node = arch.node(out_id)
    if out_node.op == "Activation" and out_node.normalized_attrs()["fn"] in ("softmax", "sigmoid"):
        out_id = out_node.inputs[0]
    with jax.enable_x64(True):  # scoped: the caller's precision mode is left as it was
        module = _TracedArchModule(arch=arch, dtype=jnp.float64, keep=(out_id,))
        plain = ArchModule(arch=arch, dtype=jnp.float64)
        integer_input = any(n.op == "Embedding" for n in arch.nodes)
        ones = jnp.ones((1, *input_shape), jnp.int32 if integer_input else jnp.float64)

        @jax.jit
        def score(key):
            variables = init_variables(plain, key, input_shape)  # inside jit: see naswot_kernel
            params = jax.tree_util.tree_map(jnp.abs, variables["params"])
            rest = {k: v for k, v in variables.items() if k != "params"}

            def total(p):
                return jnp.sum(module.apply({"params": p, **rest}, ones)[out_id])
            grads = jax.grad(total)(params)
            leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda g, p: jnp.sum(g * p), grads, params))
            return sum(leaves, jnp.zeros((), jnp.float64))

        return float(score(init_key(seed)))


def params_score(arch: Arch, input_shape: Sequence[int]) -> float:
    """Trainable parameter count."""
    return float(arch.num_params(tuple(input_shape)))


def flops_score(arch: Arch, input_shape: Sequence[int]) -> float:
    """Inference FLOPs of one example, as `Arch.flops` counts them."""
    return float(arch.flops(tuple(input_shape)))


def proxy_batch(x: np.ndarray, size: int = DEFAULT_BATCH, seed: int = 0) -> np.ndarray:
    """`size` examples of `x` drawn without replacement by `seed` (the NASWOT minibatch)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), size=min(size, len(x)), replace=False)
    return np.asarray(x[np.sort(idx)])


def all_scores(arch: Arch, x_batch: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Every baseline for one arch: {"params", "flops", "naswot", "synflow"}."""
    input_shape = tuple(x_batch.shape[1:])
    return {
        "params": params_score(arch, input_shape),
        "flops": flops_score(arch, input_shape),
        "naswot": naswot_score(arch, x_batch, seed),
        "synflow": synflow_score(arch, input_shape, seed),
    }
