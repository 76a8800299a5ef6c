"""DREAM's feedback monitor: a trial's A-C-G-W condition (TOSEM'24 s4.2.2).

`classify(arch, history, feedback, thresholds)` names the condition the
paper's priority table is indexed by, e.g. ``OA-SC-DG-NW``:

- **A**, the architecture family, read from the IR: ``EA`` (a depthwise conv:
  EfficientNet/MobileNet-like inverted blocks), ``XA`` (a separable conv:
  Xception-like), ``RA`` (an Add merge: ResNet-like), ``MA`` (no conv at all:
  an MLP; the paper has no MLPs and no code for them, so ``MA`` is this
  project's), else ``OA`` (a plain conv chain, or branches joined by Concat).
  The first that applies wins (EfficientNet and Xception blocks have skips too).
- **C**, convergence, from the history's validation accuracy: ``SC`` (slow)
  when each of the last k epoch-to-epoch changes is below
  `Thresholds.slow_convergence_delta` in absolute value (k =
  `slow_convergence_epochs`, or all the changes a shorter run has; a
  one-epoch run has none and is ``NC``), else ``NC``. Regression histories
  have no accuracy: their val_mse's relative change is used instead.
- **G**, gradients, from the last epoch's feedback row (the trainer's
  per-layer gradient norms, each the L2 norm of a layer's whole gradient,
  kernel and bias, averaged over the epoch's steps; and per ReLU node the
  fraction of units whose gradient was zero):
  ``EG`` when a gradient norm is non-finite; else ``DG`` when at least
  `dying_relu_fraction` of all ReLU units (summed over ReLU nodes, each
  weighted by its units per example) had zero gradient; else ``EG`` when
  the ratio below exceeds `exploding_ratio`; else ``VG`` when it is below
  `vanishing_ratio`; else ``NG``. The ratio is the gradient norm of the
  first weight layer (Conv*, Dense, Embedding; BatchNorm's scale and offset
  are not weight layers) in topological order, the one nearest the input,
  over that of the last weight layer (nearest the output, normally the head).
  Dead units come before the ratio (AutoTrainer's order) because units
  whose gradient is zero also zero every path through them, which makes the
  ratio vanish: the dead units are the cause to name.
  "Zero gradient" is exact: the trainer differentiates the loss with respect
  to each ReLU's pre-activation (`nas.compile.PROBES`) and counts a unit
  (one output element per example: a feature, or a (position, channel) cell
  of a feature map) when that gradient is exactly 0 for every example of a
  step's batch, then averages the fraction over the epoch's steps. A unit
  counts whether it is inactive (pre-activation <= 0) or active but
  receiving no gradient (an unselected max-pool cell, a unit feeding only
  dead units). (The ``feedback`` collection's sown value, units inactive
  for the whole batch, is a lower bound of this.)
- **W**, weights: ``EW`` when any weight was non-finite at the end of an
  epoch (the trainer stops a candidate there), else ``NW``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from nas.ir import Arch, InvalidArchError
from nas.search.dream.conf_files import conf_path, load_yaml

FAMILIES = {"RA": "residual", "EA": "depthwise_inverted", "XA": "separable", "OA": "plain", "MA": "mlp"}
CONVERGENCE = {"NC": "normal", "SC": "slow"}
GRADIENTS = {"NG": "normal", "VG": "vanishing", "EG": "exploding", "DG": "dying_relu"}
WEIGHTS = {"NW": "normal", "EW": "exploding"}

WEIGHT_LAYERS = ("Conv2D", "Conv1D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "Embedding")
_CONVS = ("Conv2D", "Conv1D", "DepthwiseConv2D", "SeparableConv2D")


class FeedbackError(ValueError):
    """A trial's history or feedback cannot be classified (missing rows or fields)."""


# ------------------------------------------------------------------ thresholds
@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The numbers that turn feedback into a condition; they live in `conf/dream/default.yaml`.

    Build with `Thresholds.from_config` (a Hydra ``dream.thresholds`` node or
    mapping) or `load_thresholds` (a YAML file); there are no defaults here,
    so the YAML is the one place they are written.

    Attributes:
      slow_convergence_delta: validation-accuracy change below which an epoch
        counts as stalled (> 0).
      slow_convergence_epochs: k, the trailing epoch-to-epoch changes that
        must all stall for ``SC`` (integer >= 1).
      vanishing_ratio, exploding_ratio: bounds on the first-to-last weight
        layer gradient-norm ratio (0 < vanishing < exploding).
      dying_relu_fraction: fraction of ReLU units with zero gradient at which
        ``DG`` is named, in (0, 1].
    """

    slow_convergence_delta: float
    slow_convergence_epochs: int
    vanishing_ratio: float
    exploding_ratio: float
    dying_relu_fraction: float

    def __post_init__(self):
        self._check("thresholds")

    def _check(self, where: str) -> None:
        def number(name, ok, expected):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not ok(value):
                raise ValueError(f"{where}.{name} must be {expected}, got {value!r}")
            object.__setattr__(self, name, float(value))

        number("slow_convergence_delta", lambda v: v > 0, "a number > 0")
        k = self.slow_convergence_epochs
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{where}.slow_convergence_epochs must be an integer >= 1, got {k!r}")
        number("vanishing_ratio", lambda v: v > 0, "a number > 0")
        number("exploding_ratio", lambda v: v > self.vanishing_ratio,
               f"a number > vanishing_ratio ({self.vanishing_ratio})")
        number("dying_relu_fraction", lambda v: 0 < v <= 1, "a number in (0, 1]")

    @classmethod
    def from_config(cls, node: Mapping[str, Any], where: str = "dream.thresholds") -> "Thresholds":
        """From a mapping of the fields; unknown or missing keys are a ValueError naming `where`."""
        if not isinstance(node, Mapping):
            raise ValueError(f"{where} must be a mapping of {[f.name for f in dataclasses.fields(cls)]}, got {node!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(node) - set(names))
        missing = [n for n in names if n not in node]
        if unknown or missing:
            raise ValueError(f"{where}: unknown key(s) {unknown}, missing {missing}; expected exactly {names}")
        spec = cls.__new__(cls)
        for name in names:
            object.__setattr__(spec, name, node[name])
        spec._check(where)
        return spec

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_thresholds(path: str | None = None) -> Thresholds:
    """The ``thresholds`` node of a DREAM config file (default: `conf/dream/default.yaml`)."""
    path = path or conf_path("dream", "default")
    doc = load_yaml(path)
    if "thresholds" not in doc:
        raise ValueError(f"{path}: no 'thresholds' node")
    return Thresholds.from_config(doc["thresholds"], where=f"{path}: thresholds")


# ------------------------------------------------------------------ conditions
@dataclasses.dataclass(frozen=True)
class Evidence:
    """The numbers a condition was read from (JSON-ready through `dataclasses.asdict`).

    Attributes:
      family: A's long name (``residual``, ``mlp``...).
      metric: the history key C read (``val_accuracy``; regression: ``val_mse``, relative changes).
      changes: the trailing epoch-to-epoch changes C compared with the delta.
      epoch: the epoch of the feedback row G read.
      first_layer, last_layer: the weight layers of the gradient ratio (None: fewer than two).
      gradient_ratio: first layer's gradient norm / last layer's (None without two layers).
      nonfinite_gradients: a layer's gradient norm was NaN or infinite.
      dead_fraction: zero-gradient ReLU units / all ReLU units (None: no ReLU).
      relu_units: ReLU units per example the fraction weighs (0 when the
        shapes were unknown and the layers were averaged unweighted).
      nonfinite_weights: a weight was non-finite at an epoch's end.
    """

    family: str
    metric: str
    changes: tuple[float, ...]
    epoch: int
    first_layer: str | None
    last_layer: str | None
    gradient_ratio: float | None
    nonfinite_gradients: bool
    dead_fraction: float | None
    relu_units: int
    nonfinite_weights: bool


@dataclasses.dataclass(frozen=True)
class Condition:
    """An A-C-G-W condition; `A` is None in a C-G-W pattern (``NC-NG-NW``), which matches every family."""

    A: str | None
    C: str
    G: str
    W: str
    evidence: Evidence | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for part, value, table in (("A", self.A, FAMILIES), ("C", self.C, CONVERGENCE), ("G", self.G, GRADIENTS),
                                   ("W", self.W, WEIGHTS)):
            if (value is not None or part != "A") and value not in table:
                raise ValueError(f"condition part {part} must be one of {sorted(table)}, got {value!r}")

    @property
    def name(self) -> str:
        return format_condition(self)

    @property
    def normal(self) -> bool:
        """NC-NG-NW: nothing for DREAM to repair."""
        return (self.C, self.G, self.W) == ("NC", "NG", "NW")


def format_condition(condition: Condition) -> str:
    """``OA-SC-DG-NW`` (``SC-DG-NW`` for a pattern without A), as the paper writes them."""
    parts = (condition.A, condition.C, condition.G, condition.W)
    return "-".join(p for p in parts if p is not None)


def parse_condition(text: str) -> Condition:
    """The inverse of `format_condition`: ``A-C-G-W`` or the pattern ``C-G-W``.

    Raises:
      ValueError: naming the text and the codes each part accepts.
    """
    parts = str(text).strip().upper().split("-")
    if len(parts) == 3:
        parts = [None, *parts]
    if len(parts) != 4:
        raise ValueError(f"condition {text!r} must read A-C-G-W (e.g. OA-NC-NG-NW) or C-G-W; "
                         f"A in {sorted(FAMILIES)}, C in {sorted(CONVERGENCE)}, G in {sorted(GRADIENTS)}, "
                         f"W in {sorted(WEIGHTS)}")
    try:
        return Condition(*parts)
    except ValueError as exc:
        raise ValueError(f"condition {text!r}: {exc}") from None


# ------------------------------------------------------------------ classification
def architecture_family(arch: Arch) -> str:
    """A's code for `arch` (see the module docstring for the rule)."""
    ops = {n.op for n in arch.nodes}
    if "DepthwiseConv2D" in ops:
        return "EA"
    if "SeparableConv2D" in ops:
        return "XA"
    if "Add" in ops:
        return "RA"
    if not ops & set(_CONVS):
        return "MA"
    return "OA"


def _convergence(history: Sequence[Mapping], thresholds: Thresholds) -> tuple[str, str, tuple[float, ...]]:
    if not history:
        raise FeedbackError("cannot classify convergence: the trial has no history rows (it trained no epoch)")
    if all("val_accuracy" in row for row in history):
        metric, values = "val_accuracy", [float(row["val_accuracy"]) for row in history]
        changes = [abs(b - a) for a, b in zip(values, values[1:])]
    elif all("val_mse" in row for row in history):
        metric, values = "val_mse", [float(row["val_mse"]) for row in history]
        changes = [abs(b - a) / max(abs(a), 1e-12) for a, b in zip(values, values[1:])]
    else:
        raise FeedbackError("cannot classify convergence: history rows need val_accuracy (or val_mse), "
                            f"got keys {sorted(history[-1])}")
    tail = tuple(changes[-thresholds.slow_convergence_epochs:])
    # NaN changes (a diverged epoch) compare false: a run that blew up did not stall.
    slow = bool(tail) and all(c < thresholds.slow_convergence_delta for c in tail)
    return ("SC" if slow else "NC"), metric, tail


def _relu_units(arch: Arch, relus: Sequence[str], input_shape) -> dict[str, int] | None:
    try:
        shapes = arch.shapes(input_shape)
    except InvalidArchError:
        return None
    return {r: math.prod(shapes[r]) for r in relus}


def _gradients(arch: Arch, row: Mapping, thresholds: Thresholds, input_shape) -> tuple[str, dict]:
    norms = row.get("grad_norm")
    dead = row.get("dead_relu")
    if not norms:
        raise FeedbackError(f"cannot classify gradients: epoch {row.get('epoch')}'s feedback has no gradient norms "
                            "(was it trained with train.feedback=false?)")
    order = [n.id for n in arch.topological_order() if n.op in WEIGHT_LAYERS and n.id in norms]
    nonfinite = any(not math.isfinite(float(v)) for v in norms.values())
    first, last, ratio = None, None, None
    if len(order) >= 2:
        first, last = order[0], order[-1]
        top, bottom = float(norms[first]), float(norms[last])
        ratio = 0.0 if top == 0 else (top / bottom if bottom else math.inf)
    fraction, units = None, 0
    if dead:
        counts = _relu_units(arch, list(dead), input_shape)
        if counts:
            units = sum(counts.values())
            fraction = sum(float(dead[r]) * counts[r] for r in dead) / units
        else:
            fraction = sum(float(v) for v in dead.values()) / len(dead)
    evidence = dict(first_layer=first, last_layer=last, gradient_ratio=ratio, nonfinite_gradients=nonfinite,
                    dead_fraction=fraction, relu_units=units)
    if nonfinite:
        return "EG", evidence
    if fraction is not None and fraction >= thresholds.dying_relu_fraction:
        return "DG", evidence
    if ratio is not None and ratio > thresholds.exploding_ratio:
        return "EG", evidence
    if ratio is not None and ratio < thresholds.vanishing_ratio:
        return "VG", evidence
    return "NG", evidence


def classify(arch: Arch, history: Sequence[Mapping], feedback: Sequence[Mapping], thresholds: Thresholds,
             input_shape: Sequence[int] | None = None) -> Condition:
    """A trial's A-C-G-W condition with its evidence.

    Args:
      arch: the trained architecture.
      history, feedback: the per-epoch rows `nas.train.TrainResult` (or
        `nas.search.strategy.TrialResult`) carries.
      thresholds: from `conf/dream/` (`load_thresholds`).
      input_shape: per-example input shape when the Input node has none
        (weighs each ReLU node by its units; without any, the ReLU nodes'
        fractions are averaged unweighted).
    Raises:
      FeedbackError: no history or feedback rows, or rows without the fields
        a part needs (e.g. trained with ``train.feedback=false``).
    """
    if not feedback:
        raise FeedbackError("cannot classify: the trial has no feedback rows (it trained no epoch)")
    C, metric, changes = _convergence(history, thresholds)
    row = feedback[-1]
    G, grad = _gradients(arch, row, thresholds, input_shape)
    nonfinite_weights = any(bool(r.get("nonfinite_weights", r.get("nonfinite", False))) for r in feedback)
    A = architecture_family(arch)
    evidence = Evidence(family=FAMILIES[A], metric=metric, changes=changes, epoch=int(row.get("epoch", len(feedback))),
                        nonfinite_weights=nonfinite_weights, **grad)
    return Condition(A, C, G, "EW" if nonfinite_weights else "NW", evidence)
