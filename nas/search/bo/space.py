"""A Bayesian-optimisation space as data, and its fixed-length numeric encoding.

A `Space` is a tuple of `Hyperparameter` specs. A configuration is a plain dict
from name to value: a float (or int) for a numeric hyperparameter, a tuple of
ints for a per-layer one (CNN channels, MLP hidden widths). Every configuration
encodes to one vector of the same length, so kernels over it are jit-able:

- numeric: one slot holding the value, or log10 of it when `log` (Deep-n-Cheap
  compares learning rate and weight decay on the log scale, section 2.2.1);
- layers / summed: `max_layers` slots holding the per-layer values, padded with
  `NO_LAYER` where a configuration has fewer layers;
- categorical: one slot per choice, one-hot, so any two different choices are
  equally far apart (sqrt 2) under a stationary kernel on the unit box, and no
  order is invented between them (Garrido-Merchan and Hernandez-Lobato 2020
  use the same encoding, rounding in the kernel; here candidates are drawn as
  exact one-hot vectors instead).

Sampling maps points of the unit cube to configurations (`from_unit`), the way
Deep-n-Cheap's `get_states` does: one coordinate for the depth, one per layer,
and for CNN channels each layer drawn from [c_{i-1}, min(growth * c_{i-1}, cap)]
(section 3.1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

NO_LAYER = -1.0  # encoding of an absent layer; layer values must be positive
KINDS = ("numeric", "layers", "summed", "categorical")
KERNELS = ("ramp", "matern52", "rbf")

Config = dict[str, Any]


class SpaceError(ValueError):
    """A hyperparameter spec or a configuration does not fit its space."""


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter k of the ramp-distance kernel (Deep-n-Cheap eq. 2).

    Attributes:
      name: key of this hyperparameter in a configuration.
      lower, upper: bounds l_k, u_k of the value (of the first layer's value for
        `layers`; of each layer's value for `summed`), in natural units even
        when `log`; for `categorical`, 0 and len(choices) - 1 (see `categorical`).
      kind: "numeric" (one value), "layers" (compared layer by layer, a missing
        layer at the maximum distance omega), or "summed" (compared by the sum
        over layers, as Deep-n-Cheap does for MLP hidden widths), or
        "categorical" (one of `choices`, unordered; stationary kernels only).
      log: compare log10 values (numeric only).
      integer: the value is an integer (layers and summed always are).
      s: weight of this hyperparameter in the convex combination (eq. 4);
        weights are normalised over the space.
      omega: the maximum distance omega_k.
      r: the power r_k in eq. 2. None takes Deep-n-Cheap's released defaults:
        1 for numeric, 1/2 for summed, and 1/min(i, 4) for layer i of `layers`.
        A tuple gives one power per layer.
      layers: (min, max) number of layers (layers and summed).
      growth: layers only; layer i+1 is drawn from [c_i, min(growth * c_i, cap)]
        and layer i's kernel bounds are [lower, min(upper * growth**(i-1), cap)].
      cap: the largest value any layer may take (layers only; default upper).
      choices: the values of a categorical hyperparameter (str, int, float or
        bool, distinct); empty for the other kinds.
    """

    name: str
    lower: float
    upper: float
    kind: str = "numeric"
    log: bool = False
    integer: bool = False
    s: float = 1.0
    omega: float = 3.0
    r: float | tuple[float, ...] | None = None
    layers: tuple[int, int] = (1, 1)
    growth: float | None = None
    cap: float | None = None
    choices: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SpaceError(f"hyperparameter {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "choices", tuple(self.choices))  # a JSON round trip gives a list
        if self.kind == "categorical":
            _check_choices(self)
        elif self.choices:
            raise SpaceError(f"hyperparameter {self.name!r}: choices are for kind 'categorical', not {self.kind!r}")
        if not self.upper >= self.lower:
            raise SpaceError(f"hyperparameter {self.name!r}: upper {self.upper} is below lower {self.lower}")
        if self.log and (self.kind != "numeric" or self.lower <= 0):
            raise SpaceError(f"hyperparameter {self.name!r}: log scale needs a numeric kind and lower > 0")
        if self.kind in ("layers", "summed"):
            lo, hi = self.layers
            if not 0 <= lo <= hi or hi < 1:
                raise SpaceError(f"hyperparameter {self.name!r}: layers must be (min, max) with 0 <= min <= max, max >= 1")
            if self.lower <= 0:
                raise SpaceError(f"hyperparameter {self.name!r}: layer values must be positive, lower is {self.lower}")
        if self.s < 0 or self.omega <= 0:
            raise SpaceError(f"hyperparameter {self.name!r}: need s >= 0 and omega > 0")
        if isinstance(self.r, tuple) and len(self.r) != self.width:
            raise SpaceError(f"hyperparameter {self.name!r}: r has {len(self.r)} entries, expected {self.width}")

    @property
    def width(self) -> int:
        """Number of slots in the encoding."""
        if self.kind == "categorical":
            return len(self.choices)
        return 1 if self.kind == "numeric" else self.layers[1]

    @property
    def unit_width(self) -> int:
        """Number of unit-cube coordinates a sample of this hyperparameter uses."""
        return 1 if self.kind in ("numeric", "categorical") else 1 + self.layers[1]

    def slot_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-slot (l, u) used by the kernel, in encoded units."""
        if self.kind == "categorical":  # one-hot slots
            return np.zeros(self.width), np.ones(self.width)
        if self.kind == "numeric":
            lo, hi = (math.log10(self.lower), math.log10(self.upper)) if self.log else (self.lower, self.upper)
            return np.array([lo], float), np.array([hi], float)
        n = self.layers[1]
        if self.kind == "summed":  # bounds of the sum (Deep-n-Cheap: 0 .. max_layers * max_width)
            return np.full(n, self.layers[0] * self.lower, float), np.full(n, n * self.upper, float)
        cap = self.upper if self.cap is None else self.cap
        growth = 1.0 if self.growth is None else self.growth
        uppers = [min(self.upper * growth**i, max(cap, self.upper)) for i in range(n)]
        return np.full(n, float(self.lower)), np.array(uppers, float)

    def slot_powers(self) -> np.ndarray:
        """Per-slot power r in eq. 2."""
        if isinstance(self.r, tuple):
            return np.array(self.r, float)
        if self.r is not None:
            return np.full(self.width, float(self.r))
        if self.kind == "layers":  # released code: 1st layer linear, then sqrt, cube root, 4th root
            return 1.0 / np.minimum(np.arange(1, self.width + 1), 4)
        return np.full(self.width, 0.5 if self.kind == "summed" else 1.0)


def _check_choices(p: Hyperparameter) -> None:
    if not p.choices:
        raise SpaceError(f"hyperparameter {p.name!r}: a categorical hyperparameter needs at least one choice")
    bad = [c for c in p.choices if not isinstance(c, (str, int, float, bool))]
    if bad:
        raise SpaceError(f"hyperparameter {p.name!r}: choices must be str, int, float or bool, got {bad}")
    keys = [(type(c), c) for c in p.choices]
    if len(set(keys)) != len(keys):
        raise SpaceError(f"hyperparameter {p.name!r}: choices {list(p.choices)} repeat a value")
    if p.log or p.integer:
        raise SpaceError(f"hyperparameter {p.name!r}: a categorical hyperparameter has no log scale or integer flag")


def categorical(name: str, choices, s: float = 1.0) -> Hyperparameter:
    """An unordered hyperparameter taking one of `choices` (encoded one-hot).

    Args:
      name: key in a configuration.
      choices: the distinct values (str, int, float or bool).
      s: weight, as for the other kinds.
    """
    choices = tuple(choices)
    return Hyperparameter(name, 0.0, float(max(len(choices) - 1, 0)), kind="categorical", s=s, choices=choices)


def choice_index(p: Hyperparameter, value) -> int:
    """Position of `value` among the choices of categorical `p` (1 and True are different choices).

    Raises:
      SpaceError: the value is not one of the choices.
    """
    for i, c in enumerate(p.choices):
        if type(c) is type(value) and c == value:
            return i
    for i, c in enumerate(p.choices):  # e.g. a numpy integer for an int choice
        if not isinstance(value, bool) and not isinstance(c, bool) and c == value:
            return i
    raise SpaceError(f"{p.name!r} = {value!r} is not one of its choices {list(p.choices)}")


@dataclasses.dataclass(frozen=True)
class Space:
    """The hyperparameters searched over together, and the GP kernel to use.

    Attributes:
      params: the hyperparameters, in encoding order.
      kernel: "ramp" (Deep-n-Cheap's ramp-distance kernel; no categorical
        params), or "matern52" / "rbf" (stationary kernels on the unit-scaled
        box; numeric and categorical params).
    """

    params: tuple[Hyperparameter, ...]
    kernel: str = "ramp"

    def __post_init__(self):
        names = [p.name for p in self.params]
        if not names or len(set(names)) != len(names):
            raise SpaceError(f"a space needs at least one hyperparameter and unique names, got {names}")
        if self.kernel not in KERNELS:
            raise SpaceError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.kernel != "ramp" and any(p.kind not in ("numeric", "categorical") for p in self.params):
            raise SpaceError(f"kernel {self.kernel!r} needs numeric or categorical hyperparameters; use kernel='ramp'")
        if self.kernel == "ramp" and any(p.kind == "categorical" for p in self.params):
            raise SpaceError("the ramp kernel has no distance for categorical hyperparameters "
                             f"{[p.name for p in self.params if p.kind == 'categorical']}; use kernel='matern52' or 'rbf'")

    @property
    def dim(self) -> int:
        return sum(p.width for p in self.params)

    @property
    def unit_dim(self) -> int:
        return sum(p.unit_width for p in self.params)


def box(bounds: Mapping[str, tuple[float, float]], kernel: str = "matern52") -> Space:
    """A Euclidean box, e.g. box({"x1": (-5, 10), "x2": (0, 15)}) for Branin."""
    return Space(tuple(Hyperparameter(n, float(lo), float(hi)) for n, (lo, hi) in bounds.items()), kernel)


def dnc_cnn_channels(layers=(4, 16), first=(16, 64), cap=512, omega=3.0) -> Space:
    """Deep-n-Cheap stage 1 for CNNs: depth and channels per conv layer (section 3.1)."""
    return Space((Hyperparameter("out_channels", first[0], first[1], kind="layers", layers=layers,
                                 growth=2.0, cap=cap, omega=omega),))


def dnc_mlp_hidden(layers=(0, 2), width=(20, 400), omega=3.0) -> Space:
    """Deep-n-Cheap stage 1 for MLPs: hidden layers and their widths, compared by their sum (section 3.2)."""
    return Space((Hyperparameter("hidden_mlp", width[0], width[1], kind="summed", layers=layers, omega=omega),))


def dnc_training(lr=(1e-5, 1e-1), weight_decay=(1e-6, 1e-3), batch_size=(32, 512), omega=3.0) -> Space:
    """Deep-n-Cheap stage 3: learning rate and weight decay on log scale, batch size linear (section 3.1)."""
    return Space((
        Hyperparameter("lr", *lr, log=True, omega=omega),
        Hyperparameter("weight_decay", *weight_decay, log=True, omega=omega),
        Hyperparameter("batch_size", *batch_size, integer=True, omega=omega),
    ))


def encode(space: Space, config: Mapping[str, Any]) -> np.ndarray:
    """The fixed-length vector of one configuration (float64, length `space.dim`).

    Raises:
      SpaceError: a name is missing, or a layer list is too long or non-positive.
    """
    parts = []
    for p in space.params:
        if p.name not in config:
            raise SpaceError(f"configuration {dict(config)} has no value for {p.name!r}")
        value = config[p.name]
        if p.kind == "numeric":
            v = float(value)
            if p.log:  # weight decay 0 sits at the lower bound, as in Deep-n-Cheap
                v = math.log10(v) if v > 0 else math.log10(p.lower)
            parts.append([v])
            continue
        if p.kind == "categorical":
            parts.append(np.eye(p.width)[choice_index(p, value)])
            continue
        values = [float(v) for v in value]
        if len(values) > p.width or any(v <= 0 for v in values):
            raise SpaceError(f"{p.name!r} = {list(value)}: need at most {p.width} positive layer values")
        parts.append(values + [NO_LAYER] * (p.width - len(values)))
    return np.concatenate([np.asarray(v, float) for v in parts])


def decode(space: Space, x) -> Config:
    """The configuration of an encoded vector (inverse of `encode` on its image)."""
    x = np.asarray(x, float)
    config, i = {}, 0
    for p in space.params:
        slots = x[i:i + p.width]
        i += p.width
        if p.kind == "categorical":
            config[p.name] = p.choices[int(np.argmax(slots))]
            continue
        if p.kind != "numeric":
            config[p.name] = tuple(int(round(v)) for v in slots if v > 0)
            continue
        v = float(10.0 ** slots[0]) if p.log else float(slots[0])
        config[p.name] = int(round(v)) if p.integer else v
    return config


def canonical(space: Space, config: Mapping[str, Any]) -> Config:
    """The configuration with plain Python types (tuples for layers), e.g. after a JSON round trip."""
    out = {}
    for p in space.params:
        v = config[p.name]
        if p.kind == "categorical":
            out[p.name] = p.choices[choice_index(p, v)]
        elif p.kind != "numeric":
            out[p.name] = tuple(int(c) for c in v)
        else:
            out[p.name] = int(v) if p.integer else float(v)
    return out


def _scaled_int(u: np.ndarray, lo, hi) -> np.ndarray:
    """Integer in [lo, hi] from u in [0, 1): floor(lo + u * (hi + 1 - lo)), as Deep-n-Cheap samples."""
    return np.minimum(np.floor(lo + u * (hi + 1 - lo)), hi)


def from_unit(space: Space, U) -> np.ndarray:
    """Encoded configurations (N, space.dim) for unit-cube points U (N, space.unit_dim)."""
    U = np.asarray(U, float)
    if U.ndim != 2 or U.shape[1] != space.unit_dim:
        raise SpaceError(f"unit points must have shape (N, {space.unit_dim}), got {U.shape}")
    cols, j = [], 0
    for p in space.params:
        u = U[:, j:j + p.unit_width]
        j += p.unit_width
        if p.kind == "numeric":
            if p.integer and p.log:
                lo, hi = math.log10(p.lower), math.log10(p.upper)
                v = np.clip(np.round(10.0 ** (lo + u[:, 0] * (hi - lo))), math.ceil(p.lower), math.floor(p.upper))
                cols.append(np.log10(v)[:, None])
            elif p.integer:
                cols.append(_scaled_int(u[:, 0], math.ceil(p.lower), math.floor(p.upper))[:, None])
            else:
                lo, hi = p.slot_bounds()
                cols.append((lo[0] + u[:, 0] * (hi[0] - lo[0]))[:, None])
            continue
        if p.kind == "categorical":  # each choice with probability 1 / len(choices)
            index = _scaled_int(u[:, 0], 0, p.width - 1).astype(int)
            cols.append(np.eye(p.width)[index])
            continue
        n_layers = _scaled_int(u[:, 0], p.layers[0], p.layers[1])
        lo, hi = math.ceil(p.lower), math.floor(p.upper)
        cap = hi if p.cap is None else math.floor(p.cap)
        out = np.full((len(U), p.width), NO_LAYER)
        prev = _scaled_int(u[:, 1], lo, hi)
        for i in range(p.width):
            if i > 0:
                if p.growth is not None:
                    lo_i, hi_i = prev, np.maximum(prev, np.minimum(np.floor(p.growth * prev), cap))
                else:
                    lo_i, hi_i = lo, hi
                prev = _scaled_int(u[:, 1 + i], lo_i, hi_i)
            out[:, i] = np.where(n_layers > i, prev, NO_LAYER)
        cols.append(out)
    return np.concatenate(cols, axis=1)
