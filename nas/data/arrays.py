"""NumPy arrays a user holds in memory -> a ``Dataset``, as ``load_dataset`` makes one from a file.

What `nas.search(x, y)` and `nas.train(x, y)` build their data with. The
arrays pass the same checks as every source (`nas.data.validate`), are split
with the same seeded, stratified draws (`nas.data.splits`) and normalised
the same way (`nas.data.normalise`), so a model trained on arrays and one
trained on the same arrays saved as an ``.npz`` see identical inputs.

Conventions (those of ``.npz`` files, `nas.data.npz`):

* inputs are (N, features...), (N, H, W, C) images, or (N, H, W) greyscale
  images and (N,) scalars, which get a trailing channel axis;
* uint8 inputs are pixels and become [0, 1] (`normalise.as_float32`);
* the task is inferred from the targets when not given: float targets are a
  regression, integer, bool and string targets a classification (strings
  become class indices in sorted order; the names come back as
  ``class_names``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from nas.data.dataset import Dataset, Task
from nas.data.errors import DatasetError
from nas.data.normalise import as_float32, channel_stats, standardise
from nas.data.npz import _with_channel_axis  # one convention for arrays in memory and in .npz files
from nas.data.raw import RawSplits
from nas.data.splits import stratified_sample
from nas.data.validate import MAX_CLASSES, check_split_classes, validate_raw

TASKS = ("classification", "regression")
# Regression splits are stratified by target quantile: this many bins keeps
# every split's target range alike without making bins too small to split.
REGRESSION_STRATA = 10


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayData:
    """A dataset made from arrays, and what the arrays' labels were called.

    Attributes:
      dataset: the split, normalised data.
      class_names: the original label of each class index when the labels
        were not integers (strings), else None.
    """

    dataset: Dataset
    class_names: tuple[str, ...] | None = None


def infer_task(y: np.ndarray) -> Task:
    """``regression`` for float targets, ``classification`` for integer, bool and string labels."""
    return "regression" if np.asarray(y).dtype.kind == "f" else "classification"


def from_arrays(
    x: Any,
    y: Any,
    *,
    task: str | None = None,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    name: str = "arrays",
    max_classes: int = MAX_CLASSES,
) -> ArrayData:
    """Validates, splits and normalises in-memory arrays.

    A validation (test) split not given is carved from (x, y): a stratified
    ``round(val_fraction * N)`` (``round(test_fraction * N)``) examples drawn
    with ``seed``, as `nas.data.load_dataset` does for a source without one.

    Args:
      x, y: the training pool: inputs (see the module's conventions) and one
        target per input.
      task: ``classification`` or ``regression``; None infers it from `y`
        (`infer_task`).
      x_val, y_val, x_test, y_test: splits of your own, each pair given
        together, or None.
      val_fraction, test_fraction: shares of the pool carved out for the
        splits not given.
      seed: fixes the carve-out.
      name: the dataset's name in metadata and messages.
      max_classes: largest class count accepted (`validate.MAX_CLASSES`).

    Returns:
      `ArrayData`: the `Dataset` and the class names, if the labels had any.

    Raises:
      DatasetError: naming the array (``x``, ``y_val``...) and the problem:
        mismatched lengths or shapes, non-numeric or non-finite inputs,
        fewer than two classes, an unknown task, a split given without its pair.
    """
    where = f"arrays passed to {name}"
    given = {"train": (x, y), "val": (x_val, y_val), "test": (x_test, y_test)}
    for split, (xs, ys) in given.items():
        if (xs is None) != (ys is None):
            missing = f"{'y' if ys is None else 'x'}_{split}"
            raise DatasetError(f"{where}: {missing} is missing; give x_{split} and y_{split} together")
    pairs = {split: (np.asarray(xs), np.asarray(ys)) for split, (xs, ys) in given.items() if xs is not None}
    task = task if task is not None else infer_task(pairs["train"][1])
    if task not in TASKS:
        raise DatasetError(f"{where}: task={task!r}; use 'classification', 'regression' or None (inferred)")
    regression = task == "regression"
    targets = {split: _targets(ys, split, where, regression) for split, (_, ys) in pairs.items()}
    class_names = None
    if regression:
        labels = _strata(targets)
    elif any(t.dtype.kind in "OUS" for t in targets.values()):
        class_names, labels = _encode_names(targets, where)
    else:
        labels = targets
    raw = validate_raw(
        RawSplits(_with_channel_axis(pairs["train"][0]), labels["train"], len(class_names) if class_names else None,
                  *_pair_or_none(pairs, labels, "val"), *_pair_or_none(pairs, labels, "test"),
                  source=where, keys={"x_train": "x", "y_train": "y"}),
        where, regression=regression, max_classes=max_classes)
    if regression:  # the checked labels were strata; the targets are the values themselves
        raw = dataclasses.replace(raw, num_classes=len(np.unique(np.concatenate(list(targets.values())))))
    rng = np.random.default_rng(seed)
    splits = _split(raw, targets if regression else None, val_fraction, test_fraction, rng, where)
    if not regression:
        check_split_classes(where, {s: splits[s][2] for s in splits}, raw.num_classes)
    xs = {s: as_float32(v[0]) for s, v in splits.items()}
    mean, std = channel_stats(xs["train"])
    dtype = np.float32 if regression else np.int32
    dataset = Dataset(
        name=name, task=task, input_shape=tuple(int(d) for d in xs["train"].shape[1:]), num_classes=raw.num_classes,
        x_train=standardise(xs["train"], mean, std), y_train=splits["train"][1].astype(dtype),
        x_val=standardise(xs["val"], mean, std), y_val=splits["val"][1].astype(dtype),
        x_test=standardise(xs["test"], mean, std), y_test=splits["test"][1].astype(dtype),
        mean=mean, std=std, seed=seed)
    return ArrayData(dataset, class_names)


def _targets(y: np.ndarray, split: str, where: str, regression: bool) -> np.ndarray:
    name = "y" if split == "train" else f"y_{split}"
    if y.ndim == 2 and y.shape[1] == 1:  # a column vector, as scikit-learn users often hold targets
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"{where}: {name} has shape {y.shape}; give one target per example, shape (N,)")
    if regression:
        if y.dtype.kind not in "biuf":
            raise DatasetError(f"{where}: {name} has dtype {y.dtype}; regression targets must be numbers")
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise DatasetError(f"{where}: {name} holds {int((~np.isfinite(y)).sum())} NaN/inf target(s); "
                               "regression targets must be finite")
    return y


def _encode_names(targets: dict[str, np.ndarray], where: str) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """String labels -> class indices in sorted order of the names (over every split, so indices agree)."""
    try:
        names = np.unique(np.concatenate([t.astype(str) for t in targets.values()]))
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: the labels cannot be read as class names ({exc})") from exc
    index = {n: i for i, n in enumerate(names.tolist())}
    return tuple(index), {s: np.array([index[v] for v in t.astype(str).tolist()], np.int64) for s, t in targets.items()}


def _strata(targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Quantile bins of the regression targets: labels to stratify splits by (and to validate with)."""
    pool = targets["train"]
    edges = np.unique(np.quantile(pool, np.linspace(0, 1, REGRESSION_STRATA + 1)[1:-1]))
    return {s: np.searchsorted(edges, t, side="right").astype(np.int64) for s, t in targets.items()}


def _pair_or_none(pairs, labels, split) -> tuple[np.ndarray | None, np.ndarray | None]:
    if split not in pairs:
        return None, None
    return _with_channel_axis(pairs[split][0]), labels[split]


def _split(raw: RawSplits, targets: dict[str, np.ndarray] | None, val_fraction: float, test_fraction: float,
           rng: np.random.Generator, where: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """split -> (x, target, label) for train, val and test; missing splits carved from the pool by stratum.

    `targets` holds regression values (None: the labels are the targets).
    """
    for option, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise DatasetError(f"{where}: {option}={value} must be in [0, 1)")
    y_of = (lambda split, labels: targets[split]) if targets is not None else (lambda split, labels: labels)
    labels = raw.y_train
    pool = np.arange(len(labels))
    out = {}
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        given_x = getattr(raw, f"x_{split}")
        if given_x is not None:
            out[split] = (given_x, y_of(split, getattr(raw, f"y_{split}")), getattr(raw, f"y_{split}"))
            continue
        chosen, rest = stratified_sample(labels[pool], round(fraction * len(labels)), rng)
        picked = pool[chosen]
        out[split] = (raw.x_train[picked], y_of("train", labels)[picked], labels[picked])
        pool = pool[rest]
    out["train"] = (raw.x_train[pool], y_of("train", labels)[pool], labels[pool])
    for split in ("train", "val", "test"):
        if len(out[split][0]) == 0:
            raise DatasetError(f"{where}: the {split} split is empty ({len(labels)} examples, "
                               f"val_fraction={val_fraction}, test_fraction={test_fraction}); give more examples "
                               f"or x_{split}/y_{split}")
    return {s: out[s] for s in ("train", "val", "test")}
