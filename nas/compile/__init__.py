"""Compiles the IR to Flax modules (imports `nas.ir` only).

`to_flax(arch)` returns a module whose parameters are keyed by node id.
"""

from nas.compile.flax_module import FEEDBACK, ArchModule, init_variables, to_flax

__all__ = ["ArchModule", "FEEDBACK", "init_variables", "to_flax"]
