"""A Hydra sweeper that proposes trials by GP + expected-improvement Bayesian optimisation.

Select it with `hydra/sweeper=tinygp`. The plugin module (`tinygp_sweeper`) and
its config (`config`) import only Hydra; the search itself lives in `_impl`,
which Hydra's start-up scan skips, and reuses `nas.search.bo` (space, GP, EI,
Sobol, init/ask/tell) rather than a GP of its own.
"""

__version__ = "0.1.0"
