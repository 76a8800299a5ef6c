"""The tinygp sweeper's structured config, registered as `hydra/sweeper=tinygp`."""

from dataclasses import dataclass
from enum import Enum
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore


class Direction(Enum):
    minimize = 1
    maximize = 2


@dataclass
class TinygpSweeperConf:
    """Settings of a sweep; `hydra.sweeper.<name>=...` overrides any of them.

    Attributes:
      n_trials: trials in the whole sweep, counting those of earlier
        invocations that this one resumes.
      batch_size: trials proposed together and handed to the launcher at once
        (batch EI by the kriging believer), so a parallel launcher runs them
        side by side.
      metric: the key of the job's return value to optimise when the job
        returns a dict (nas-train returns e.g. `val_accuracy`); a job that
        returns a number is used as is.
      direction: minimize or maximize the metric.
      target: stop once a trial reaches this value (in the metric's direction).
      seed: seeds the Sobol design and the candidate draws.
      kernel: GP kernel on the unit-scaled space: matern52 or rbf (ramp, the
        Deep-n-Cheap kernel, takes no choice() dimensions).
      n_initial: Sobol trials before the GP takes over; null picks
        2 * (dimensions + 1), at least 4.
      n_candidates: random candidates scored by expected improvement per proposal.
      xi: expected-improvement margin, in standard deviations of the observations.
      storage: file, relative to hydra.sweep.dir, where the trials are kept;
        re-running a multirun with the same hydra.sweep.dir resumes from it.
      params: the search space as override strings, e.g.
        {optimizer.lr: "tag(log, interval(1e-4, 1e-1))"}; command-line
        overrides of the same key take precedence.
    """

    _target_: str = "hydra_plugins.tinygp_sweeper.tinygp_sweeper.TinygpSweeper"
    n_trials: int = 20
    batch_size: int = 1
    metric: Optional[str] = None
    direction: Direction = Direction.minimize
    target: Optional[float] = None
    seed: int = 0
    kernel: str = "matern52"
    n_initial: Optional[int] = None
    n_candidates: int = 2048
    xi: float = 1e-4
    storage: str = "tinygp_sweeper.json"
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="tinygp", node=TinygpSweeperConf,
                             provider="tinygp_sweeper")
