"""nas: a JAX research framework for neural architecture search.

Packages, in the one direction data flows:
  data -> ir -> compile -> train -> search -> store; mining produces ir;
  api (the Python API) over all of them, cli over api.

From Python (`nas.api`; nothing heavy is imported until first used)::

    import nas
    result = nas.search(x, y, max_trials=5)   # -> nas.api.SearchResult
    model = nas.train(x, y, arch="cnn")       # -> nas.api.Model
    model = nas.load("runs/search/.../best")

``nas.search`` and ``nas.train`` stay the packages of those names (``import
nas.search.engine`` works as before); calling them calls `nas.api.search`
and `nas.api.train`. Importing this module imports only the standard
library, so the store and its exporters start without JAX.
"""

import sys
import types

__version__ = "0.1.0"

# Names of the Python API offered here, resolved on first use (PEP 562).
_API_NAMES = ("load", "Model", "SearchResult")
# Packages that are also the API function of the same name.
_CALLABLE_PACKAGES = ("search", "train")


class _CallablePackage(types.ModuleType):
    """A package that, called, runs the Python API function of its name (`nas.api.search`, `nas.api.train`)."""

    def __call__(self, *args, **kwargs):
        import nas.api

        return getattr(nas.api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    """This package's module type: it makes `_CALLABLE_PACKAGES` callable as the import system binds them."""

    def __setattr__(self, name, value):
        if name in _CALLABLE_PACKAGES and type(value) is types.ModuleType:
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


def __getattr__(name):
    if name in _CALLABLE_PACKAGES:
        import importlib

        return importlib.import_module(f"nas.{name}")  # binding it here makes it callable (_Package)
    if name in _API_NAMES:
        import nas.api

        return getattr(nas.api, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API_NAMES) | set(_CALLABLE_PACKAGES))


sys.modules[__name__].__class__ = _Package
