"""Manas's model matching (ICSE'22 s4.2-4.3, eqs. 4-9): which mined models to start the search from.

Intents are `nas.mining.intent.Intent` values: a dataset's (`dataset_intent`)
and a model's, read off its architecture (`arch_intent`: the Input node's
shape, which is where the IR keeps Keras's ``input_shape``, and the units of
the last Dense layer). Then:

1. Keep the models whose input channels equal the dataset's
   (``delta_i = |i - i_k| = 0``); when no model has them, keep those at the
   smallest ``delta_i`` and say so in the result's reason.
2. Describe every kept model k by ``(delta_o, delta_s)`` with
   ``delta_o = |o - o_k|`` (outputs) and
   ``delta_s = sqrt((w - w_k)^2 + (h - h_k)^2)`` (input size), and cluster these
   points with G-means (`nas.search.manas.gmeans`), on the raw scale as the paper does.
3. The closest model ranks first by ``delta_i``, then ``delta_o``, then
   ``delta_s`` (eq. 6; ties go to the earlier model); its whole cluster is the
   match (eq. 4).
4. If that cluster has more than `threshold` models, keep only the most
   common architecture (`nas.search.manas.graph_similarity`).

Models may be `Arch` values or anything with an ``arch`` attribute (a
`MinedModel` or `ZooEntry` carrying its optimizer; one whose ``arch`` is None
is skipped); the result hands the same objects back. Imports `nas.ir`,
`nas.morph.graph` (the conv ops), `nas.mining` (intents, errors), NumPy and
SciPy; `nas.data` only for a type.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from nas.ir import Arch, InvalidArchError
from nas.mining.errors import MiningError
from nas.mining.intent import Intent
from nas.morph.graph import CONVS
from nas.search.manas.gmeans import DEFAULT_ALPHA, gmeans
from nas.search.manas.graph_similarity import most_common_architecture

TASKS = ("classification", "regression")

if TYPE_CHECKING:
    from nas.data import Dataset

# Manas's Table 2: clusters of 5-18 models were used whole, the ones of 46 and
# 69 were filtered; 20 lies between.
DEFAULT_THRESHOLD = 20


class MatchError(MiningError, ValueError):
    """No mined model can be matched to the dataset (none usable, or the data is not an image)."""


class IntentError(MiningError, ValueError):
    """A model's intent cannot be read off its architecture (no input shape, conv or Dense layer)."""


def shape_intent(input_shape: Sequence[int], classes: int, task: str = "classification") -> Intent:
    """The intent of data with per-example `input_shape` (channels last) and `classes` outputs.

    As for mined models, a rank-3 shape is (height, width, channels) and a
    sequence (L, C) has height L and no width; flat features have neither.
    """
    if task not in TASKS:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}")
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be a non-empty list of positive sizes, got {list(input_shape)}")
    height = shape[0] if len(shape) >= 2 else None
    width = shape[1] if len(shape) >= 3 else None
    return Intent(height, width, shape[-1], classes, task)


def dataset_intent(dataset: "Dataset") -> Intent:
    """The user's intent (s4.2): the dataset's input size and channels and its head width.

    `classes` is `Dataset.num_outputs`: the number of classes, or 1 for regression.
    """
    return shape_intent(dataset.input_shape, dataset.num_outputs, dataset.task)


def arch_intent(arch: Arch) -> Intent:
    """A mined model's intent (s4.2): its declared input shape and its last Dense layer's units.

    Raises:
      IntentError: the Input node declares no image shape (H, W, C), or the
        model lacks a conv or a Dense layer (Manas's incomplete models).
    """
    label = repr(arch.name) if arch.name else "architecture"
    try:
        order = arch.topological_order()
        declared = arch.input_node.attrs.get("shape")
    except InvalidArchError as exc:
        raise IntentError(f"{label}: not a valid architecture: {exc}") from None
    if declared is None:
        raise IntentError(f"{label}: the Input node {arch.inputs[0]!r} declares no shape (the mined model had no "
                          "input_shape argument), so its intended input size is unknown")
    if len(declared) != 3:
        raise IntentError(f"{label}: input shape {list(declared)} is not an image (height, width, channels)")
    if not any(n.op in CONVS for n in order):
        raise IntentError(f"{label}: has no convolutional layer (an incomplete model for Manas)")
    dense = [n for n in order if n.op == "Dense"]
    if not dense:
        raise IntentError(f"{label}: has no Dense layer, so it has no output layer to read classes from")
    height, width, channels = (int(d) for d in declared)
    return Intent(height, width, channels, int(dense[-1].attrs["units"]))


def _default_arch_of(model: Any) -> Arch | None:
    return model if isinstance(model, Arch) else model.arch


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """What matching chose and why.

    Attributes:
      selected: the models to start the search from (the cluster, filtered
        when it was larger than the threshold).
      cluster: every model of the closest model's cluster.
      selected_indices, cluster_indices: their positions in the input list.
      closest_index: position of the closest model.
      intents: each input model's intent (`arch_intent`; None where none
        could be derived).
      delta_i: the input-channel difference of the kept models (0 normally).
      num_candidates: models left after the channel filter.
      num_clusters: clusters G-means found among them.
      filtered: whether the similarity filter ran.
      reason: one readable line summarising all of the above.
      skipped: (index, why) for models whose intent could not be derived.
    """

    selected: tuple[Any, ...]
    cluster: tuple[Any, ...]
    selected_indices: tuple[int, ...]
    cluster_indices: tuple[int, ...]
    closest_index: int
    intents: tuple[Intent | None, ...]
    delta_i: int
    num_candidates: int
    num_clusters: int
    filtered: bool
    reason: str
    skipped: tuple[tuple[int, str], ...] = ()


def intent_deltas(dataset: Intent, model: Intent) -> tuple[int, int, float]:
    """Eqs. 7-9: (delta_i, delta_o, delta_s) of a model for a dataset."""
    return (abs(dataset.channels - model.channels),
            abs(dataset.classes - model.classes),
            math.hypot(dataset.width - model.width, dataset.height - model.height))


def match(
    dataset: Intent,
    models: Sequence[Any],
    *,
    threshold: int = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    arch_of: Callable[[Any], Arch | None] = _default_arch_of,
) -> MatchResult:
    """Picks the mined models closest in intent to the dataset.

    Args:
      dataset: the user's data (`dataset_intent` or `shape_intent`).
      models: mined models: `Arch` values or records with an ``arch``.
      threshold: filter the cluster to its most common architecture when it
        has more than this many models.
      alpha: significance of G-means's Anderson-Darling test.
      arch_of: how to get a model's `Arch` (default: itself or ``.arch``).
    Returns:
      A `MatchResult`. Deterministic: the same inputs give the same result.
    Raises:
      MatchError: the dataset is not an image/sequence, or no model has an intent.
    """
    if dataset.height is None or dataset.width is None or dataset.channels is None or dataset.classes is None:
        raise MatchError(f"Manas matches image data (height, width, channels) with a known number of outputs; "
                         f"got {dataset}")
    if threshold < 1:
        raise ValueError(f"threshold must be a positive number of models, got {threshold!r}")
    intents: list[Intent | None] = []
    skipped: list[tuple[int, str]] = []
    for i, model in enumerate(models):
        arch = arch_of(model)
        try:
            if arch is None:
                raise IntentError("no IR architecture (the miner could not build one)")
            intent = arch_intent(arch)
            # The architecture cannot tell classification from regression; the mined loss can.
            task = getattr(getattr(model, "intent", None), "task", "unknown")
            intents.append(dataclasses.replace(intent, task=task) if task in TASKS else intent)
        except IntentError as exc:
            intents.append(None)
            skipped.append((i, str(exc)))
    usable = [i for i, it in enumerate(intents) if it is not None]
    if not usable:
        raise MatchError(f"none of the {len(models)} models has a usable intent"
                         + (f"; first problem: {skipped[0][1]}" if skipped else ""))

    # A regression model's single output is no head for a 10-class problem (nor the reverse),
    # however close its input size: models of a known, different task are not candidates.
    same_task = [i for i in usable if intents[i].task not in TASKS or intents[i].task == dataset.task]
    other_task = len(usable) - len(same_task)
    usable = same_task or usable
    deltas = {i: intent_deltas(dataset, intents[i]) for i in usable}
    delta_i = min(d[0] for d in deltas.values())
    candidates = [i for i in usable if deltas[i][0] == delta_i]
    features = np.array([deltas[i][1:] for i in candidates], dtype=np.float64)
    clustering = gmeans(features, alpha=alpha)
    closest = min(candidates, key=lambda i: (deltas[i], i))
    label = clustering.labels[candidates.index(closest)]
    cluster = tuple(i for i, lab in zip(candidates, clustering.labels) if lab == label)

    filtered = len(cluster) > threshold
    if filtered:
        kept = most_common_architecture([arch_of(models[i]) for i in cluster], prefer=cluster.index(closest))
        selected = tuple(cluster[k] for k in kept)
        if closest not in selected:  # Manas starts from the closest model; the filter only adds its kin
            selected = (closest, *selected)
    else:
        selected = cluster

    channels = (f"{len(candidates)} of {len(usable)} models share the dataset's {dataset.channels} "
                "input channel(s)" if delta_i == 0 else
                f"no model has the dataset's {dataset.channels} input channel(s); "
                f"{len(candidates)} of {len(usable)} are closest (delta_i = {delta_i})")
    _, d_o, d_s = deltas[closest]
    reason = (f"{channels}; G-means found {clustering.k} cluster(s); the closest model #{closest} "
              f"(delta_o = {d_o}, delta_s = {d_s:.1f}) lies in a cluster of {len(cluster)}"
              + (f", filtered to its most common architecture: {len(selected)} model(s)" if filtered else ""))
    if other_task and same_task:
        reason += f"; {other_task} model(s) of another task left out"
    if skipped:
        reason += f"; {len(skipped)} model(s) skipped without an intent"
    return MatchResult(
        selected=tuple(models[i] for i in selected),
        cluster=tuple(models[i] for i in cluster),
        selected_indices=selected,
        cluster_indices=cluster,
        closest_index=closest,
        intents=tuple(intents),
        delta_i=delta_i,
        num_candidates=len(candidates),
        num_clusters=clustering.k,
        filtered=filtered,
        reason=reason,
        skipped=tuple(skipped),
    )
