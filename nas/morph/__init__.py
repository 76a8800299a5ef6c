"""Function-preserving morphisms (Net2Net as extended by NeuNetS) and Manas's repairs.

Every morphism is a pure function of (arch, variables, ..., key) returning
a new (arch, variables); variables are full Flax variables
``{"params", "batch_stats"}`` or bare params, and come back in the same form.
Imports `nas.ir` only (weights are keyed by node id, as `nas.compile` lays
them out).
"""

from nas.morph.errors import MorphError
from nas.morph.insert import add_skip, branch, deepen, tensor_activation, widen_kernel
from nas.morph.mutations import MUTATIONS, random_morph
from nas.morph.repairs import add_dropout, flatten_to_gap, insert_batchnorm, relu_activations
from nas.morph.widen import widen

__all__ = [
    "MUTATIONS", "MorphError", "add_dropout", "add_skip", "branch", "deepen", "flatten_to_gap",
    "insert_batchnorm", "random_morph", "relu_activations", "tensor_activation", "widen", "widen_kernel",
]
