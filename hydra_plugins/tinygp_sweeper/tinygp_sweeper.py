"""The Sweeper Hydra instantiates for `hydra/sweeper=tinygp`; it delegates to `_impl`.

Hydra imports every public module under `hydra_plugins` at start-up, so this
one imports nothing heavier than Hydra: JAX and the GP load with `_impl`, when
a sweep is actually configured.
"""

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class TinygpSweeper(Sweeper):
    """Bayesian optimisation over Hydra overrides (see `config.TinygpSweeperConf`)."""

    def __init__(self, **settings: Any) -> None:
        # Hydra instantiates with every field of `TinygpSweeperConf`; `SweepSettings` checks them.
        from hydra_plugins.tinygp_sweeper._impl import SweepSettings, TinygpSweeperImpl

        self.sweeper = TinygpSweeperImpl(SweepSettings.create(**settings))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self.sweeper.sweep(arguments)
