"""The one exception every data source raises."""


class DatasetError(Exception):
    """A dataset cannot be loaded: unknown name, missing files, bad contents.

    Messages name the source, path or value at fault and say what to do.
    """
