"""Stratified, seeded selection of examples: the only place splits are decided."""

from __future__ import annotations

import numpy as np


def class_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """How many examples of each class a stratified sample of ``size`` takes.

    Quotas are proportional to ``counts`` and sum to exactly ``size``; the
    examples left over by rounding down go to the classes with the largest
    remainders (ties to the lower class index). Integer arithmetic keeps the
    result independent of floating-point rounding.

    Args:
      counts: examples per class, all positive.
      size: sample size, between 0 and ``counts.sum()``.

    Returns:
      int64 array of per-class quotas, each at most its class's count.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    quotas = counts * size // total
    remainders = counts * size % total
    shortfall = size - int(quotas.sum())
    quotas[np.argsort(-remainders, kind="stable")[:shortfall]] += 1
    return quotas


def stratified_sample(
    labels: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``size`` examples with each class in its original proportion.

    Args:
      labels: integer class label per example.
      size: number of examples to draw, between 0 and ``len(labels)``.
      rng: the generator that decides which examples; consumed in place.

    Returns:
      ``(chosen, rest)``: sorted index arrays that partition ``range(len(labels))``,
      so the split keeps the source's order within each part.
    """
    labels = np.asarray(labels)
    if not 0 <= size <= len(labels):
        raise ValueError(f"sample size {size} is outside 0..{len(labels)}")
    if len(labels) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = class_quotas(counts, size)
    chosen = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quotas)]
    )
    chosen = np.sort(chosen)
    rest = np.setdiff1d(np.arange(len(labels)), chosen, assume_unique=True)
    return chosen, rest
