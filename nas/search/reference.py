"""Deep-n-Cheap's reference complexity c_0, measured once per run and kept for its resumes.

The objective f(x) = log(f_p(x) + w_c * c(x) / c_0) (`nas.search.objective`)
divides a trial's complexity by c_0 so that w_c weighs error against a
complexity of order one. Deep-n-Cheap takes c_0 from a high-complexity
configuration of the space: here its most complex architecture for the
problem (`Posed.most_complex()`), whose parameter count N_p is computed and whose
per-epoch training time t_tr is measured by a short probe training.
"""

from __future__ import annotations

import dataclasses
import json
import os

from nas.atomic_io import write_json_atomic
from nas.data import Dataset
from nas.search.objective import COMPLEXITIES
from nas.search.problem import Posed
from nas.train import TrainConfig, train

C0_FILENAME = "c0.json"
# t_tr is a median over epochs (`TrainResult.t_tr`): three give one past the first call's warm-up.
PROBE_EPOCHS = 3


class ReferenceComplexityError(ValueError):
    """A run directory's ``c0.json`` cannot be read."""


def reference_complexity(
    posed: Posed,
    data: Dataset,
    config: TrainConfig,
    *,
    w_c: float,
    complexity: str,
    c_0: float | None = None,
    cache_dir: str | None = None,
) -> float:
    """Deep-n-Cheap's c_0 for a search of a space on `data`.

    Args:
      posed: the strategy's space posed on the data's problem; its
        ``most_complex()`` architecture is the reference, and the space's
        ``batch_size`` (where it has one and sets it) the probe's batch.
      data: the dataset the search trains on.
      config: the search's training settings; the t_tr probe trains
        `PROBE_EPOCHS` epochs with them, without early stopping.
      w_c: the complexity weight; with 0, f ignores complexity and c_0 is 1.
      complexity: ``t_tr`` (seconds per epoch) or ``num_params``.
      c_0: a given reference; returned as is, nothing is measured.
      cache_dir: where ``c0.json`` keeps a measured c_0 (the run directory),
        so a resumed run normalises by the same value although t_tr would
        measure differently; None: measure every call, keep nothing.

    Returns:
      c_0 as a float.

    Raises:
      ReferenceComplexityError: ``c0.json`` exists in `cache_dir` but cannot
        be read (it names the file and how to recover).
      ValueError: `complexity` is not one of `COMPLEXITIES`.
    """
    if c_0 is not None:
        return float(c_0)
    if float(w_c) == 0.0:  # f ignores complexity: nothing to measure
        return 1.0
    if complexity not in COMPLEXITIES:
        raise ValueError(f"complexity must be one of {COMPLEXITIES}, got {complexity!r}")
    path = os.path.join(cache_dir, C0_FILENAME) if cache_dir is not None else None
    if path is not None and os.path.exists(path):
        return _read(path)
    arch = posed.most_complex()
    if complexity == "num_params":
        value = float(arch.num_params(data.input_shape))
    else:
        batch = getattr(posed.space, "batch_size", None) or config.batch_size  # None: the run's
        probe = dataclasses.replace(config, epochs=PROBE_EPOCHS, patience=None,
                                    batch_size=min(batch, len(data.x_train)))
        value = float(train(arch, data, probe).t_tr)
    if path is not None:
        # Atomic: a kill while writing must not leave a truncated c0.json that the resume cannot read.
        write_json_atomic(path, {"c_0": value, "complexity": complexity, "arch": arch.name})
    return value


def _read(path: str) -> float:
    try:
        with open(path) as f:
            return float(json.load(f)["c_0"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ReferenceComplexityError(
            f"{path} cannot be read ({exc}); it holds c_0, the reference complexity of this run: delete it to "
            "measure c_0 again, or pass search.objective.c_0") from exc
