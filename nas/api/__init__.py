"""The framework from Python: search, train, load, predict, export.

    result = nas.search(x, y, max_trials=5)      # numpy arrays, or data="digits"
    result.best.predict(x_new)                    # raw inputs; preprocessing is in the model
    result.best.export("model.stablehlo")
    model = nas.load("runs/search/.../best")

The top of the layering: it may import every other package, and the CLI
(`nas.cli`) is a thin layer over it. Configs are composed from the same
conf/ the CLI reads (`config.compose`), so both get the same defaults.
"""

from nas.api.config import compose, config_dir
from nas.api.datasource import DataSpec, EvalDataError
from nas.api.model import Model, NotAClassifierError, load
from nas.api.search import SearchResult, search, search_configured
from nas.api.train import TrainingDivergedError, train, train_configured

__all__ = ["DataSpec", "EvalDataError", "Model", "NotAClassifierError", "SearchResult", "TrainingDivergedError",
           "compose", "config_dir", "load", "search", "search_configured", "train", "train_configured"]
