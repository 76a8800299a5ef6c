"""Deep-n-Cheap's three-stage search (sections 2-3) on the strategy contract.

Stage 1: Bayesian optimisation (ramp-distance kernel, Sobol initial points,
expected improvement over random candidates) of depth and widths: hidden
widths for MLPs, per-layer channels for CNNs; everything else at the
paper's presets. Stage 2: greedy grid search from the stage-1 winner: for
MLPs one grid over the dropout rate; for CNNs, in order, downsampling by
strides or max pooling (all combinations), the BN fraction, the dropout
fraction with input and hidden drop probabilities, and shortcuts. Each
sub-stage keeps the configuration of lowest f, the incumbent included.
Stage 3: Bayesian optimisation of learning rate, weight decay and batch
size for the final architecture.

Every stage minimises the engine's objective f = log(error + w_c c / c_0).
Trials train with the run's base settings except where a stage sets them:
stages 1-2 use the paper's learning rate and batch size presets and its
weight-decay rule lambda = I(N_p >= threshold) N_p / scale.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Sequence

from nas.ir import Arch
from nas.search import bo
from nas.search.dnc_arch import CnnConfig, MlpConfig, build_cnn, build_mlp, downsampling_sites
from nas.search.problem import Posed, Problem
from nas.search.strategy import Candidate, Strategy, TrialResult, seed_of

FAMILIES = ("mlp", "cnn")


@dataclasses.dataclass(frozen=True)
class KernelWeights:
    """The ramp kernel's per-hyperparameter weight s_k, maximum distance omega_k and power r_k (None: defaults)."""

    s: float = 1.0
    omega: float = 3.0
    r: float | tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class DncSpace:
    """Deep-n-Cheap's search space and stage settings (defaults: the paper's, section 3).

    Attributes:
      family: ``mlp``, or ``cnn`` (image data only).
      mlp_layers, mlp_width: hidden layers and widths (FMNIST: 0-2, 20-400).
      mlp_dropout: stage-1 dropout after every hidden layer.
      mlp_dropout_grid: stage-2 grid of dropout rates.
      cnn_layers, cnn_channels, cnn_max_channels: conv layers, the first
        layer's channels, and the cap of c_{i+1} in [c_i, min(2 c_i, cap)].
      cnn_thresholds: downsampling precedes the layer where c_i crosses these.
      cnn_dropout: stage-1 dropout after every conv layer (BN after all).
      cnn_shortcut_depth: stage-1 configurations deeper than this get
        shortcuts every other layer.
      bn_fractions, dropout_fractions, input_dropouts, dropout_rates,
        shortcuts: the stage-2 CNN grids.
      learning_rate, batch_size: the stage 1-2 presets.
      wd_threshold, wd_scale: the stage 1-2 weight decay I(N_p >= t) N_p / s
        (MLP on (F)MNIST: 1e4, 1e9; CNN: 1e6, 1e11).
      lr_range, wd_range, wd_zero_below, batch_range: the stage-3 space;
        weight decay below `wd_zero_below` becomes 0.
      stage1_trials, stage3_trials: evaluations of each BO stage.
      n_initial: Sobol points first in each BO stage; n_candidates: random
        configurations scored by EI per proposal.
      layers_kernel, lr_kernel, wd_kernel, batch_kernel: ramp kernel weights.
      stages: which stages run (e.g. (1, 3) for an ablation without stage 2).
    """

    family: str = "mlp"
    mlp_layers: tuple[int, int] = (0, 2)
    mlp_width: tuple[int, int] = (20, 400)
    mlp_dropout: float = 0.2
    mlp_dropout_grid: tuple[float, ...] = (0.0, 0.1, 0.3, 0.4, 0.5)
    cnn_layers: tuple[int, int] = (4, 16)
    cnn_channels: tuple[int, int] = (16, 64)
    cnn_max_channels: int = 512
    cnn_thresholds: tuple[int, ...] = (64, 128, 256)
    cnn_dropout: float = 0.3
    cnn_shortcut_depth: int = 8
    bn_fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    dropout_fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    input_dropouts: tuple[float, ...] = (0.1, 0.2)
    dropout_rates: tuple[float, ...] = (0.15, 0.3, 0.45)
    shortcuts: tuple[str, ...] = ("none", "every4", "every2")
    learning_rate: float = 1e-3
    batch_size: int = 256
    wd_threshold: float = 1e4
    wd_scale: float = 1e9
    lr_range: tuple[float, float] = (1e-5, 1e-1)
    wd_range: tuple[float, float] = (1e-6, 1e-3)
    wd_zero_below: float = 1e-5
    batch_range: tuple[int, int] = (32, 512)
    stage1_trials: int = 30
    stage3_trials: int = 30
    n_initial: int = 15
    n_candidates: int = 1000
    layers_kernel: KernelWeights = KernelWeights()
    lr_kernel: KernelWeights = KernelWeights()
    wd_kernel: KernelWeights = KernelWeights()
    batch_kernel: KernelWeights = KernelWeights()
    stages: tuple[int, ...] = (1, 2, 3)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if 1 not in self.stages or not set(self.stages) <= {1, 2, 3}:
            raise ValueError(f"stages must include 1 and be a subset of (1, 2, 3), got {self.stages}")

    def check(self, problem: Problem) -> None:
        """The CNN family needs image data."""
        if self.family == "cnn" and not problem.image:
            raise ValueError(f"the CNN space needs (h, w, c) images; the data has shape {problem.input_shape}")

    def most_complex(self, problem: Problem) -> Arch:
        """The deepest, widest configuration: Deep-n-Cheap's reference for c_0."""
        return most_complex(self, problem)


def stage1_space(space: DncSpace) -> bo.Space:
    """Depth and widths as one ramp-kernel hyperparameter (summed for MLPs, layer by layer for CNNs)."""
    k = space.layers_kernel
    if space.family == "mlp":
        p = bo.Hyperparameter("hidden", space.mlp_width[0], space.mlp_width[1], kind="summed",
                              layers=space.mlp_layers, s=k.s, omega=k.omega, r=k.r)
    else:
        p = bo.Hyperparameter("channels", space.cnn_channels[0], space.cnn_channels[1], kind="layers",
                              layers=space.cnn_layers, growth=2.0, cap=space.cnn_max_channels,
                              s=k.s, omega=k.omega, r=k.r)
    return bo.Space((p,))


def stage3_space(space: DncSpace) -> bo.Space:
    """Learning rate and weight decay on log10 scales, batch size linear."""
    return bo.Space((
        bo.Hyperparameter("learning_rate", *space.lr_range, log=True, s=space.lr_kernel.s,
                          omega=space.lr_kernel.omega, r=space.lr_kernel.r),
        bo.Hyperparameter("weight_decay", *space.wd_range, log=True, s=space.wd_kernel.s,
                          omega=space.wd_kernel.omega, r=space.wd_kernel.r),
        bo.Hyperparameter("batch_size", *space.batch_range, integer=True, s=space.batch_kernel.s,
                          omega=space.batch_kernel.omega, r=space.batch_kernel.r),
    ))


def build(space: DncSpace, problem: Problem, config: MlpConfig | CnnConfig) -> Arch:
    """The IR of a configuration, sized for the problem."""
    if isinstance(config, MlpConfig):
        return build_mlp(config, problem.num_outputs, problem.input_shape)
    return build_cnn(config, problem.num_outputs, problem.input_shape, space.cnn_thresholds)


def preset_weight_decay(space: DncSpace, num_params: int) -> float:
    """The paper's stage 1-2 rule: lambda = I(N_p >= threshold) * N_p / scale."""
    return num_params / space.wd_scale if num_params >= space.wd_threshold else 0.0


def most_complex(space: DncSpace, problem: Problem) -> Arch:
    """The space's most complex configuration (deepest, widest): Deep-n-Cheap's reference for c_0."""
    if space.family == "mlp":
        return build(space, problem, MlpConfig((space.mlp_width[1],) * space.mlp_layers[1], space.mlp_dropout))
    channels, c = [], space.cnn_channels[1]
    for _ in range(space.cnn_layers[1]):
        channels.append(c)
        c = min(2 * c, space.cnn_max_channels)
    return build(space, problem, _stage1_cnn(space, tuple(channels)))


def _stage1_cnn(space: DncSpace, channels: tuple[int, ...]) -> CnnConfig:
    return CnnConfig(channels, bn_fraction=1.0, dropout_fraction=1.0, dropout=space.cnn_dropout,
                     shortcuts="every2" if len(channels) > space.cnn_shortcut_depth else "none")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One evaluated (or pending) configuration: stage, architecture config, training settings, f."""

    trial: int
    stage: str
    config: Any
    training: tuple[float, float, int]  # learning rate, weight decay, batch size
    value: float | None = None
    bo_config: Any = None  # the BO stage's configuration of this trial (told back to its optimiser)


@dataclasses.dataclass(frozen=True)
class DncState:
    """Where the three-stage search is.

    Attributes:
      space, problem, seed: as given to `init`.
      stage: ``1``, ``2:<sub-stage>`` or ``3``; ``done`` at the end.
      bo_state: the current BO stage's optimiser state.
      grid: the current stage-2 sub-stage's configurations still to ask.
      entries: every trial so far (config, training, value once told).
      incumbent: trial index of the best configuration so far (the one the
        next stage starts from).
      next_trial: the next trial index.
    """

    space: DncSpace
    problem: Problem
    seed: int
    stage: str = "1"
    bo_state: Any = None
    grid: tuple = ()
    entries: tuple[Entry, ...] = ()
    incumbent: int | None = None
    next_trial: int = 0

    def entry(self, trial: int) -> Entry:
        return next(e for e in self.entries if e.trial == trial)


def _stage_substages(space: DncSpace) -> tuple[str, ...]:
    if 2 not in space.stages:
        return ()
    return ("2:dropout",) if space.family == "mlp" else ("2:downsampling", "2:bn", "2:dropout", "2:shortcuts")


def init(posed: Posed[DncSpace], key) -> DncState:
    space, problem = posed
    seed = seed_of(key)
    return DncState(space, problem, seed, "1", bo.init(stage1_space(space), seed, n_initial=space.n_initial,
                                                        n_candidates=space.n_candidates))


def _pending(state: DncState) -> list[Entry]:
    return [e for e in state.entries if e.value is None]


def _candidate(state: DncState, entry: Entry, arch: Arch) -> Candidate:
    lr, wd, batch = entry.training
    choices = {"stage": entry.stage, **_describe(entry.config), "learning_rate": lr, "weight_decay": wd,
               "batch_size": batch}
    return Candidate(entry.trial, arch, learning_rate=lr, choices=choices, weight_decay=wd, batch_size=batch)


def _describe(config: MlpConfig | CnnConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _stage1_config(space: DncSpace, bo_config: dict) -> MlpConfig | CnnConfig:
    if space.family == "mlp":
        return MlpConfig(tuple(bo_config["hidden"]), space.mlp_dropout)
    return _stage1_cnn(space, tuple(bo_config["channels"]))


def _grid(state: DncState, substage: str) -> tuple:
    """The configurations of one stage-2 sub-stage, derived from the incumbent."""
    space, base = state.space, state.entry(state.incumbent).config
    if substage == "2:dropout" and isinstance(base, MlpConfig):
        return tuple(dataclasses.replace(base, dropout=float(r)) for r in space.mlp_dropout_grid)
    if substage == "2:downsampling":
        n = len(downsampling_sites(base.channels, space.cnn_thresholds, state.problem.input_shape))
        return tuple(dataclasses.replace(base, downsampling=combo)
                     for combo in itertools.product(("maxpool", "stride"), repeat=n))
    if substage == "2:bn":
        return tuple(dataclasses.replace(base, bn_fraction=float(f)) for f in space.bn_fractions)
    if substage == "2:dropout":
        configs = [dataclasses.replace(base, dropout_fraction=0.0, input_dropout=0.0)]
        configs += [dataclasses.replace(base, dropout_fraction=float(f), input_dropout=float(i), dropout=float(r))
                    for f in space.dropout_fractions if f > 0
                    for i in space.input_dropouts for r in space.dropout_rates]
        return tuple(configs)
    if substage == "2:shortcuts":
        return tuple(dataclasses.replace(base, shortcuts=s) for s in space.shortcuts)
    raise ValueError(f"unknown stage-2 sub-stage {substage!r}")


def _preset_training(state: DncState, arch: Arch) -> tuple[float, float, int]:
    space = state.space
    return (space.learning_rate, preset_weight_decay(space, arch.num_params(state.problem.input_shape)),
            space.batch_size)


def _best(entries: Sequence[Entry]) -> Entry | None:
    finite = [e for e in entries if e.value is not None and math.isfinite(e.value)]
    return min(finite, key=lambda e: (e.value, e.trial)) if finite else None


def _advance(state: DncState) -> DncState:
    """Moves to the next stage or sub-stage once the current one is asked and told."""
    space = state.space
    while True:
        if _pending(state):
            return state
        if state.stage == "1" and state.bo_state.issued < space.stage1_trials:
            return state
        if state.stage == "3" and state.bo_state.issued < space.stage3_trials:
            return state
        if state.stage.startswith("2:") and state.grid:
            return state
        if state.stage == "done":
            return state
        stage_entries = [e for e in state.entries if e.stage == state.stage]
        best = _best(stage_entries + ([state.entry(state.incumbent)] if state.incumbent is not None else []))
        incumbent = best.trial if best is not None else state.incumbent
        if incumbent is None:  # every stage-1 trial failed: nothing to build on
            return dataclasses.replace(state, stage="done")
        order = ["1", *_stage_substages(space), *(["3"] if 3 in space.stages else []), "done"]
        nxt = order[order.index(state.stage) + 1]
        state = dataclasses.replace(state, stage=nxt, incumbent=incumbent, bo_state=None, grid=())
        if nxt.startswith("2:"):
            seen = {e.config for e in state.entries}
            grid = tuple(c for c in _grid(state, nxt) if c not in seen)
            state = dataclasses.replace(state, grid=grid)
        elif nxt == "3":
            state = dataclasses.replace(state, bo_state=bo.init(stage3_space(space), state.seed + 3,
                                                                n_initial=space.n_initial,
                                                                n_candidates=space.n_candidates))


def ask(state: DncState, n: int) -> tuple[DncState, list[Candidate]]:
    """Up to n proposals of the current stage; none while a stage waits for its results."""
    state = _advance(state)
    space, out = state.space, []
    while len(out) < n and state.stage != "done":
        trial = state.next_trial
        bo_config = None
        if state.stage in ("1", "3"):
            limit = space.stage1_trials if state.stage == "1" else space.stage3_trials
            if state.bo_state.issued >= limit:
                break
            bo_state, (bo_config,) = bo.ask(state.bo_state, 1)
            state = dataclasses.replace(state, bo_state=bo_state)
            if state.stage == "1":
                arch_config = _stage1_config(space, bo_config)
                arch = build(space, state.problem, arch_config)
                training = _preset_training(state, arch)
            else:
                arch_config = state.entry(state.incumbent).config
                arch = build(space, state.problem, arch_config)
                wd = bo_config["weight_decay"] if bo_config["weight_decay"] >= space.wd_zero_below else 0.0
                training = (float(bo_config["learning_rate"]), float(wd), int(bo_config["batch_size"]))
        else:
            if not state.grid:
                break
            arch_config = state.grid[0]
            state = dataclasses.replace(state, grid=state.grid[1:])
            arch = build(space, state.problem, arch_config)
            training = _preset_training(state, arch)
        entry = Entry(trial, state.stage, arch_config, training, bo_config=bo_config)
        state = dataclasses.replace(state, entries=state.entries + (entry,), next_trial=trial + 1)
        out.append(_candidate(state, entry, arch))
    return state, out


def tell(state: DncState, results: Sequence[TrialResult]) -> DncState:
    """Records f of each trial; a BO stage's optimiser learns its own trials' values."""
    values = {r.trial: float(r.objective) for r in results}
    entries = tuple(dataclasses.replace(e, value=values[e.trial]) if e.trial in values else e
                    for e in state.entries)
    state = dataclasses.replace(state, entries=entries)
    if state.bo_state is not None:
        told = [(e.bo_config, values[e.trial]) for e in entries
                if e.trial in values and e.stage == state.stage and e.bo_config is not None]
        state = dataclasses.replace(state, bo_state=bo.tell(state.bo_state, told))
    return _advance(state)


def done(state: DncState) -> bool:
    return _advance(state).stage == "done"


def best(state: DncState) -> Entry | None:
    """The evaluated configuration of lowest f over all stages."""
    return _best(state.entries)


DNC = Strategy("dnc", init, ask, tell, done, space=DncSpace)
