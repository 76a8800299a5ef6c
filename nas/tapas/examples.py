"""LDE experiments -> TAP training examples.

A training example is one architecture with the accuracies known along its
layer sequence (`nas.tapas.encoding.layer_sequence`): `targets[i]` is the
peak validation accuracy of the sub-network that ends at layer i.

Incrementally trained networks (experiments/lde_init.py) arrive as one LDE row
per prefix sub-network, sharing a `lineage`: prefix k is the full network's
first k layers plus a fixed head (`head_pool`/`head_flatten`, `head`), with the
body node ids of the full network. The largest prefix gives the architecture;
prefix k's peak becomes the target at the step of its last body node in that
architecture's layer sequence, and the full network's own peak the target at
the last step (its head). A row without lineage is one example with its peak
at the last step.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Iterable, Sequence

from nas.ir import Arch
from nas.ir.errors import IRError
from nas.tapas.encoding import layer_sequence

if TYPE_CHECKING:
    from nas.lde.database import LDE, DatasetRecord, ExperimentRecord

log = logging.getLogger(__name__)

HEAD_IDS = frozenset({"head_pool", "head_flatten", "head"})   # the fixed head of a prefix sub-network
DONE = "done"


@dataclasses.dataclass(frozen=True)
class TrainingExample:
    """One architecture and what is known of its accuracy.

    Attributes:
      arch: the architecture (for a lineage: its largest prefix, i.e. the full network).
      input_shape: per-example input shape of the dataset.
      num_classes: the dataset's classes (the accuracy before any layer is 1/num_classes).
      dcn: the dataset's DCN.
      targets: {step index in layer_sequence(arch): peak validation accuracy in [0, 1]}.
      dataset: the dataset's fingerprint.
    """

    arch: Arch
    input_shape: tuple[int, ...]
    num_classes: int
    dcn: float
    targets: dict[int, float]
    dataset: str


def neighbours(lde: "LDE", dcn: float, tau: float = 0.05, *,
               probe: str | None = None) -> list[tuple[str, str, float]]:
    """Datasets of the LDE whose DCN lies within `tau` of `dcn`: (name, fingerprint, dcn), nearest first.

    Empty when no dataset is that close: TAP has nothing to learn from, and a
    caller (the prefilter) should say so and step aside. `probe`: read DCNs
    measured by that probe only (`nas.tapas.dcn.probe_key`; None: the latest).
    """
    found = []
    for record in lde.datasets():
        value = lde.dcn(record.fingerprint, probe=probe)
        if value is not None and abs(value - dcn) <= tau:
            found.append((record.name, record.fingerprint, float(value)))
    return sorted(found, key=lambda t: (abs(t[2] - dcn), t[0], t[1]))


def _matches(record: "DatasetRecord", keys: Iterable[str]) -> bool:
    return any(k == record.fingerprint or k == record.name for k in keys)


def _selected_datasets(lde: "LDE", dcn: float | None, tau: float, exclude: Sequence[str],
                       include: Sequence[str] | None, probe: str | None) -> dict[str, tuple["DatasetRecord", float]]:
    chosen: dict[str, tuple[DatasetRecord, float]] = {}
    without_dcn = []
    for record in lde.datasets():
        if _matches(record, exclude) or (include is not None and not _matches(record, include)):
            continue
        value = lde.dcn(record.fingerprint, probe=probe)
        if value is None:
            without_dcn.append(record.name)
            continue
        if dcn is not None and abs(value - dcn) > tau:
            continue
        if record.num_classes is None:  # regression: TAP predicts classification accuracy
            continue
        chosen[record.fingerprint] = (record, float(value))
    if without_dcn:
        log.info("TAP examples: %d dataset(s) without a DCN skipped (%s); run nas-lde dcn on them",
                 len(without_dcn), ", ".join(sorted(without_dcn)))
    return chosen


def _usable(peak: float | None) -> bool:
    return peak is not None and math.isfinite(peak) and 0.0 <= peak <= 1.0


def _arch(record: "ExperimentRecord") -> Arch | None:
    try:
        return Arch.from_json(record.arch)
    except IRError as exc:
        log.warning("TAP examples: experiment %s has an unreadable architecture (%s); skipped", record.key, exc)
        return None


def lineage_targets(full: Arch, prefixes: Sequence[tuple[Arch, float]], full_peak: float | None,
                    input_shape: Sequence[int] | None = None) -> tuple[dict[int, float], int]:
    """Targets along `full`'s layer sequence from its prefix sub-networks' peaks.

    Args:
      full: the full network (largest prefix) of a lineage.
      prefixes: (prefix arch, peak) of the other sub-networks.
      full_peak: the full network's own peak (None: not known); it goes at the last step.
      input_shape: unused by the mapping (ids decide); accepted for symmetry.

    Returns:
      (targets, unmatched): {step: peak}, and how many prefixes named a body
      node the full network lacks (skipped).
    """
    del input_shape
    sequence = layer_sequence(full)
    step_of = {n.id: i for i, n in enumerate(sequence)}
    targets: dict[int, float] = {}
    unmatched = 0
    for arch, peak in prefixes:
        body = [n.id for n in layer_sequence(arch) if n.id not in HEAD_IDS]
        if not body or any(i not in step_of for i in body):
            unmatched += 1
            continue
        # The prefix's body is closed under inputs, so its last layer in the full network's
        # order is the step after which the full network has computed all of it.
        targets[max(step_of[i] for i in body)] = float(peak)
    if full_peak is not None and sequence:
        targets[len(sequence) - 1] = float(full_peak)
    return targets, unmatched


def examples_from_lde(lde: "LDE", *, dcn: float | None = None, tau: float = 0.05,
                      exclude: Sequence[str] = (), include: Sequence[str] | None = None,
                      probe: str | None = None) -> list[TrainingExample]:
    """TAP's training examples from the LDE's experiments on datasets near `dcn`.

    Args:
      lde: an open `nas.lde.LDE`.
      dcn: the new dataset's DCN; None: every dataset that has a DCN.
      tau: the neighbourhood, |DCN - dcn| <= tau (the paper's 0.05).
      exclude: dataset fingerprints or names left out (leave-one-dataset-out).
      include: when given, only these datasets (fingerprints or names).
      probe: read DCNs measured by that probe only (`nas.tapas.dcn.probe_key`; None: the latest).

    Returns:
      The examples, in a deterministic order (dataset fingerprint, then lineage or key).
      Experiments that did not finish (status other than done) or have no
      peak give no target; a lineage without any target gives no example.
    """
    datasets = _selected_datasets(lde, dcn, tau, exclude, include, probe)
    if not datasets:
        return []
    records = lde.experiments(datasets=sorted(datasets))
    groups: dict[tuple[str, str], list[ExperimentRecord]] = collections.defaultdict(list)
    for r in records:
        if r.dataset in datasets:
            groups[(r.dataset, f"lineage:{r.lineage}" if r.lineage else f"key:{r.key}")].append(r)
    examples: list[TrainingExample] = []
    skipped = unmatched = 0
    for (fingerprint, _), members in sorted(groups.items(), key=lambda item: item[0]):
        record, value = datasets[fingerprint]
        members.sort(key=lambda r: (r.prefix or 0, r.key))
        full_record = members[-1]
        full = _arch(full_record)
        if full is None:
            skipped += 1
            continue
        full_peak = full_record.peak_val if full_record.status == DONE and _usable(full_record.peak_val) else None
        prefixes = []
        for r in members[:-1]:
            if r.status == DONE and _usable(r.peak_val):
                arch = _arch(r)
                if arch is not None:
                    prefixes.append((arch, r.peak_val))
        try:
            targets, missed = lineage_targets(full, prefixes, full_peak)
            full.layer_table(tuple(record.input_shape))  # shapes must infer for the dataset
        except IRError as exc:
            log.warning("TAP examples: experiment %s does not fit dataset %s (%s); skipped",
                        full_record.key, record.name, exc)
            skipped += 1
            continue
        unmatched += missed
        if not targets:
            skipped += 1
            continue
        examples.append(TrainingExample(
            arch=full, input_shape=tuple(int(d) for d in record.input_shape),
            num_classes=int(record.num_classes), dcn=value, targets=dict(sorted(targets.items())),
            dataset=fingerprint,
        ))
    log.info("TAP examples: %d from %d experiment(s) on %d dataset(s)%s%s", len(examples), len(records),
             len(datasets), f"; {skipped} network(s) without a usable target skipped" if skipped else "",
             f"; {unmatched} prefix(es) not matching their full network skipped" if unmatched else "")
    return examples
