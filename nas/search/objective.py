"""Deep-n-Cheap's search objective and the Pareto front of (error, complexity).

f(x) = log(f_p(x) + w_c * c(x) / c_0), where f_p is the best validation
error (1 - accuracy; validation MSE for regression) and c is the per-epoch
training time t_tr or the parameter count N_p, normalised by c_0, the
complexity of a high-complexity configuration of the space.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

COMPLEXITIES = ("t_tr", "num_params")


@dataclasses.dataclass(frozen=True)
class Objective:
    """Deep-n-Cheap's f.

    Attributes:
      w_c: weight of the complexity term (0: accuracy only).
      complexity: ``t_tr`` (seconds per epoch) or ``num_params``.
      c_0: the reference complexity (must be > 0 when w_c > 0).
    """

    w_c: float = 0.0
    complexity: str = "t_tr"
    c_0: float = 1.0

    def __post_init__(self):
        if self.complexity not in COMPLEXITIES:
            raise ValueError(f"complexity must be one of {COMPLEXITIES}, got {self.complexity!r}")
        if self.w_c < 0 or not self.c_0 > 0:
            raise ValueError(f"need w_c >= 0 and c_0 > 0, got w_c={self.w_c}, c_0={self.c_0}")

    def __call__(self, error: float, t_tr: float, num_params: int) -> float:
        """f for one trial; inf when the error is not finite (a diverged trial)."""
        if not math.isfinite(error):
            return math.inf
        c = t_tr if self.complexity == "t_tr" else float(num_params)
        value = max(error, 0.0) + self.w_c * c / self.c_0
        # A perfect, free model: log(0). Clamp so comparisons stay finite.
        return math.log(max(value, 1e-12))


def error_of(score: float, task: str) -> float:
    """Validation error from a score (accuracy, or minus MSE for regression)."""
    if not math.isfinite(score):
        return math.inf
    return 1.0 - score if task == "classification" else -score


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (both coordinates minimised).

    A point is dominated when another is no worse in both coordinates and
    better in one; of identical points the first is kept. Non-finite points
    are never on the front.
    """
    front = []
    for i, (e, c) in enumerate(points):
        if not (math.isfinite(e) and math.isfinite(c)):
            continue
        dominated = any(
            (e2 <= e and c2 <= c and (e2 < e or c2 < c)) or ((e2, c2) == (e, c) and j < i)
            for j, (e2, c2) in enumerate(points) if j != i and math.isfinite(e2) and math.isfinite(c2))
        if not dominated:
            front.append(i)
    return front
