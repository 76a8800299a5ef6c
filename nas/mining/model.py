"""Records of mining: a mined layer, a mined model, and the outcome for one file.

A `MinedModel` always carries its layers (`MinedLayer`, Manas's abstract NN
in Keras terms) and carries an IR `Arch` when the IR can hold the model
exactly; `nas.mining.assemble` decides which, and its docstring states the rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nas.ir import Arch, Attrs

# MineResult.status values.
OK = "ok"                          # at least one model
NO_MODEL = "no_model"              # imports Keras, builds no model
NOT_KERAS = "not_keras"            # does not import Keras
SYNTAX_ERROR = "syntax_error"      # Python 3 cannot parse it, and it does not read as Python 2
PYTHON2 = "python2"                # Python 3 cannot parse it; it uses Python 2 syntax (print statements, ...)
BINARY = "binary"                  # not source text (NUL bytes, mostly undecodable bytes)
TOO_LARGE = "too_large"            # over `nas.mining.source.MAX_SOURCE_CHARS`
NOT_TEXT = "not_text"              # neither str nor bytes, or a file that cannot be read
INTERNAL_ERROR = "internal_error"  # a miner bug, caught so that mining a corpus never stops
STATUSES = (OK, NO_MODEL, NOT_KERAS, SYNTAX_ERROR, PYTHON2, BINARY, TOO_LARGE, NOT_TEXT, INTERNAL_ERROR)


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where a model was mined from.

    Attributes:
      path: the file, as given to the miner (relative to its repository in a corpus).
      first_line: the first line of the model's construction (model constructor,
        layer calls, ``Input``s, the ``Model(...)`` call).
      last_line: the last such line.
      repo: the repository (``owner/name``), when known.
      commit: the repository's commit, when known.
    """

    path: str | None = None
    first_line: int = 0
    last_line: int = 0
    repo: str | None = None
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MinedLayer:
    """One node of a mined model: a layer call, a separated activation, an input.

    Attributes:
      id: the node's id, numbered per op as in `nas.ir.builders` (``conv1``, ``act2``).
      keras: the Keras 2 class name (``Conv2D`` for ``Convolution2D``).
      op: the IR op, or None when the IR cannot express the layer.
      kind: its role (``"conv"``, ``"activation"``, ``"linear"``, ...; see
        `nas.mining.keras_layers`).
      attrs: IR attributes (Keras arguments as written when ``op`` is None).
      inputs: ids of the nodes it reads.
      line: the source line of the layer call.
      unresolved: (argument, source text) pairs the miner could not compute; a
        layer repeated by a loop of unknown trip count has ``("repeat", <iterable>)``.
      dropped: Keras arguments not carried into the IR.
      note: why ``op`` is None.
      shares: the id of an earlier node this call reuses the weights of (a
        layer object applied twice); the IR has no weight sharing.
    """

    id: str
    keras: str
    op: str | None
    kind: str
    attrs: Attrs = Attrs()
    inputs: tuple[str, ...] = ()
    line: int = 0
    unresolved: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    note: str = ""
    shares: str | None = None

    @property
    def supported(self) -> bool:
        """The layer maps to one IR op on its own (no unsupported config, no shared weights)."""
        return self.op is not None and self.shares is None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["attrs"] = self.attrs.to_json()
        out["inputs"] = list(self.inputs)
        out["unresolved"] = [list(pair) for pair in self.unresolved]
        out["dropped"] = list(self.dropped)
        return out


@dataclasses.dataclass(frozen=True)
class MinedModel:
    """One model found in a file.

    Attributes:
      layers: every node, in construction order, inputs first.
      arch: the IR architecture, or None when the IR cannot hold the model
        exactly (an unsupported layer, an unresolved attribute, an invalid
        graph); ``issues`` says why.
      optimizer: the optimizer of the last ``compile`` (a dict as made by
        `nas.mining.optimizers`), or None when the model is never compiled
        with one.
      loss: the ``compile`` loss when it is a string, else None.
      provenance: where the model was built.
      complete: Manas's test: the model has conv, activation and linear
        (Dense) layers and its input carries a concrete input shape; and,
        since an extracted model must be the model the source builds, no
        layer has an unresolved attribute or sits in a loop of unknown trip
        count (Manas ignores such parts).
      supported: every layer maps to an IR op and the graph is one the IR
        holds (one input, no shared weights).
      unresolved: source text of every value the miner could not compute
        (layer arguments, the input shape, optimizer arguments, loop trip
        counts), in order of first use, without repeats.
      issues: human-readable reasons for ``arch`` being None, and notes such
        as a channels-first reading of the input shape.
    """

    layers: tuple[MinedLayer, ...]
    arch: Arch | None
    optimizer: dict[str, Any] | None
    loss: str | None
    provenance: Provenance
    complete: bool
    supported: bool
    unresolved: tuple[str, ...] = ()
    issues: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "arch": None if self.arch is None else self.arch.to_dict(),
            "optimizer": self.optimizer,
            "loss": self.loss,
            "provenance": self.provenance.to_dict(),
            "complete": self.complete,
            "supported": self.supported,
            "unresolved": list(self.unresolved),
            "issues": list(self.issues),
        }


@dataclasses.dataclass(frozen=True)
class MineResult:
    """The outcome of mining one file; mining never raises, it reports here.

    Attributes:
      models: the models found, in the order they were built (and, across
        branch variants, in the order the variants were explored).
      reason: why ``models`` is empty (``"syntax error at line 3: ..."``,
        ``"no keras import"``, ``"no model built"``); empty otherwise.
      status: one of `STATUSES`.
      path: the path given to the miner.
      imports_keras: whether the file imports Keras (for files Python 3 cannot
        parse, judged from the text of their import lines).
      notes: limits met while mining (branch variants not explored, the step
        budget spent, recursion cut off).
      variants: how many branch variants (paths through unknown ``if``s) were run.
    """

    models: tuple[MinedModel, ...] = ()
    reason: str = ""
    status: str = NO_MODEL
    path: str | None = None
    imports_keras: bool = False
    notes: tuple[str, ...] = ()
    variants: int = 0
