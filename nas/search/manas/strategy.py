"""Manas (ICSE'22): start the search from mined models matched to the data.

Three phases, as asks and tells over one explicit state:

1. **Match** (s4.2-4.5): the dataset's intent is matched against a model zoo
   (`nas.search.manas.matching`: input channels, the G-means cluster of the closest
   model, the most-common-architecture filter when that cluster is larger than
   `threshold`); each matched model is adapted to the data
   (`nas.search.manas.adapt.adapt`: input shape, head, downsampling, GlobalAvgPool),
   repaired as the arm says (`repairs`: BatchNorm, GlobalAvgPool, ReLU), and
   trained once from scratch with its mined optimizer translated for the
   trainer (`nas.search.manas.optimizer_translation.to_train_config`), or with the
   default optimizer (`learning_rate` over the run's base optimizer) when the
   arm says so or the model has no usable one ("the selected model's
   optimizer ... is not available; therefore, we use the default optimizer of
   Auto-Keras", s5.1.2). The best becomes the incumbent.
2. **Dropout** (s4.5): "after the best model is selected from candidate models,
   dropout transformation is applied to the best model ... we utilize NAS to
   identify whether using dropout is good or bad": the variants of
   `dropout_rules` (none, conv blocks 0.25, dense head 0.5, both;
   `nas.search.manas.adapt.dropout_variant`) each train `epochs` more from the
   incumbent's weights (a Dropout has none, so they carry over unchanged; the
   ``none`` variant is the control trained as long), and the best stays.
3. **Morph**: network-morphism NAS from the incumbent, delegated to the
   AutoKeras-style greedy search (`nas.search.autokeras_greedy`) over its own
   sub-state, its children trained with their lineage's optimizer.

`dropout_when` orders phases 2 and 3 (``after_selection``: the paper's
sentence above; ``after_nas``: decide dropout on the morph search's result).
The RQ2 ablation arms are configurations: Original Manas (``repairs: []``,
``mined_optimizer: false``, ``dropout: false``), Transformed Manas
(repairs and dropout, default optimizer) and Manas (everything).

The zoo is read and matched in `init`, so a resumed run replays the same
proposals as long as the zoo file is unchanged (the engine reports a
`ResumeMismatchError` otherwise).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from nas.ir import Arch, InvalidArchError
from nas.mining import zoo as mined_zoo
from nas.mining.errors import ZooFormatError
from nas.mining.zoo import ZooEntry
from nas.search import autokeras_greedy as greedy
from nas.search.manas.adapt import DROPOUT_RULES, REPAIRS, AdaptError, adapt, apply_manas_repairs, dropout_variant
from nas.search.manas.gmeans import DEFAULT_ALPHA
from nas.search.manas.matching import DEFAULT_THRESHOLD, MatchError, intent_deltas, match, shape_intent
from nas.search.manas.optimizer_translation import OptimizerTranslationError, parse_keras_optimizer, to_train_config
from nas.search.problem import Posed, Problem
from nas.search.strategy import FRESH, INHERIT, Candidate, Strategy, TrialResult, seed_of
from nas.search.trained import Trained
from nas.train.config import OptimizerConfig, ScheduleConfig

MATCH, DROPOUT, MORPH, DONE = "match", "dropout", "morph", "done"
DROPOUT_WHEN = ("after_selection", "after_nas")


class ZooNotFoundError(ZooFormatError, FileNotFoundError):
    """No zoo at the configured path, or no shipped zoo when none is configured."""


def shipped_zoo() -> str:
    """The zoo shipped with the package (`nas.mining.zoo.SEED_ZOO`)."""
    if not mined_zoo.SEED_ZOO.exists():
        raise ZooNotFoundError(f"no shipped model zoo at {mined_zoo.SEED_ZOO}; mine one with "
                               "`nas-mine DIR --db zoo.sqlite` and pass search.space.zoo=zoo.sqlite")
    return str(mined_zoo.SEED_ZOO)


def load_zoo(path: str | None) -> list[ZooEntry]:
    """The records of a SQLite or JSONL (``.jsonl``) zoo; None: the shipped one (both read by `nas.mining.zoo`)."""
    if path is None:
        shipped_zoo()  # says where to get a zoo when the package has none
        return mined_zoo.load_seed_zoo()
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise ZooNotFoundError(f"no model zoo at {path}; mine one with `nas-mine DIR --db {path}`")
    return mined_zoo.load_zoo(path)


@dataclasses.dataclass(frozen=True)
class ManasSpace:
    """Where Manas starts from and how long each phase runs (Manas matches image data only).

    Attributes:
      zoo: the model zoo's path (SQLite or JSONL); None: the shipped zoo.
      threshold, alpha: matching's filter threshold and G-means's significance.
      max_models: train at most this many matched models, the closest in
        intent first (None: all, as the paper).
      flatten_growth: `adapt`'s Flatten -> GlobalAvgPool threshold.
      repairs: `nas.search.manas.adapt.REPAIRS` applied before search, in order.
      bn_momentum: momentum of the BatchNorm layers the repair inserts (None:
        Keras's 0.99, whose running statistics lag far behind over a budget
        of a few hundred steps, so evaluation sees the wrong normalisation).
      mined_optimizer: train each matched model with its mined optimizer
        (False: the default optimizer).
      dropout: decide the dropout rule by search (phase 2).
      dropout_rules: the variants tried (`DROPOUT_RULES` names; ``none`` is
        the control).
      conv_rate, dense_rate: the dropout rates (s4.5: 0.25 and 0.5).
      dropout_when: ``after_selection`` or ``after_nas``.
      morph_trials: trials of the morphism search (None: until the budget
        ends; then it must be the last phase). It morphs as
        `autokeras_greedy` does (widen filters or units, insert a conv, add
        a skip; function-preserving, children inherit the weights).
      children: morph children proposed at once.
      initial_epochs: epochs of a matched model's first training.
      epochs: epochs of a dropout variant or morph child from inherited weights.
      learning_rate: the default optimizer's learning rate (None: the run's).
      batch_size: None takes the run's.
    """

    zoo: str | None = None
    threshold: int = DEFAULT_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    max_models: int | None = None
    flatten_growth: float = 4.0
    repairs: tuple[str, ...] = ("insert_batchnorm", "flatten_to_gap", "relu_activations")
    bn_momentum: float | None = 0.9
    mined_optimizer: bool = True
    dropout: bool = True
    dropout_rules: tuple[str, ...] = ("none", "conv", "dense", "both")
    conv_rate: float = 0.25
    dense_rate: float = 0.5
    dropout_when: str = "after_selection"
    morph_trials: int | None = 10
    children: int = 1
    initial_epochs: int = 4
    epochs: int = 2
    learning_rate: float | None = None
    batch_size: int | None = None

    # Its public path: configs named it so, and the fingerprints of runs stored then still do
    # (nas.cli.search._fingerprint_config).
    __module__ = "nas.search.manas"

    def __post_init__(self):
        unknown = [r for r in self.repairs if r not in REPAIRS or r == "add_dropout"]
        if unknown:
            raise ValueError(f"unknown repair(s) {unknown} before search; choose from "
                             f"{sorted(set(REPAIRS) - {'add_dropout'})} (dropout is decided by search: `dropout`)")
        bad_rules = [r for r in self.dropout_rules if r not in DROPOUT_RULES]
        if bad_rules or (self.dropout and not self.dropout_rules):
            raise ValueError(f"dropout_rules must be a non-empty list of {sorted(DROPOUT_RULES)}, "
                             f"got {list(self.dropout_rules)}")
        if self.dropout_when not in DROPOUT_WHEN:
            raise ValueError(f"dropout_when must be one of {DROPOUT_WHEN}, got {self.dropout_when!r}")
        if self.morph_trials is None and self.dropout and self.dropout_when == "after_nas":
            raise ValueError("morph_trials=None runs the morph search until the budget ends, so no dropout "
                             "search could follow it: give morph_trials or dropout_when='after_selection'")
        if self.morph_trials is not None and self.morph_trials < 0:
            raise ValueError(f"morph_trials must be >= 0 or None, got {self.morph_trials}")
        if self.max_models is not None and self.max_models < 1:
            raise ValueError(f"max_models must be >= 1 or None, got {self.max_models}")
        if min(self.children, self.initial_epochs, self.epochs) < 1:
            raise ValueError("children, initial_epochs and epochs must be >= 1")

    def check(self, problem: Problem) -> None:
        if not problem.image:
            raise MatchError(f"Manas matches image data (height, width, channels); the data has shape "
                             f"{problem.input_shape}")

    def most_complex(self, problem: Problem) -> Arch:
        """The largest starting model (Deep-n-Cheap's c_0 when w_c > 0)."""
        starts, _, _ = starting_points(self, problem)
        return max((s.arch for s in starts), key=lambda a: a.num_params(problem.input_shape))

    def greedy_space(self) -> greedy.GreedySpace:
        return greedy.GreedySpace(family="cnn", children=self.children, epochs=self.epochs,
                                  learning_rate=self.learning_rate, batch_size=self.batch_size)


@dataclasses.dataclass(frozen=True)
class Setup:
    """How a lineage trains: the default optimizer (all None but `learning_rate`) or a mined one."""

    learning_rate: float | None = None
    optimizer: OptimizerConfig | None = None
    schedule: ScheduleConfig | None = None
    label: str = "default"


@dataclasses.dataclass(frozen=True)
class Start:
    """A matched, adapted and repaired model and how it trains (phase 1)."""

    arch: Arch
    setup: Setup
    choices: tuple[tuple[str, Any], ...]


def mined_setup(mined: dict | None, learning_rate: float | None) -> tuple[Setup, str]:
    """The `Setup` of a mined optimizer dict, and a note on how it was translated.

    Every optimizer the miner recognises trains as mined (`to_train_config`:
    SGD, Adam, RMSprop, Adagrad, Adadelta, Adamax, Nadam, FTRL, AdamW); only a
    missing, unresolved or malformed one takes the default optimizer (s5.1.2).
    """
    default = Setup(learning_rate)
    try:
        parsed = parse_keras_optimizer(mined)
        translated = None if parsed is None else to_train_config(mined)
    except OptimizerTranslationError as exc:
        return default, f"mined optimizer unusable ({exc}); default optimizer"
    if parsed is None:
        return default, "no mined optimizer; default optimizer"
    schedule = None if translated.schedule == ScheduleConfig() else translated.schedule
    note = f"mined {parsed.name}" + (f" ({'; '.join(translated.differences)})" if translated.differences else "")
    return Setup(None, translated.optimizer, schedule, f"mined {parsed.name}"), note


def starting_points(space: ManasSpace, problem: Problem
                    ) -> tuple[tuple[Start, ...], tuple[tuple[str, str], ...], str]:
    """Phase 1's models: match, adapt, repair and attach an optimizer.

    Returns:
      ``(starts, skipped, reason)``: the starting points (closest intent
      first, at most `max_models`, no two alike), (zoo hash, why) for matched
      models that could not be adapted, and matching's reason line.
    Raises:
      MatchError: nothing in the zoo matches, or nothing matched adapts.
    """
    zoo = load_zoo(space.zoo)
    intent = shape_intent(problem.input_shape, problem.num_outputs)
    result = match(intent, zoo, threshold=space.threshold, alpha=space.alpha)
    ranked = sorted(zip(result.selected_indices, result.selected),
                    key=lambda pair: (intent_deltas(intent, result.intents[pair[0]]), pair[0]))
    starts: list[Start] = []
    skipped: list[tuple[str, str]] = []
    seen = set()
    for _, entry in ranked:
        if space.max_models is not None and len(starts) >= space.max_models:
            break
        try:
            arch, adapted = adapt(entry.arch, problem.input_shape, problem.num_outputs,
                                  flatten_growth=space.flatten_growth)
            arch, repaired = apply_manas_repairs(arch, space.repairs, bn_momentum=space.bn_momentum)
        except (AdaptError, InvalidArchError) as exc:
            skipped.append((entry.hash, str(exc)))
            continue
        setup, note = mined_setup(entry.optimizer, space.learning_rate) if space.mined_optimizer else (
            Setup(space.learning_rate), "default optimizer (arm)")
        identity = (arch.structural_hash(), setup)
        if identity in seen:
            continue
        seen.add(identity)
        where = entry.provenance
        choices = (("phase", MATCH), ("zoo_hash", entry.hash), ("repo", where.repo or ""),
                   ("path", where.path or ""), ("line", where.first_line), ("optimizer", setup.label),
                   ("optimizer_note", note), ("adapt", ",".join(c["adapt"] for c in adapted)),
                   ("repairs", len(repaired)))
        starts.append(Start(arch.replace_nodes(arch.nodes, name=f"manas-{entry.hash[:8]}"), setup, choices))
    if not starts:
        raise MatchError(f"none of the {len(result.selected)} matched model(s) could be adapted to "
                         f"{problem.input_shape} -> {problem.num_outputs}: "
                         + "; ".join(f"{h[:8]}: {why}" for h, why in skipped[:3]))
    return tuple(starts), tuple(skipped), result.reason


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A proposal not told yet."""

    trial: int
    phase: str
    arch: Arch
    parent: int | None


@dataclasses.dataclass(frozen=True)
class ManasState:
    """Where the search is.

    Attributes:
      space, problem, seed: as given to `init`.
      phases: the phases still to run after the current one.
      phase: the current phase.
      starts: phase 1's starting points; `asked` of them are proposed.
      skipped, match_reason: what matching and adaptation left out, and why.
      setups: (trial, setup) of every proposal (a child trains as its lineage).
      pending: proposals not told yet.
      best: the incumbent (lowest objective so far; weights as host arrays).
      dropout_base: the incumbent phase 2 started from; `variants` its
        variants still to ask; `dropout_trials` (trial, rule) of those asked.
      dropout_rule: the rule phase 2 chose (None until it ended).
      greedy: the morph phase's sub-state; `morph_asked` its proposals;
        `morph_stuck` once no morph applies to the incumbent.
      history: (trial, phase, parent, objective) of every told trial.
    """

    space: ManasSpace
    problem: Problem
    seed: int
    phases: tuple[str, ...]
    starts: tuple[Start, ...]
    skipped: tuple[tuple[str, str], ...]
    match_reason: str
    phase: str = MATCH
    next_trial: int = 0
    asked: int = 0
    setups: tuple[tuple[int, Setup], ...] = ()
    pending: tuple[Proposal, ...] = ()
    best: Trained | None = None
    dropout_base: Trained | None = None
    variants: tuple[tuple[str, Arch], ...] = ()
    dropout_trials: tuple[tuple[int, str], ...] = ()
    dropout_rule: str | None = None
    greedy: greedy.GreedyState | None = None
    morph_asked: int = 0
    morph_stuck: bool = False
    history: tuple[tuple[int, str, int | None, float], ...] = ()

    def setup_of(self, trial: int) -> Setup:
        return dict(self.setups)[trial]


def init(posed: Posed[ManasSpace], key) -> ManasState:
    """Matches the zoo to the data; phase 1 proposes the starting points."""
    space, problem = posed
    starts, skipped, reason = starting_points(space, problem)
    later = (DROPOUT, MORPH) if space.dropout_when == "after_selection" else (MORPH, DROPOUT)
    phases = tuple(p for p in later if (p != DROPOUT or space.dropout) and (p != MORPH or space.morph_trials != 0))
    return ManasState(space, problem, seed_of(key), phases, starts, skipped, reason)


def _candidate(state: ManasState, trial: int, arch: Arch, setup: Setup, choices: dict, epochs: int,
               parent: int | None = None, variables: Any = None) -> Candidate:
    return Candidate(trial, arch, setup.learning_rate, choices, batch_size=state.space.batch_size, epochs=epochs,
                     parent=parent, start=FRESH if parent is None else INHERIT, variables=variables,
                     optimizer=setup.optimizer, schedule=setup.schedule)


def _exhausted(state: ManasState) -> bool:
    if state.phase == MATCH:
        return state.asked >= len(state.starts)
    if state.phase == DROPOUT:
        return not state.variants
    if state.phase == MORPH:
        limit = state.space.morph_trials
        return state.morph_stuck or (limit is not None and state.morph_asked >= limit)
    return False


def _enter(state: ManasState) -> ManasState:
    """Moves to the next phase once the current one has nothing left to ask or wait for."""
    while not state.pending and state.phase != DONE and _exhausted(state):
        if state.phase == DROPOUT:
            # The added rule that won, or none: the incumbent kept its own (mined) dropout.
            rule = dict(state.dropout_trials).get(state.best.trial, "none")
            state = dataclasses.replace(state, dropout_rule=rule)
        if state.best is None or not state.phases:
            return dataclasses.replace(state, phase=DONE)
        phase, rest = state.phases[0], state.phases[1:]
        state = dataclasses.replace(state, phase=phase, phases=rest)
        if phase == DROPOUT:
            state = dataclasses.replace(state, dropout_base=state.best, variants=_dropout_variants(state))
        elif phase == MORPH:
            sub = greedy.GreedyState(state.space.greedy_space(), state.problem, state.seed,
                                     next_trial=state.next_trial, best=state.best)
            state = dataclasses.replace(state, greedy=sub)
    return state


def _dropout_variants(state: ManasState) -> tuple[tuple[str, Arch], ...]:
    space, out, seen = state.space, [], set()
    for rule in space.dropout_rules:
        arch, _ = dropout_variant(state.best.arch, rule, conv_rate=space.conv_rate, dense_rate=space.dense_rate)
        if arch.structural_hash() in seen:
            continue  # e.g. no pooling: the conv rule adds nothing
        seen.add(arch.structural_hash())
        out.append((rule, arch))
    return tuple(out)


def _ask_match(state: ManasState, n: int) -> tuple[ManasState, list[tuple[Candidate, Proposal, Setup]]]:
    out = []
    for i, start in enumerate(state.starts[state.asked:state.asked + n]):
        trial = state.next_trial + i
        c = _candidate(state, trial, start.arch, start.setup, dict(start.choices), state.space.initial_epochs)
        out.append((c, Proposal(trial, MATCH, start.arch, None), start.setup))
    return dataclasses.replace(state, asked=state.asked + len(out)), out


def _ask_dropout(state: ManasState, n: int) -> tuple[ManasState, list[tuple[Candidate, Proposal, Setup]]]:
    base, out = state.dropout_base, []
    setup = state.setup_of(base.trial)
    for i, (rule, arch) in enumerate(state.variants[:n]):
        trial = state.next_trial + i
        named = arch.replace_nodes(arch.nodes, name=f"manas-t{trial}-dropout-{rule}")
        choices = {"phase": DROPOUT, "dropout_rule": rule, "optimizer": setup.label}
        c = _candidate(state, trial, named, setup, choices, state.space.epochs, base.trial, base.variables)
        out.append((c, Proposal(trial, DROPOUT, named, base.trial), setup))
    asked = tuple((c.trial, c.choices["dropout_rule"]) for c, _, _ in out)
    return dataclasses.replace(state, variants=state.variants[len(out):],
                               dropout_trials=state.dropout_trials + asked), out


def _ask_morph(state: ManasState, n: int) -> tuple[ManasState, list[tuple[Candidate, Proposal, Setup]]]:
    limit = state.space.morph_trials
    n = n if limit is None else min(n, limit - state.morph_asked)
    sub, children = greedy.ask(state.greedy, n) if n > 0 else (state.greedy, [])
    out = []
    for c in children:
        setup = state.setup_of(c.parent)
        named = c.arch.replace_nodes(c.arch.nodes, name=f"manas-t{c.trial}")
        choices = {"phase": MORPH, "optimizer": setup.label, **c.choices}
        out.append((_candidate(state, c.trial, named, setup, choices, state.space.epochs, c.parent, c.variables),
                    Proposal(c.trial, MORPH, named, c.parent), setup))
    stuck = n > 0 and not children and not sub.pending  # no morph applies to the incumbent
    return dataclasses.replace(state, greedy=sub, morph_asked=state.morph_asked + len(out),
                               morph_stuck=stuck), out


_ASK = {MATCH: _ask_match, DROPOUT: _ask_dropout, MORPH: _ask_morph}


def ask(state: ManasState, n: int) -> tuple[ManasState, list[Candidate]]:
    """Up to n proposals of the current phase; a phase starts once the previous one is told."""
    state = _enter(state)
    if state.phase == DONE or n < 1:
        return state, []
    state, made = _ASK[state.phase](state, n)
    state = dataclasses.replace(
        state, next_trial=state.next_trial + len(made), pending=state.pending + tuple(p for _, p, _ in made),
        setups=state.setups + tuple((c.trial, s) for c, _, s in made))
    if not made and not state.pending:  # the phase ended without a proposal (a stuck morph search)
        return ask(state, n)
    return state, [c for c, _, _ in made]


def tell(state: ManasState, results: Sequence[TrialResult]) -> ManasState:
    """Records results; a strictly lower objective than the incumbent's becomes the incumbent."""
    pending = {p.trial: p for p in state.pending}
    best, history = state.best, list(state.history)
    for r in sorted(results, key=lambda r: r.trial):
        if r.trial not in pending:
            raise ValueError(f"trial {r.trial} was not proposed by this search state (or was told already)")
        p = pending[r.trial]
        if r.ok and (best is None or r.objective < best.objective):
            best = Trained.of(r, p.arch, "Manas")
        history.append((r.trial, p.phase, p.parent, float(r.objective)))
    sub = state.greedy
    morph_results = [r for r in results if pending[r.trial].phase == MORPH]
    if morph_results:
        sub = greedy.tell(sub, morph_results)
    told = {r.trial for r in results}
    state = dataclasses.replace(state, best=best, history=tuple(history), greedy=sub,
                                pending=tuple(p for p in state.pending if p.trial not in told))
    return _enter(state)


def done(state: ManasState) -> bool:
    return _enter(state).phase == DONE


MANAS = Strategy("manas", init, ask, tell, done, needs_weights=True, space=ManasSpace)

__all__ = ["MANAS", "ManasSpace", "ManasState", "Setup", "Start", "ZooNotFoundError", "load_zoo", "mined_setup",
           "shipped_zoo", "starting_points"]
