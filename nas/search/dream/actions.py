"""DREAM's action space (TOSEM'24 s4.1, Table 1; the AutoKeras actions of s4.2's Table 2).

An action is a pure function (arch, settings) -> (arch, settings), where
settings is a `nas.train.TrainConfig`, named ``object=value`` as the paper
writes them (``activation=selu``, ``momentum=0.9``, ``block_type=residual``).
`ACTIONS` maps each name to its `Action`:

- ``initializer=`` he_uniform / lecun_uniform / glorot_uniform (row 1),
  ``activation=`` selu / tanh / relu (row 2): IR attributes, trained afresh;
- ``momentum=`` 0 / 0.1 / 0.5 / 0.9 (row 3, SGD only); ``end_learning_rate=``
  1e-4 / 1e-5 / 2e-6 / 1e-6 / 0 and ``weight_decay=`` 0.001 ... 0.1 (rows 4-5,
  AdamW only); ``optimizer=`` any optimizer with a `conf/optimizer/` file (its
  defaults, learning rate included); ``learning_rate=`` (Table 2's values);
  ``schedule=`` any `conf/schedule/` file. The trainer has no polynomial
  decay, so an end learning rate e is reached by the step schedule: four
  drops, at 20/40/60/80% of training, by (e / lr)^(1/4) each, so the last
  fifth trains at exactly e (e = 0: cosine decay to 0);
- ``batchnorm=True/False``, ``dropout=`` 0 / 0.25 / 0.5;
- ``block_type=`` plain / residual / separable / depthwise (`arch_edits`);
- ``width=x2`` / ``width=x0.5``, ``depth=+1`` / ``depth=-1``.

`Action.function_preserving` marks the actions whose child can start from
the parent's trained weights and compute the same function (eval mode):
``width=x2`` (`nas.morph.widen` on every hidden layer), ``depth=+1``
(`nas.morph.deepen`), ``block_type=residual`` (`nas.morph.add_skip`, a
zero-initialised shortcut around each block) and the dropout actions (no
weights; Dropout is the identity in eval mode). `Action.inherit` returns
the child's weights; every other action retrains from scratch.

Table 1's fine-tuning rows 6-10 and AutoKeras's ``pretrained=True``
(`nas.search.dream.finetune`): ``pretrained=True``, ``two_step=`` /
``three_step=`` True/False, ``step_epochs=`` 0.1 ... 0.5, ``step_lr=`` 1 /
0.1 / 0.01, ``freeze=`` all / no / bn. They need a pre-trained checkpoint
of this framework (`Action.needs_pretrained`): their child is built by
`Action.from_pretrained`, which starts it from the checkpoint's weights.
Without one, ``pretrained=True`` never applies and the others apply only to
a model already transferred (``settings.finetune.body`` non-empty).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any, Callable

import jax

from nas.compile import init_variables, to_flax
from nas.ir import Arch, InvalidArchError
from nas.morph import MorphError, add_skip, deepen, tensor_activation, widen
from nas.search.dream import arch_edits as edits
from nas.search.dream import finetune
from nas.search.dream.conf_files import conf_dir, conf_path, load_yaml
from nas.train import OptimizerConfig, ScheduleConfig, TrainConfig

# Table 1's value lists (row 3 lists 0.9 twice; once is enough).
INITIALIZERS = ("he_uniform", "lecun_uniform", "glorot_uniform")
ACTIVATIONS = ("selu", "tanh", "relu")
SGD_MOMENTA = (0.0, 0.1, 0.5, 0.9)
END_LEARNING_RATES = (1e-4, 1e-5, 2e-6, 1e-6, 0.0)
WEIGHT_DECAYS = (0.001, 0.005, 0.01, 0.05, 0.1)
# Table 2's learning-rate actions; AutoKeras's dropout choices.
LEARNING_RATES = (0.1, 0.01, 0.001, 0.0001)
DROPOUT_RATES = (0.0, 0.25, 0.5)
BLOCK_TYPES = ("plain", "residual", "separable", "depthwise")
END_LR_DROPS = (0.2, 0.4, 0.6, 0.8)

Transform = Callable[[Arch, TrainConfig], tuple[Arch, TrainConfig]]
Morph = Callable[[Arch, dict, jax.Array], tuple[Arch, dict]]
InitWeights = Callable[[Arch, TrainConfig, "finetune.Pretrained", jax.Array], dict]
_REFUSALS = (MorphError, InvalidArchError, ValueError)  # TrainConfigError is a ValueError


class ActionError(ValueError):
    """An action that does not apply, or an unknown action name."""


@dataclasses.dataclass(frozen=True)
class Action:
    """One ``object=value`` action.

    Attributes:
      object, value: what it changes and to what (`name` joins them).
      transform: (arch, settings) -> (arch, settings) for training afresh;
        raises MorphError/InvalidArchError/ValueError where it cannot apply.
      function_preserving: `morph` gives the child's weights from the
        parent's, and the child computes what the parent did.
      morph: (arch, variables, key) -> (arch, variables), for
        function-preserving actions.
      needs_pretrained: a fine-tuning action: its child needs the
        pre-trained checkpoint (`from_pretrained` builds it).
      init_weights: (arch, settings, pretrained, key) -> variables: the
        child's starting weights, copied from the checkpoint (the settings
        fine-tuning actions).
    """

    object: str
    value: Any
    transform: Transform = dataclasses.field(repr=False)
    function_preserving: bool = False
    morph: Morph | None = dataclasses.field(default=None, repr=False)
    needs_pretrained: bool = False
    init_weights: InitWeights | None = dataclasses.field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.object}={_format(self.value)}"

    def applicable(self, arch: Arch, settings: TrainConfig) -> bool:
        """Whether it applies and changes something (an action already in effect does not apply)."""
        try:
            child, child_settings = self.transform(arch, settings)
        except _REFUSALS:
            return False
        if child is arch or child == arch:
            return child_settings != settings
        try:
            child.validate()
        except InvalidArchError:
            return False
        return True

    def __call__(self, arch: Arch, settings: TrainConfig) -> tuple[Arch, TrainConfig]:
        """The child (arch, settings).

        Raises:
          ActionError: the action does not apply to them (naming why).
        """
        try:
            child, child_settings = self.transform(arch, settings)
            child.validate()
        except _REFUSALS as exc:
            raise ActionError(f"action {self.name} does not apply to {arch.name or 'this architecture'}: {exc}") \
                from None
        if (child is arch or child == arch) and child_settings == settings:
            raise ActionError(f"action {self.name} changes nothing: it is already in effect")
        return child, child_settings

    def inherit(self, arch: Arch, settings: TrainConfig, variables: dict, key: jax.Array) \
            -> tuple[Arch, TrainConfig, dict]:
        """The child with the parent's trained `variables` carried over (function-preserving actions only)."""
        if not self.function_preserving:
            raise ActionError(f"action {self.name} is not function-preserving: train its child from scratch")
        try:
            child, child_vars = self.morph(arch, variables, key)
            child.validate()
        except _REFUSALS as exc:
            raise ActionError(f"action {self.name} does not apply to {arch.name or 'this architecture'}: {exc}") \
                from None
        if child == arch:
            raise ActionError(f"action {self.name} changes nothing: it is already in effect")
        return child, settings, child_vars

    def from_pretrained(self, arch: Arch, settings: TrainConfig, pretrained: "finetune.Pretrained",
                        input_shape: Any, num_outputs: int, key: jax.Array) -> tuple[Arch, TrainConfig, dict]:
        """A fine-tuning action's child (arch, settings, starting variables) from the checkpoint `pretrained`.

        ``pretrained=True``: the checkpoint's model transferred to this problem
        (`finetune.apply_pretrained`); the others: the settings change, the
        child starting from the checkpoint's weights (`init_weights`), never
        from the incumbent's trained ones. `input_shape` and `num_outputs`
        are the problem's (only ``pretrained=True`` reads them).

        Raises:
          ActionError: not a fine-tuning action, or it does not apply (naming why).
        """
        if not self.needs_pretrained:
            raise ActionError(f"action {self.name} does not start from a pre-trained checkpoint")
        try:
            if self.object == "pretrained":
                return finetune.apply_pretrained(arch, settings, pretrained, input_shape, num_outputs, key)
            child, child_settings = self(arch, settings)
            return child, child_settings, self.init_weights(child, child_settings, pretrained, key)
        except _REFUSALS as exc:
            if isinstance(exc, ActionError):
                raise
            raise ActionError(f"action {self.name} does not apply to {arch.name or 'this architecture'}: {exc}") \
                from None


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


# ------------------------------------------------------------------ building the registry
def _arch_only(edit: Callable[[Arch], Arch]) -> Transform:
    return lambda arch, settings: (edit(arch), settings)


def _settings_only(edit: Callable[[TrainConfig], TrainConfig]) -> Transform:
    return lambda arch, settings: (arch, edit(settings))


def _from_fresh_weights(morph: Morph) -> Transform:
    """A function-preserving action's arch: the morph run on abstract weights.

    The child architecture depends only on the weights' shapes, so the morph
    runs under `jax.eval_shape`: no weights are initialised or computed, and
    only its host-side choices (which units to replicate) are evaluated.
    """
    def transform(arch: Arch, settings: TrainConfig):
        shape = arch.input_node.normalized_attrs()["shape"]
        if shape is None:
            raise InvalidArchError(arch.inputs[0], "the Input node needs its shape to apply a morphism")
        module = to_flax(arch)
        abstract = jax.eval_shape(lambda key: init_variables(module, key, shape), jax.random.PRNGKey(0))
        found = {}

        def run(variables):
            with jax.ensure_compile_time_eval():
                found["arch"], child_vars = morph(arch, variables, jax.random.PRNGKey(1))
            return child_vars

        jax.eval_shape(run, abstract)
        return found["arch"], settings
    return transform


def _optimizer(settings: TrainConfig, **changes) -> TrainConfig:
    return dataclasses.replace(settings, optimizer=dataclasses.replace(settings.optimizer, **changes))


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise ValueError(why)


def _momentum(value: float) -> Transform:
    def edit(s: TrainConfig) -> TrainConfig:
        _require(s.optimizer.name == "sgd", f"momentum applies to sgd, not {s.optimizer.name}")
        return _optimizer(s, momentum=value)
    return _settings_only(edit)


def _adamw(field: str, value: float) -> Transform:
    def edit(s: TrainConfig) -> TrainConfig:
        _require(s.optimizer.name == "adamw", f"{field} applies to adamw, not {s.optimizer.name}")
        return _optimizer(s, **{field: value})
    return _settings_only(edit)


def end_learning_rate_schedule(learning_rate: float, end: float) -> ScheduleConfig:
    """The schedule that ends training at learning rate `end` (see the module docstring)."""
    if end == 0:
        return ScheduleConfig(name="cosine")
    _require(0 < end < learning_rate, f"end learning rate {end:g} must be below the learning rate {learning_rate:g}")
    return ScheduleConfig(name="step", drop_at=END_LR_DROPS, drop_factor=(end / learning_rate) ** (1 / len(END_LR_DROPS)))


def _end_learning_rate(value: float) -> Transform:
    def edit(s: TrainConfig) -> TrainConfig:
        _require(s.optimizer.name == "adamw", f"end_learning_rate applies to adamw, not {s.optimizer.name}")
        return dataclasses.replace(s, schedule=end_learning_rate_schedule(s.optimizer.learning_rate, value))
    return _settings_only(edit)


def _from_conf(group: str, name: str, spec: type) -> Any:
    path = conf_path(group, name)
    return spec(**{k: tuple(v) if isinstance(v, list) else v for k, v in load_yaml(path).items()})


def _switch_optimizer(name: str) -> Transform:
    return _settings_only(lambda s: dataclasses.replace(s, optimizer=_from_conf("optimizer", name, OptimizerConfig)))


def _switch_schedule(name: str) -> Transform:
    return _settings_only(lambda s: dataclasses.replace(s, schedule=_from_conf("schedule", name, ScheduleConfig)))


def _conf_names(group: str) -> list[str]:
    folder = os.path.join(conf_dir(), group)
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


# ------------------------------------------------------------------ function-preserving morphs
def _widen_all(arch: Arch, variables: dict, key: jax.Array) -> tuple[Arch, dict]:
    """Every hidden conv/dense layer to twice its width (Net2WiderNet); layers that refuse are left."""
    targets = [(n.id, 2 * (n.attrs["units"] if n.op == "Dense" else n.attrs["filters"]))
               for n in arch.topological_order() if n.op in edits.WIDTH_LAYERS and n.id not in arch.outputs]
    for node_id, width in targets:
        node = arch.node(node_id)
        if (node.attrs["units"] if node.op == "Dense" else node.attrs["filters"]) >= width:
            continue  # already widened with an Add partner
        key, sub = jax.random.split(key)
        try:
            arch, variables = widen(arch, variables, node_id, width, sub)
        except MorphError:
            continue
    return arch, variables


def _deepen_last(arch: Arch, variables: dict, key: jax.Array) -> tuple[Arch, dict]:
    """An identity-initialised layer after the last hidden ReLU (or linear) activation (Net2DeeperNet)."""
    shapes = arch.shapes()
    for act in reversed(edits.hidden_activations(arch)):
        if act.attrs["fn"] not in ("relu", "linear"):
            continue
        kind = "dense" if len(shapes[act.id]) == 1 else "conv"
        try:
            tensor_activation(arch, act.id)
            return deepen(arch, variables, act.id, key, kind=kind)
        except MorphError:
            continue
    raise MorphError("depth=+1: no hidden ReLU or linear activation to insert an identity layer after")


def _add_skips(arch: Arch, variables: dict, key: jax.Array) -> tuple[Arch, dict]:
    """A zero-initialised shortcut from each hidden weight layer's input to its block's end."""
    layers = [n.id for n in arch.topological_order() if n.op in edits.WEIGHT_LAYERS and n.id not in arch.outputs]
    for layer_id in layers:
        end = edits.block_end(arch, layer_id)
        source = arch.node(layer_id).inputs[0]
        if any(r.op == "Add" for r in arch.consumers(end)):
            continue  # already a residual block
        key, sub = jax.random.split(key)
        try:
            arch, variables = add_skip(arch, variables, source, end, sub)
        except MorphError:
            continue
    return arch, variables


def _keep_weights(edit: Callable[[Arch], Arch]) -> Morph:
    """A rewrite that adds or removes only parameter-free nodes: the weights carry over as they are."""
    return lambda arch, variables, key: (edit(arch), variables)


def _fp(obj: str, value: Any, morph: Morph) -> Action:
    return Action(obj, value, _from_fresh_weights(morph), function_preserving=True, morph=morph)


# ------------------------------------------------------------------ the registry
def _build() -> dict[str, Action]:
    actions: list[Action] = []
    actions += [Action("initializer", v, _arch_only(lambda a, v=v: edits.set_initializer(a, v))) for v in INITIALIZERS]
    actions += [Action("activation", v, _arch_only(lambda a, v=v: edits.set_activation(a, v))) for v in ACTIVATIONS]
    actions += [Action("momentum", v, _momentum(v)) for v in SGD_MOMENTA]
    actions += [Action("end_learning_rate", v, _end_learning_rate(v)) for v in END_LEARNING_RATES]
    actions += [Action("weight_decay", v, _adamw("weight_decay", v)) for v in WEIGHT_DECAYS]
    actions += [Action("learning_rate", v, _settings_only(lambda s, v=v: _optimizer(s, learning_rate=v)))
                for v in LEARNING_RATES]
    actions += [Action("optimizer", n, _switch_optimizer(n)) for n in _conf_names("optimizer")]
    actions += [Action("schedule", n, _switch_schedule(n)) for n in _conf_names("schedule")]
    actions += [Action("batchnorm", True, _arch_only(edits.add_batchnorm)),
                Action("batchnorm", False, _arch_only(edits.remove_batchnorm))]
    actions += [Action("dropout", v, _arch_only(lambda a, v=v: edits.set_dropout(a, v)), function_preserving=True,
                       morph=_keep_weights(lambda a, v=v: edits.set_dropout(a, v))) for v in DROPOUT_RATES]
    actions += [Action("block_type", "plain", _arch_only(edits.to_plain)),
                _fp("block_type", "residual", _add_skips),
                Action("block_type", "separable", _arch_only(edits.to_separable)),
                Action("block_type", "depthwise", _arch_only(edits.to_inverted))]
    actions += [_fp("width", "x2", _widen_all), Action("width", "x0.5", _arch_only(edits.narrow)),
                _fp("depth", "+1", _deepen_last), Action("depth", "-1", _arch_only(edits.remove_last_block))]
    actions += [Action("pretrained", True, _settings_only(finetune.needs_checkpoint), needs_pretrained=True)]
    actions += [Action(obj, value, _settings_only(edit), needs_pretrained=True, init_weights=finetune.init_weights)
                for obj, value, edit in finetune.SETTINGS_ACTIONS]
    return {a.name: a for a in actions}


ACTIONS: dict[str, Action] = _build()


def get_action(name: str) -> Action:
    """The action called `name`; an unknown name is an ActionError with the closest known names."""
    try:
        return ACTIONS[name]
    except KeyError:
        close = difflib.get_close_matches(name, ACTIONS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ActionError(f"unknown DREAM action {name!r}{hint}; known: {sorted(ACTIONS)}") from None


# The paper's Table 7 ablation: AutoKeras's own hyperparameters (its image block's block type, batch
# normalisation, dropout, optimizer and learning rate; its network morphisms' width and depth) versus
# the space DREAM expands them to (Table 1's initialisers, activations, momentum, AdamW's end learning
# rate and weight decay, and the learning-rate schedules).
ORIGINAL_OBJECTS = ("learning_rate", "optimizer", "dropout", "batchnorm", "block_type", "width", "depth")
ACTION_SPACES = {
    "expanded": tuple(ACTIONS),
    "original": tuple(name for name, a in ACTIONS.items() if a.object in ORIGINAL_OBJECTS),
}


def action_space(name: str) -> tuple[str, ...]:
    """The action names of ``dream.action_space`` `name` (``expanded`` or ``original``), in registry order."""
    try:
        return ACTION_SPACES[name]
    except (KeyError, TypeError):
        raise ActionError(f"dream.action_space must be one of {sorted(ACTION_SPACES)}, got {name!r}") from None


def applicable_actions(arch: Arch, settings: TrainConfig) -> list[Action]:
    """Every registered action that applies to (arch, settings), in registry order."""
    return [a for a in ACTIONS.values() if a.applicable(arch, settings)]
