"""nas: a JAX research framework for neural architecture search.

Packages, in the one direction data flows:
  data -> ir -> compile -> train -> search -> store; mining produces ir.
"""

__version__ = "0.1.0"
