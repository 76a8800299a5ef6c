"""The checks every source's arrays pass before anything is split, normalised or trained on.

Bad data must fail here, naming the file and the array, instead of surfacing
later as a NaN loss, a "diverged" trial or a perfect score on a one-class
problem, all of which look like the model's fault. Two stages, both called by
``load_dataset`` for every source:

* ``validate_raw``: the arrays as the source read them (indices in messages
  are indices into the stored arrays, so a user can find the bad value);
* ``check_split_classes``: the final train/val/test labels (only after
  splitting and subsetting is it known which classes each split holds).

Every check is a vectorised NumPy reduction over each array, one pass or
two, with no copy of the inputs: cheap next to the float32 conversion that
loading does anyway.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from nas.data.errors import DatasetError, DatasetWarning
from nas.data.raw import RawSplits

# Labels are class indices, so the network's head has max(label) + 1 outputs.
# 100k is above any real classification label set nas targets (ImageNet-21k
# has ~22k classes) and keeps a corrupt or continuous label column from
# building a 10^9-wide Dense layer; load_dataset(max_classes=...) raises it.
MAX_CLASSES = 100_000

SPLITS = ("train", "val", "test")
# Input dtypes nas can turn into float32 features: bool, signed/unsigned int, float.
_NUMERIC_KINDS = frozenset("biuf")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Classes listed in one message at most; the rest are counted.
_LIST_AT_MOST = 10


def validate_raw(raw: RawSplits, source: str, *, regression: bool = False, max_classes: int = MAX_CLASSES) -> RawSplits:
    """Checks a source's arrays and settles its labels and class count.

    Inputs must be real numbers (bool, int or float; not strings, objects or
    complex), at least (examples, features), non-empty, finite and within
    float32's range (they are trained in float32), with one per-example
    shape across splits. Labels must be one per input, integer-valued,
    non-negative, below ``max_classes`` and below the class count the source
    declares; together they must hold at least two classes (regression
    targets are class indices too, so the same checks keep them finite).

    Args:
      raw: the source's arrays.
      source: what was read, for messages (``npz file /data/x.npz``); the
        source's own ``raw.source`` takes precedence.
      regression: the targets will be regressed on (messages say "target").
      max_classes: largest class count accepted.

    Returns:
      ``raw`` with int64 labels and ``num_classes`` filled in (one more than
      the largest label when the source left it None).

    Raises:
      DatasetError: naming the source, the array and the problem.
    """
    where = raw.source or source
    present = [split for split in SPLITS if any(a is not None for a in _pair(raw, split))]
    if "train" not in present:
        raise DatasetError(f"{where}: there is no training data ({_name(raw, 'x_train')}, {_name(raw, 'y_train')})")
    for split in present:
        x, y = _pair(raw, split)
        for key, array in ((f"x_{split}", x), (f"y_{split}", y)):
            if array is None:
                other = f"y_{split}" if key.startswith("x") else f"x_{split}"
                raise DatasetError(f"{where}: {_name(raw, other)} has no matching {_name(raw, key)}")
        _check_inputs(x, where, _name(raw, f"x_{split}"))
    shapes = {_name(raw, f"x_{split}"): _pair(raw, split)[0].shape[1:] for split in present}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise DatasetError(f"{where}: the splits' per-example shapes differ ({described}); every split must match")
    labels = {split: _check_labels(raw, split, where, max_classes) for split in present}
    top = max(int(y.max()) for y in labels.values())
    num_classes = top + 1 if raw.num_classes is None else int(raw.num_classes)
    if num_classes > max_classes:
        raise DatasetError(
            f"{where}: declares {num_classes} classes, more than max_classes={max_classes}; "
            "pass a larger max_classes if that is really meant"
        )
    if top >= num_classes:
        split = next(s for s, y in labels.items() if y.max() == top)
        raise DatasetError(
            f"{where}: {_name(raw, f'y_{split}')} holds label {top}, outside the class indices "
            f"0..{num_classes - 1} the source declares"
        )
    counts = sum(np.bincount(y, minlength=num_classes) for y in labels.values())
    classes = np.flatnonzero(counts)
    if len(classes) < 2:
        arrays = ", ".join(_name(raw, f"y_{s}") for s in present)
        what = f"every target is {classes[0]}" if regression else f"only class {classes[0]} appears"
        raise DatasetError(
            f"{where}: {what} in {arrays}; a model needs at least two "
            f"{'target values' if regression else 'classes'} to learn anything. "
            "Check that this is the intended file and label array"
        )
    fields = {f"y_{split}": y for split, y in labels.items()}
    return dataclasses.replace(raw, num_classes=num_classes, **fields)


def check_split_classes(source: str, labels: dict[str, np.ndarray], num_classes: int) -> None:
    """Checks which classes the final classification splits hold.

    A training split of one class is an error (nothing to learn; e.g. a
    ``max_train`` too small). A class present in some splits but missing
    from others is only a warning: small or imbalanced data and stratified
    ``max_train`` subsets legitimately leave a rare class out of a split, and
    the run still means something; the warning says what its scores cannot
    show (a class missing from train caps accuracy; one missing from val or
    test goes unmeasured).

    Args:
      source: dataset name or path, for messages.
      labels: ``{"train": y_train, "val": y_val, "test": y_test}``, int labels.
      num_classes: the class count.

    Raises:
      DatasetError: the training split holds fewer than two classes.
    """
    present = {split: np.flatnonzero(np.bincount(y, minlength=num_classes)) for split, y in labels.items()}
    train = present["train"]
    if len(train) < 2:
        raise DatasetError(
            f"{source}: the train split ({len(labels['train'])} examples) holds only class "
            f"{_listed(train)}; a classifier needs at least two classes to learn anything "
            "(a small max_train or an unbalanced source can do this; keep more training examples)"
        )
    for split in ("val", "test"):
        unseen = np.setdiff1d(present[split], train)
        if len(unseen):
            share = np.isin(labels[split], unseen).mean()
            warnings.warn(
                f"{source}: class(es) {_listed(unseen)} appear in {split} but not in train, so the model "
                f"cannot learn them; {split} accuracy is at most {1 - share:.3f}",
                DatasetWarning, stacklevel=3,
            )
        unmeasured = np.setdiff1d(train, present[split])
        if len(unmeasured):
            warnings.warn(
                f"{source}: class(es) {_listed(unmeasured)} appear in train but not in {split}; "
                f"{split} scores say nothing about them",
                DatasetWarning, stacklevel=3,
            )


def _pair(raw: RawSplits, split: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    return getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")


def _name(raw: RawSplits, key: str) -> str:
    """The array as the source names it (an npz pool stores x_train as ``x``)."""
    return (raw.keys or {}).get(key, key)


def _listed(classes: np.ndarray) -> str:
    shown = ", ".join(str(int(c)) for c in classes[:_LIST_AT_MOST])
    return shown + (f" and {len(classes) - _LIST_AT_MOST} more" if len(classes) > _LIST_AT_MOST else "")


def _at(array: np.ndarray, name: str, bad: np.ndarray) -> str:
    """``name[i, j]`` of the first True in ``bad`` (same shape as ``array``)."""
    index = np.unravel_index(int(np.argmax(bad)), array.shape)
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


def _check_inputs(x, where: str, name: str) -> None:
    if not isinstance(x, np.ndarray):
        raise DatasetError(f"{where}: {name} is a {type(x).__name__}, not a NumPy array")
    if x.dtype.kind not in _NUMERIC_KINDS:
        raise DatasetError(
            f"{where}: {name} has dtype {x.dtype}; inputs must be real numbers (bool, int or float), "
            "not strings, Python objects or complex numbers. Convert it to a numeric array first"
        )
    if x.ndim < 2:
        raise DatasetError(
            f"{where}: {name} has shape {x.shape}; inputs need at least two axes, (examples, features...)"
        )
    if len(x) == 0:
        raise DatasetError(f"{where}: {name} is empty (shape {x.shape}); every split needs examples")
    if x[0].size == 0:
        raise DatasetError(f"{where}: {name} has shape {x.shape}, so each example holds no values")
    if x.dtype.kind != "f":
        return  # bool and int inputs are finite and fit float32 (as a rounded value)
    # min/max propagate NaN and show +-inf: two reductions, no temporary array.
    lo, hi = float(x.min()), float(x.max())  # Python floats: comparing float16 to 3.4e38 would overflow
    if -_FLOAT32_MAX <= lo and hi <= _FLOAT32_MAX:  # False for NaN and +-inf too
        return
    bad = ~np.isfinite(x)  # only an array known to be bad pays for this mask
    if bad.any():
        raise DatasetError(
            f"{where}: {name} holds {int(bad.sum())} NaN/inf value(s) (first at {_at(x, name, bad)}); "
            "inputs must be finite. Fix or drop those examples (missing values need imputing before nas)"
        )
    big = np.abs(x) > _FLOAT32_MAX
    raise DatasetError(
        f"{where}: {name} holds {int(big.sum())} value(s) beyond float32's range of +-{_FLOAT32_MAX:.3g} "
        f"(first at {_at(x, name, big)}), which become inf in training; rescale the inputs"
    )


def _check_labels(raw: RawSplits, split: str, where: str, max_classes: int) -> np.ndarray:
    """One split's labels as int64 class indices, or a DatasetError naming the bad one."""
    x, y = _pair(raw, split)
    name = _name(raw, f"y_{split}")
    if not isinstance(y, np.ndarray):
        raise DatasetError(f"{where}: {name} is a {type(y).__name__}, not a NumPy array")
    if y.shape != (len(x),):
        raise DatasetError(
            f"{where}: {name} has shape {y.shape}, expected ({len(x)},): one label per example "
            f"of {_name(raw, f'x_{split}')}"
        )
    if y.dtype.kind not in _NUMERIC_KINDS:
        raise DatasetError(f"{where}: {name} has dtype {y.dtype}; labels must be integer class indices 0..K-1")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            raise DatasetError(
                f"{where}: {name} holds {int(bad.sum())} NaN/inf label(s) (first at {_at(y, name, bad)}); "
                "labels must be integer class indices 0..K-1"
            )
        fractional = y != np.floor(y)
        if fractional.any():
            first = int(np.argmax(fractional))
            raise DatasetError(
                f"{where}: {name}[{first}] = {y[first]} is not an integer; labels must be integer class "
                f"indices 0..K-1 ({int(fractional.sum())} label(s) are fractional: is this a continuous "
                "regression target? nas regresses on class indices only)"
            )
    if y.min() < 0:
        first = int(np.argmax(y < 0))
        raise DatasetError(
            f"{where}: {name}[{first}] = {y[first]} is negative; labels must be class indices 0..K-1"
        )
    if y.max() >= max_classes:
        first = int(np.argmax(y >= max_classes))
        raise DatasetError(
            f"{where}: {name}[{first}] = {y[first]} would need a head of {int(y[first]) + 1:,} classes, "
            f"more than max_classes={max_classes:,}. Labels this large usually mean a regression target "
            "or a corrupt array; class labels must be indices 0..K-1 (pass a larger max_classes if "
            "there really are that many classes)"
        )
    return y.astype(np.int64, copy=False)
