"""The one exception every data source raises, and the warning for doubtful data."""


class DatasetError(Exception):
    """A dataset cannot be loaded: unknown name, missing files, bad contents.

    Messages name the source, path or value at fault and say what to do.
    """


class DatasetWarning(UserWarning):
    """The data loads but its scores are limited (e.g. a class missing from a split)."""
