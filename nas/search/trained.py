"""A trained proposal a strategy keeps to build on, with its weights.

The greedy morphism search and Manas keep their incumbent as one, NCEvolve
its population members: strategies that derive children from trained
weights (`Strategy.needs_weights`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from nas.ir import Arch


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model: its trial, architecture, objective (lower is better) and weights as host arrays."""

    trial: int
    arch: Arch
    objective: float
    variables: Any = dataclasses.field(compare=False, repr=False)

    @classmethod
    def of(cls, result: Any, arch: Arch, strategy: str) -> "Trained":
        """The record of a told `TrialResult` of `arch`, its weights moved to the host.

        Raises:
          ValueError: the result carries no weights (`strategy` names who
            needed them in the message).
        """
        if result.variables is None:
            raise ValueError(f"trial {result.trial}: {strategy} needs the trained weights (Strategy.needs_weights)")
        return cls(result.trial, arch, float(result.objective), jax.device_get(result.variables))


__all__ = ["Trained"]
