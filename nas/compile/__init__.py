"""Compiles the IR to Flax modules and exports trained ones (imports `nas.ir`, and of
layer 0 the `nas` version and `nas.atomic_io`).

`to_flax(arch)` returns a module whose parameters are keyed by node id;
`export_model` writes a trained one as a portable inference program
(StableHLO, or ONNX with the ``onnx`` extra) and `load_stablehlo` runs the
former without nas.
"""

from nas.compile.flax_module import FEEDBACK, PROBES, ArchModule, init_variables, to_flax
from nas.compile.export import FORMATS, ExportSpec, export_model, load_stablehlo

__all__ = ["ArchModule", "ExportSpec", "FEEDBACK", "FORMATS", "PROBES", "export_model",
           "init_variables", "load_stablehlo", "to_flax"]
