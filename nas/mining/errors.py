"""Errors of the model zoo. Mining itself never raises: it reports in `MineResult`."""

from __future__ import annotations


class MiningError(Exception):
    """Base class of the errors `nas.mining` raises."""


class UnstorableModelError(MiningError, ValueError):
    """A mined model has no IR architecture, so it cannot enter the zoo (it has no canonical hash)."""


class ZooFormatError(MiningError, ValueError):
    """A file is not a model zoo this version of nas reads (wrong schema, missing table, bad JSON)."""
