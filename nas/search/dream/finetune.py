"""DREAM's fine-tuning actions (TOSEM'24 s4.1, Table 1 rows 6-10) and AutoKeras's ``pretrained=True``.

ImageNet weights are not available offline, so "pre-trained" here means a
model this framework trained on another dataset: any model directory a run
writes (nas-train's ``model/``, a search's ``best/`` or ``trials/<i>/``),
read by `load_pretrained`.

`transfer` re-poses the pre-trained architecture on the problem at hand: its
Input shape becomes the data's, its head Dense (the last Dense before the
output, through Activation, Dropout or Identity nodes) gets the problem's
output count and fresh weights, and every other node whose id, op and weight
shapes match the checkpoint gets the checkpoint's weights (and BatchNorm
statistics). Those nodes are the *body* the trainer's
`nas.train.FineTuneConfig` freezes and thaws. It refuses, naming why, a
model that cannot fit: another input rank or channel count, or a layer whose
weights depend on the image size (a Dense after Flatten, trained on other
image sizes). A model with global pooling transfers to any image size.

The actions (registered in `nas.search.dream.actions.ACTIONS`):

- ``pretrained=True``: the child is the pre-trained model transferred
  (`apply_pretrained`), fine-tuned in one step with nothing frozen;
- ``two_step=True/False``, ``three_step=True/False`` (rows 6-7): fine-tune
  in two or three steps, or back to one;
- ``step_epochs=0.1 ... 0.5`` (row 8): the fraction of the epochs each
  earlier step takes (two- and three-step runs only);
- ``step_lr=1/0.1/0.01`` (row 9): the learning-rate factor per later step
  (two- and three-step runs only);
- ``freeze=all/no/bn`` (row 10): what of the body stays frozen in the last
  step.

The settings actions apply only to a transferred model (its
``settings.finetune.body`` is non-empty), and their child starts from the
pre-trained weights again (`init_weights`), not from the incumbent's trained
ones: each child is one fine-tuning run of the checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import numpy as np

from nas.checkpoint import CheckpointError, load_model
from nas.compile import init_variables, to_flax
from nas.ir import Arch, InvalidArchError
from nas.train import FineTuneConfig, TrainConfig

# Nodes the head's output may pass through to the architecture's output.
HEAD_PASSTHROUGH = ("Activation", "Dropout", "Identity")
STEP_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)
STEP_LRS = (1.0, 0.1, 0.01)
FREEZES = ("all", "no", "bn")


class TransferError(ValueError):
    """A pre-trained checkpoint that cannot be read or cannot fit this problem (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A pre-trained model read from disk.

    Attributes:
      arch: its architecture (Input shape set).
      variables: ``params`` (and ``batch_stats``) as host arrays.
      path: the absolute model directory it came from.
      metadata: its model.json (task, dataset, provenance...).
    """

    arch: Arch
    variables: dict = dataclasses.field(repr=False, compare=False)
    path: str = ""
    metadata: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.arch.input_node.attrs["shape"])

    @property
    def num_outputs(self) -> int:
        return int(self.arch.node(head_of(self.arch)).attrs["units"])


def load_pretrained(path: str) -> Pretrained:
    """The model directory at `path` (a nas-train ``model/``, a search's ``best/`` or ``trials/<i>/``).

    Raises:
      TransferError (a ValueError): the directory is missing, damaged or not a
        model; the message names the path and the part at fault.
    """
    directory = os.path.abspath(os.path.expanduser(str(path)))
    try:
        arch, variables, metadata = load_model(directory)
    except CheckpointError as exc:
        raise TransferError(f"pre-trained checkpoint {path}: {exc}") from None
    except (OSError, TypeError) as exc:
        raise TransferError(f"pre-trained checkpoint {path} cannot be read: {exc}") from None
    if arch.input_node.attrs.get("shape") is None:
        shape = metadata.get("input_shape")
        if not shape:
            raise TransferError(f"pre-trained checkpoint {path}: neither its arch.json nor its model.json "
                                "records the input shape it was trained on")
        arch = arch.replace_nodes([n.replace(attrs=n.attrs.replace(shape=list(shape))) if n.id == arch.inputs[0]
                                   else n for n in arch.nodes])
    head_of(arch, where=f"pre-trained checkpoint {path}")
    return Pretrained(arch, jax.device_get(variables), directory, metadata)


def head_of(arch: Arch, where: str = "") -> str:
    """The id of the head: the Dense that computes the output (through Activation, Dropout, Identity nodes).

    Raises:
      TransferError: the output is not computed by a Dense layer.
    """
    node = arch.node(arch.output_id)
    while node.op in HEAD_PASSTHROUGH:
        node = arch.node(node.inputs[0])
    if node.op != "Dense":
        raise TransferError(f"{where or arch.name or 'the architecture'}: its output comes from {node.op} "
                            f"{node.id!r}, not a Dense head that a new problem's outputs could replace")
    return node.id


def repose(arch: Arch, input_shape: Sequence[int], num_outputs: int) -> Arch:
    """`arch` with its Input shape replaced and its head Dense given `num_outputs` units (weights aside)."""
    head = head_of(arch)
    nodes = []
    for n in arch.nodes:
        if n.id == arch.inputs[0]:
            n = n.replace(attrs=n.attrs.replace(shape=[int(d) for d in input_shape]))
        elif n.id == head:
            n = n.replace(attrs=n.attrs.replace(units=int(num_outputs)))
        nodes.append(n)
    return arch.replace_nodes(nodes)


def _shapes(tree: Any) -> Any:
    return jax.tree.map(lambda a: tuple(np.shape(a)), tree)


def _size_dependent(arch: Arch, node_id: str) -> str | None:
    """The Flatten/Reshape upstream of `node_id` (what makes its weights depend on the input size), if any."""
    stack, seen = list(arch.node(node_id).inputs), set()
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        node = arch.node(i)
        if node.op in ("Flatten", "Reshape"):
            return f"{node.op} {node.id!r}"
        stack.extend(node.inputs)
    return None


def _check_inputs(pretrained: Pretrained, input_shape: tuple[int, ...]) -> None:
    source = pretrained.input_shape
    if len(source) != len(input_shape):
        raise TransferError(f"pre-trained checkpoint {pretrained.path} takes inputs of shape {list(source)}, "
                            f"this problem's are {list(input_shape)}: another rank cannot be transferred")
    if len(source) > 1 and source[-1] != input_shape[-1]:
        raise TransferError(f"pre-trained checkpoint {pretrained.path} takes {source[-1]} input channel(s), "
                            f"this problem has {input_shape[-1]}: different input channels cannot be transferred")


def _mismatch(pretrained: Pretrained, arch: Arch, node_id: str, wanted: Any, found: Any,
              input_shape: tuple[int, ...]) -> TransferError:
    source = pretrained.arch
    if node_id not in source:
        why = "the pre-trained model has no such node"
    elif source.node(node_id).op != arch.node(node_id).op:
        why = f"it is a {source.node(node_id).op} in the pre-trained model"
    else:
        why = f"its weights are {found} pre-trained but {wanted} here"
        through = _size_dependent(arch, node_id)
        if through and tuple(pretrained.input_shape) != tuple(input_shape):
            why += (f": its input size depends on the image size through {through} "
                    f"({list(pretrained.input_shape)} pre-trained, {list(input_shape)} here); only a model with "
                    "global pooling before its dense layers transfers to another image size")
    return TransferError(f"pre-trained checkpoint {pretrained.path} cannot be transferred to this problem: "
                         f"{arch.node(node_id).op} {node_id!r}: {why}")


def transfer(pretrained: Pretrained, arch: Arch | None, input_shape: Sequence[int], num_outputs: int,
             key: jax.Array) -> tuple[Arch, dict, tuple[str, ...]]:
    """The pre-trained model on this problem: (architecture, variables, body).

    Args:
      pretrained: the checkpoint (`load_pretrained`).
      arch: None: the pre-trained architecture re-posed (`repose`) on
        `input_shape` and `num_outputs`, and every node but the head must
        take the checkpoint's weights. Else an architecture of this problem
        (an incumbent transferred earlier, maybe edited by later actions):
        whatever matches the checkpoint (node id, op, every weight's and
        statistic's shape) is copied into it, the rest keeps fresh weights.
      input_shape, num_outputs: the problem's per-example input shape and
        output count (classes; 1 for regression).
      key: initialises what is not copied (the head, new layers).
    Returns:
      The architecture, its ``params`` (and ``batch_stats``) as host arrays,
      and the body: the ids of the nodes whose weights came from the
      checkpoint, in topological order (`FineTuneConfig.body`). The head is
      never part of it, even where its shape matches.
    Raises:
      TransferError: it cannot fit (different input rank or channels, a
        layer whose weights depend on the image size, no body at all, a
        given arch whose head is not `num_outputs` wide), naming why.
    """
    input_shape = tuple(int(d) for d in input_shape)
    strict = arch is None
    if strict:
        _check_inputs(pretrained, input_shape)
        arch = repose(pretrained.arch, input_shape, num_outputs)
    head = head_of(arch)
    units = arch.node(head).attrs["units"]
    if units != num_outputs:
        raise TransferError(f"{arch.name or 'the architecture'}: its head {head!r} has {units} units, "
                            f"this problem has {num_outputs} outputs")
    try:
        module = to_flax(arch, input_shape=input_shape)
    except InvalidArchError as exc:
        raise TransferError(f"pre-trained checkpoint {pretrained.path} does not fit inputs of shape "
                            f"{list(input_shape)}: {exc}") from None
    fresh = jax.device_get(init_variables(module, key, input_shape))
    params, stats = dict(fresh["params"]), dict(fresh.get("batch_stats", {}))
    source_params = pretrained.variables["params"]
    source_stats = pretrained.variables.get("batch_stats", {})
    body = []
    for node in arch.topological_order():
        if node.id not in params or node.id == head:
            continue
        wanted = (_shapes(params[node.id]), _shapes(stats.get(node.id)))
        found = (_shapes(source_params.get(node.id)), _shapes(source_stats.get(node.id)))
        same_op = node.id in pretrained.arch and pretrained.arch.node(node.id).op == node.op
        if same_op and wanted == found:
            params[node.id] = jax.tree.map(lambda new, old: np.asarray(old, np.asarray(new).dtype),
                                           params[node.id], source_params[node.id])
            if node.id in stats:
                stats[node.id] = jax.tree.map(lambda new, old: np.asarray(old, np.asarray(new).dtype),
                                              stats[node.id], source_stats[node.id])
            body.append(node.id)
        elif strict:
            raise _mismatch(pretrained, arch, node.id, wanted[0], found[0], input_shape)
    if not body:
        raise TransferError(f"pre-trained checkpoint {pretrained.path}: no layer of {arch.name or 'the model'} "
                            "besides its head takes pre-trained weights, so there is nothing to fine-tune")
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    return arch, variables, tuple(body)


def _input_shape(arch: Arch) -> tuple[int, ...]:
    shape = arch.input_node.attrs.get("shape")
    if shape is None:
        raise TransferError(f"{arch.name or 'the architecture'}: its Input node has no shape")
    return tuple(shape)


# ------------------------------------------------------------------ the actions' parts
def apply_pretrained(arch: Arch, settings: TrainConfig, pretrained: Pretrained, input_shape: Sequence[int],
                     num_outputs: int, key: jax.Array) -> tuple[Arch, TrainConfig, dict]:
    """``pretrained=True``: the checkpoint's model transferred to this problem, fine-tuned in one step.

    The incumbent's architecture is replaced by the pre-trained one (as
    AutoKeras's ``pretrained=True`` swaps in its block's pre-trained
    network); its training settings are kept, with ``finetune`` set to the
    transferred body, one step, nothing frozen.

    Raises:
      ValueError: it is already in effect (the incumbent is a transferred
        model), or the checkpoint cannot fit (`TransferError`).
    """
    if settings.finetune.enabled:
        raise ValueError("already in effect: the model is already transferred from a pre-trained checkpoint")
    del arch  # replaced by the pre-trained architecture
    child, variables, body = transfer(pretrained, None, input_shape, num_outputs, key)
    return child, dataclasses.replace(settings, finetune=FineTuneConfig(body=body, steps=1, freeze="no")), variables


def init_weights(arch: Arch, settings: TrainConfig, pretrained: Pretrained, key: jax.Array) -> dict:
    """A fine-tuning child's starting weights: the checkpoint's, copied into `arch` (head and new layers fresh).

    Raises:
      TransferError: `arch` is not the transferred model `settings.finetune.body` describes
        (what the checkpoint fills differs from that body: call `retransfer` after an architecture edit).
    """
    shape = _input_shape(arch)
    _, variables, body = transfer(pretrained, arch, shape, arch.node(head_of(arch)).attrs["units"], key)
    if body != settings.finetune.body:
        raise TransferError(f"the checkpoint fills nodes {list(body)} of {arch.name or 'the architecture'}, but "
                            f"train.finetune.body is {list(settings.finetune.body)}: re-transfer after editing "
                            "the architecture (nas.search.dream.finetune.retransfer)")
    return variables


def retransfer(arch: Arch, settings: TrainConfig, pretrained: Pretrained, key: jax.Array) \
        -> tuple[TrainConfig, dict]:
    """For a child of a transferred model made by an architecture action: its body and starting weights.

    Copies what still matches the checkpoint into `arch` and sets
    ``settings.finetune.body`` to those nodes (no fine-tuning when none match).
    """
    shape = _input_shape(arch)
    try:
        _, variables, body = transfer(pretrained, arch, shape, arch.node(head_of(arch)).attrs["units"], key)
    except TransferError:
        module = to_flax(arch, input_shape=shape)
        return dataclasses.replace(settings, finetune=FineTuneConfig()), \
            jax.device_get(init_variables(module, key, shape))
    return dataclasses.replace(settings, finetune=dataclasses.replace(settings.finetune, body=body)), variables


def _require_transferred(settings: TrainConfig, name: str) -> None:
    if not settings.finetune.enabled:
        raise ValueError(f"{name} applies to a model transferred from a pre-trained checkpoint "
                         "(pretrained=True first)")


def _multi_step(settings: TrainConfig, name: str) -> None:
    _require_transferred(settings, name)
    if settings.finetune.steps == 1:
        raise ValueError(f"{name} applies to two- or three-step fine-tuning (two_step=True or three_step=True first)")


def _with(settings: TrainConfig, **changes: Any) -> TrainConfig:
    return dataclasses.replace(settings, finetune=dataclasses.replace(settings.finetune, **changes))


def set_steps(steps: int, on: bool):
    """``two_step=``/``three_step=``: True switches to `steps` steps; False goes back to one from `steps`."""
    name = f"{'two' if steps == 2 else 'three'}_step={on}"

    def edit(settings: TrainConfig) -> TrainConfig:
        _require_transferred(settings, name)
        if on:
            return _with(settings, steps=steps)
        if settings.finetune.steps != steps:
            raise ValueError(f"{name} changes nothing: the model fine-tunes in {settings.finetune.steps} step(s)")
        return _with(settings, steps=1)
    return edit


def _multi_step_setting(field: str, action: str):
    """The edit factory of a setting that only a multi-step run has (``step_epochs=``, ``step_lr=``)."""
    def make(value: float):
        def edit(settings: TrainConfig) -> TrainConfig:
            _multi_step(settings, f"{action}={value:g}")
            return _with(settings, **{field: value})
        return edit
    return make


set_step_fraction = _multi_step_setting("step_fraction", "step_epochs")
set_step_lr = _multi_step_setting("step_lr", "step_lr")


def set_freeze(value: str):
    def edit(settings: TrainConfig) -> TrainConfig:
        _require_transferred(settings, f"freeze={value}")
        return _with(settings, freeze=value)
    return edit


def needs_checkpoint(settings: TrainConfig) -> TrainConfig:
    """``pretrained=True``'s plain transform: it cannot apply without the checkpoint (see `apply_pretrained`)."""
    if settings.finetune.enabled:
        raise ValueError("already in effect: the model is already transferred from a pre-trained checkpoint")
    raise ValueError("pretrained=True needs the pre-trained checkpoint (dream.pretrained): "
                     "call Action.from_pretrained")


# (object, value, settings edit) of the 15 settings actions, in Table 1's order.
SETTINGS_ACTIONS: tuple[tuple[str, Any, Any], ...] = (
    *((f"{n}_step", on, set_steps(s, on)) for n, s in (("two", 2), ("three", 3)) for on in (True, False)),
    *(("step_epochs", v, set_step_fraction(v)) for v in STEP_FRACTIONS),
    *(("step_lr", v, set_step_lr(v)) for v in STEP_LRS),
    *(("freeze", v, set_freeze(v)) for v in FREEZES),
)

__all__ = ["FREEZES", "HEAD_PASSTHROUGH", "Pretrained", "SETTINGS_ACTIONS", "STEP_FRACTIONS", "STEP_LRS",
           "TransferError", "apply_pretrained", "head_of", "init_weights", "load_pretrained", "repose",
           "retransfer", "transfer"]
