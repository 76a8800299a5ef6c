"""Bayesian optimisation for Deep-n-Cheap's search stages: ramp kernel, GP, EI, Sobol, init/ask/tell.

Owns the BO machinery of Deep-n-Cheap (section 2.2): a space of
hyperparameters as data and its fixed-length encoding (`space`), the
ramp-distance kernel as a tinygp kernel (`ramp`), a padded GP with
marginal-likelihood hyperparameters (`gp`), expected improvement
(`acquisition`), the Sobol initial design (`sobol`) and the GP + EI strategy
(`optimizer`). It imports jax, tinygp, equinox, numpy and scipy, and nothing
from the rest of `nas`: a search engine maps its own configurations to and from
a `Space`.
"""

from nas.search.bo.acquisition import expected_improvement
from nas.search.bo.gp import Hyperparameters, fit_hyperparameters, hyperparameter_grid, log_likelihood, posterior
from nas.search.bo.optimizer import BayesOptState, ask, best, from_dict, init, recover, tell, to_dict
from nas.search.bo.ramp import RampKernel, ramp_distance, ramp_kernel, squared_exponential
from nas.search.bo.sobol import sobol_unit
from nas.search.bo.space import (NO_LAYER, Hyperparameter, Space, SpaceError, box, canonical, decode,
                                 dnc_cnn_channels, dnc_mlp_hidden, dnc_training, encode, from_unit)

__all__ = [
    "NO_LAYER", "BayesOptState", "Hyperparameter", "Hyperparameters", "RampKernel", "Space", "SpaceError",
    "ask", "best", "box", "canonical", "decode", "dnc_cnn_channels", "dnc_mlp_hidden", "dnc_training",
    "encode", "expected_improvement", "fit_hyperparameters", "from_dict", "from_unit", "hyperparameter_grid",
    "init", "log_likelihood", "posterior", "ramp_distance", "ramp_kernel", "recover", "sobol_unit",
    "squared_exponential", "tell", "to_dict",
]
