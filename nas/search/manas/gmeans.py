"""G-means (Hamerly & Elkan, NIPS 2003): k-means that learns k with an Anderson-Darling test.

Manas (ICSE'22 s4.3, eq. 5) clusters mined models with it. Start from one
centre (the mean); run k-means; for every cluster, split its centre in two
along the principal component, refine the pair with 2-means on the cluster's
points, project the points onto the line joining the pair and test the
projection for normality with the Anderson-Darling statistic; keep the pair
where normality is rejected, the old centre where it is not; repeat until no
centre is added.

The test is G-means's: the finite-sample adjusted statistic
``A*^2 = A^2 (1 + 4/n - 25/n^2)`` (Stephens 1974) against its critical value at
significance `alpha`, by default G-means's ``alpha = 0.0001`` (critical value
1.8692, as the G-means paper gives it). The other levels are Stephens's
15% ... 1% values for the same statistic. (SciPy >= 1.17 switched
``scipy.stats.anderson`` to D'Agostino & Stephens's 1986 modification
``1 + 0.75/n + 2.25/n^2`` and its table, which reject normal samples closer to
the nominal rate; Stephens's 1974 values are slightly conservative. We keep
G-means's pairing so that k is learnt as the paper learnt it; the raw
statistic A^2 is the same in both.)

Everything is deterministic: the splits are initialised from the principal
component (G-means s2.1), not at random, and k-means starts from the given
centres. Plain NumPy in float64: these are tens to thousands of 2-d points.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import log_ndtr

# Critical values of G-means's adjusted A*^2 for a normal with estimated mean
# and variance: Stephens (1974) for 15%..1%, and G-means's value for 0.01%.
CRITICAL_VALUES: dict[float, float] = {
    0.15: 0.576, 0.10: 0.656, 0.05: 0.787, 0.025: 0.918, 0.01: 1.092, 0.0001: 1.8692,
}
DEFAULT_ALPHA = 0.0001
# A*^2's correction 1 + 4/n - 25/n^2 is 0.44 at n = 4 and negative below: the
# adjusted test means little on a handful of points, so smaller clusters stay whole.
MIN_TESTABLE = 8


def anderson_darling(x: np.ndarray) -> float:
    """The Anderson-Darling statistic A^2 of `x` against a normal fitted to it.

    The mean and the (n-1)-denominator standard deviation are estimated from
    the sample, as ``scipy.stats.anderson(x, "norm")`` does, whose statistic
    this equals.

    Args:
      x: a 1-d sample of at least two values that are not all equal.
    Returns:
      A^2 = -n - (1/n) sum_i (2i - 1) [ln F(z_(i)) + ln(1 - F(z_(n+1-i)))].
    """
    x = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = x.size
    if n < 2:
        raise ValueError(f"the Anderson-Darling test needs at least 2 values, got {n}")
    std = x.std(ddof=1)
    if not std > 0:
        raise ValueError("the Anderson-Darling test needs values that are not all equal")
    z = (x - x.mean()) / std
    i = np.arange(1, n + 1)
    # ln(1 - F(z)) = ln F(-z); log_ndtr keeps both tails accurate.
    s = np.sum((2 * i - 1) * (log_ndtr(z) + log_ndtr(-z[::-1])))
    return float(-n - s / n)


def adjusted_anderson_darling(x: np.ndarray) -> float:
    """Stephens's (1974) finite-sample adjusted A*^2 = A^2 (1 + 4/n - 25/n^2), as G-means uses it."""
    n = np.asarray(x).size
    return anderson_darling(x) * (1.0 + 4.0 / n - 25.0 / n**2)


def critical_value(alpha: float) -> float:
    """The adjusted A*^2 above which normality is rejected at significance `alpha`.

    Raises:
      ValueError: `alpha` is not one of the tabulated levels (`CRITICAL_VALUES`).
    """
    for level, value in CRITICAL_VALUES.items():
        if math.isclose(alpha, level, rel_tol=1e-9):
            return value
    raise ValueError(f"no critical value for alpha={alpha!r}; the tabulated levels are {sorted(CRITICAL_VALUES)}")


def looks_gaussian(x: np.ndarray, alpha: float = DEFAULT_ALPHA) -> bool:
    """Whether the 1-d sample `x` passes the adjusted Anderson-Darling test at level `alpha`."""
    return adjusted_anderson_darling(x) <= critical_value(alpha)


def kmeans(x: np.ndarray, centers: np.ndarray, *, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from the given centres (deterministic: ties go to the lower index).

    A centre that ends up with no points is dropped, so fewer centres may
    come back than went in.

    Args:
      x: (n, d) points.
      centers: (k, d) initial centres.
      max_iter: iteration cap (Lloyd's converges long before it on these data).
    Returns:
      (centres (k', d), labels (n,) in 0..k'-1).
    """
    x = np.asarray(x, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64).copy()
    labels = None
    for _ in range(max_iter):
        distances = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
        new_labels = distances.argmin(1)
        used = np.unique(new_labels)
        if used.size < len(centers):  # drop empty centres, renumber
            centers = centers[used]
            new_labels = np.searchsorted(used, new_labels)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        centers = np.stack([x[labels == j].mean(0) for j in range(len(centers))])
    return centers, labels


def _split(points: np.ndarray, center: np.ndarray, alpha: float, min_size: int) -> np.ndarray | None:
    """The two child centres if the cluster fails the normality test, else None (G-means s2)."""
    if len(points) < max(min_size, MIN_TESTABLE):
        return None
    cov = np.atleast_2d(np.cov(points, rowvar=False))
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    lam, direction = eigenvalues[-1], eigenvectors[:, -1]
    if not lam > 1e-12 * max(1.0, float(np.abs(points).max()) ** 2):
        return None  # all points (numerically) equal: nothing to split
    offset = direction * math.sqrt(2.0 * lam / math.pi)
    children, _ = kmeans(points, np.stack([center + offset, center - offset]))
    if len(children) < 2:
        return None
    v = children[0] - children[1]
    projected = points @ v / (v @ v)
    if not projected.std(ddof=1) > 0 or looks_gaussian(projected, alpha):
        return None
    return children


@dataclasses.dataclass(frozen=True)
class GMeansResult:
    """The clustering: centres (k, d), each point's label, and the rounds G-means took."""

    centers: np.ndarray
    labels: np.ndarray
    rounds: int

    @property
    def k(self) -> int:
        return len(self.centers)


def gmeans(
    x: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_size: int = MIN_TESTABLE,
    max_k: int | None = None,
    max_rounds: int = 64,
) -> GMeansResult:
    """Clusters `x` with G-means, learning k.

    Args:
      x: (n, d) points (a 1-d array is read as n points of dimension 1).
      alpha: significance of the Anderson-Darling test; a cluster is split
        when normality of its projection is rejected at this level.
      min_size: clusters with fewer points are never split (at least
        `MIN_TESTABLE`, below which the adjusted statistic is meaningless).
      max_k: stop before the number of centres would exceed this.
      max_rounds: cap on test-and-split rounds.
    Returns:
      A `GMeansResult`; `k` is 1 for an empty or degenerate sample.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"gmeans clusters a non-empty (n, d) array, got shape {x.shape}")
    critical_value(alpha)  # reject a bad alpha before any work
    centers = x.mean(0, keepdims=True)
    rounds = 0
    while True:
        centers, labels = kmeans(x, centers)
        if rounds >= max_rounds:
            break
        rounds += 1
        proposed: list[np.ndarray] = []
        added = False
        for j, center in enumerate(centers):
            children = _split(x[labels == j], center, alpha, min_size)
            if children is None:
                proposed.append(center[None])
            else:
                proposed.append(children)
                added = True
        candidate = np.concatenate(proposed)
        if not added or (max_k is not None and len(candidate) > max_k):
            break
        centers = candidate
    return GMeansResult(centers, labels, rounds)
