"""Errors of the model zoo. Mining itself never raises: it reports in `MineResult`."""

from __future__ import annotations


class MiningError(Exception):
    """Base class of the errors `nas.mining` raises."""


class UnstorableModelError(MiningError, ValueError):
    """A mined model has no IR architecture, so it cannot enter the zoo (it has no canonical hash)."""


class ZooFormatError(MiningError, ValueError):
    """A file is not a model zoo this version of nas reads (wrong schema, missing table, bad JSON)."""


class NotRegularFileError(MiningError):
    """A path names a FIFO, device, socket or directory (or a link to one), which is never read.

    Reading a FIFO blocks until something writes to it, and a device such as
    ``/dev/zero`` never ends, so only regular files are opened.

    Attributes:
      path: the path.
      kind: what it is (``"a FIFO (named pipe)"``, ``"a character device"``...).
    """

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path} is {kind}, not a regular file; it is not read")
        self.path = path
        self.kind = kind


class FileTooLargeError(MiningError):
    """A file is over the size the miner reads.

    Attributes:
      path: the file.
      limit: the most bytes read.
    """

    def __init__(self, path: str, limit: int, size: int | None = None):
        said = f" ({size} bytes)" if size is not None else ""
        super().__init__(f"{path} is over {limit} bytes{said}; the miner reads files of at most {limit}")
        self.path = path
        self.limit = limit


class OutputPathError(MiningError):
    """An output file of ``nas-mine`` (``--db``, ``--jsonl``, ``--meta``) cannot be written there."""
