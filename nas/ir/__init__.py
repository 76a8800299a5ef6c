"""The architecture IR (Manas's abstract NN): immutable graphs, their JSON form,
validation, shape inference, counts and canonical hashes.

Imports nothing from the rest of `nas`; `compile`, `morph`, `search` and
`mining` all speak this IR.
"""

from nas.ir.arch import SCHEMA_VERSION, Arch, Attrs, Node
from nas.ir.builders import BUILTINS, builtin, cnn, mlp
from nas.ir.errors import (
    BadAttributeError,
    CycleError,
    DanglingEdgeError,
    InvalidArchError,
    IRError,
    IRFormatError,
    ShapeError,
    UnknownNodeError,
    UnknownOpError,
)
from nas.ir.ops import ACTIVATIONS, INITIALIZERS, OPS, OpSpec

__all__ = [
    "ACTIVATIONS", "Arch", "Attrs", "BUILTINS", "BadAttributeError", "CycleError",
    "DanglingEdgeError", "INITIALIZERS", "IRError", "IRFormatError", "InvalidArchError",
    "Node", "OPS", "OpSpec", "SCHEMA_VERSION", "ShapeError", "UnknownNodeError",
    "UnknownOpError", "builtin", "cnn", "mlp",
]
