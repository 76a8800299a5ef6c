"""The values the static miner computes with, besides plain Python constants.

Mining never runs the mined program, so an expression whose value depends on
data, files, the command line or code outside the file evaluates to an
`Unresolved` marker that remembers how the source spells it. A call to a
Keras or TensorFlow callable that is neither a layer, a model nor an
optimizer (an initializer, a regularizer, a learning-rate schedule) evaluates
to a `KerasObject` that keeps its arguments for the layer table to read.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Unresolved:
    """A value that static analysis cannot compute.

    Attributes:
      expr: the source text that produced it (a name such as ``num_classes``
        or an expression such as ``X.shape[1:]``), at most 80 characters.
    """

    expr: str


@dataclasses.dataclass(frozen=True)
class KerasObject:
    """The result of calling a Keras/TensorFlow API that is not a layer, model or optimizer.

    Attributes:
      path: the dotted API path, Keras-normalised (``("keras", "initializers", "HeNormal")``).
      args: evaluated positional arguments.
      kwargs: evaluated keyword arguments, as (name, value) pairs.
      text: the call's source text, for messages.
    """

    path: tuple[str, ...]
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    text: str = ""

    @property
    def name(self) -> str:
        return self.path[-1]


MAX_NESTING = 16


def unresolved_in(value: Any, _depth: int = 0) -> list[Unresolved]:
    """Every `Unresolved` inside a value (itself, or nested in tuples and lists).

    Values nested deeper than `MAX_NESTING` (or lists that contain themselves)
    count as unresolved: no Keras argument is legitimately that deep.
    """
    if isinstance(value, Unresolved):
        return [value]
    if isinstance(value, (tuple, list)):
        if _depth >= MAX_NESTING:
            return [Unresolved("<deeply nested value>")]
        found: list[Unresolved] = []
        for item in value:
            found.extend(unresolved_in(item, _depth + 1))
        return found
    return []


def render(value: Any) -> str:
    """Source-like text of a plain value, for markers and messages (at most 80 characters)."""
    if isinstance(value, Unresolved):
        text = value.expr
    elif isinstance(value, KerasObject):
        text = value.text or ".".join(value.path) + "(...)"
    else:
        try:
            text = repr(value)
        except (ValueError, RecursionError):  # ints past 4300 digits, absurdly nested tuples
            text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."
