"""Mining a corpus, counted as Manas's funnel (section 4.1).

The paper's counts were files -> Keras programs -> models -> complete models
-> models whose layers are all supported -> unique models; each stage here
is a subset of the one before it. Unique models are the distinct
`Arch.structural_hash()` values among the complete, supported models that
have an IR architecture; they are the zoo's entries.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Mapping

from nas.mining.corpus import SourceFile, read_regular_file
from nas.mining.errors import FileTooLargeError, NotRegularFileError
from nas.mining.model import NOT_TEXT, TOO_LARGE, MineResult
from nas.mining.sibling_modules import module_reader
from nas.mining.source import MAX_SOURCE_CHARS, mine_source
from nas.mining.zoo import ZooEntry, zoo_entry

# UTF-8 takes at most four bytes a character, so a larger file is over the miner's limit.
_MAX_BYTES = 4 * MAX_SOURCE_CHARS


@dataclasses.dataclass(frozen=True)
class Funnel:
    """The counts of each stage."""

    files: int = 0
    keras_files: int = 0
    models: int = 0
    complete: int = 0
    supported: int = 0
    unique: int = 0

    def rows(self) -> list[tuple[str, int]]:
        return [("files", self.files), ("keras files", self.keras_files), ("models", self.models),
                ("complete models", self.complete), ("supported-layer models", self.supported),
                ("unique models", self.unique)]

    def format(self) -> str:
        """The funnel as an aligned two-column table."""
        width = max(len(name) for name, _ in self.rows())
        digits = max(len(str(count)) for _, count in self.rows())
        return "\n".join(f"{name:<{width}}  {count:>{digits}}" for name, count in self.rows())


@dataclasses.dataclass(frozen=True)
class CorpusReport:
    """The outcome of mining a corpus.

    Attributes:
      funnel: the stage counts.
      entries: the unique models, first occurrence first.
      statuses: how many files ended in each `MineResult.status`.
    """

    funnel: Funnel
    entries: tuple[ZooEntry, ...]
    statuses: Mapping[str, int]


def mine_file(source: SourceFile) -> MineResult:
    """Reads and mines one file; provenance gets the file's repository, commit and relative path.

    Args:
      source: the file.
    Returns:
      Its `MineResult`; names it imports from modules of its own repository
      (``from config import NUM_CLASSES``) are read from them
      (`nas.mining.sibling_modules`). A FIFO, device, socket or directory (or
      a link to one) is not opened: its status is ``not_text`` and its reason
      says what it is.
      A file over the byte limit is ``too_large`` and is never read whole.
    """
    try:
        data = read_regular_file(source.path, _MAX_BYTES)
    except NotRegularFileError as exc:
        return MineResult(reason=f"{exc.kind}, not a regular file; not read", status=NOT_TEXT, path=source.relpath)
    except FileTooLargeError:
        return MineResult(reason=f"over {_MAX_BYTES} bytes", status=TOO_LARGE, path=source.relpath)
    except OSError as exc:
        return MineResult(reason=f"cannot read: {exc}", status=NOT_TEXT, path=source.relpath)
    result = mine_source(data, source.relpath, module_reader(source.path, source.relpath))
    models = tuple(dataclasses.replace(m, provenance=dataclasses.replace(
        m.provenance, repo=source.repo, commit=source.commit)) for m in result.models)
    return dataclasses.replace(result, models=models)


def mine_corpus(files: Iterable[SourceFile]) -> CorpusReport:
    """Mines every file and counts the funnel.

    Args:
      files: the corpus (see `nas.mining.corpus.python_files`).
    Returns:
      The `CorpusReport`.
    """
    counts = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    entries: dict[str, ZooEntry] = {}
    for source in files:
        result = mine_file(source)
        counts["files"] += 1
        statuses[result.status] += 1
        counts["keras_files"] += result.imports_keras
        for model in result.models:
            counts["models"] += 1
            if not model.complete:
                continue
            counts["complete"] += 1
            if not model.supported:
                continue
            counts["supported"] += 1
            if model.arch is not None:
                entry = zoo_entry(model)
                entries.setdefault(entry.hash, entry)
    funnel = Funnel(counts["files"], counts["keras_files"], counts["models"], counts["complete"],
                    counts["supported"], len(entries))
    return CorpusReport(funnel, tuple(entries.values()), dict(sorted(statuses.items())))
