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
from typing import Any, Iterator


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
# Nodes one walk of a value may visit (ten times the longest list the miner builds). Lists that
# hold one list twice, level after level (``a = [a, a]`` in a loop), unfold to 2**levels nodes.
MAX_VISITS = 100_000
_TOO_LARGE = "<value too large>"


def walk(value: Any, limit: int = MAX_VISITS) -> Iterator[Any]:
    """Yields ``value`` and every key, value and item nested in its containers, depth first, at most ``limit``.

    Dicts, lists, tuples, sets and frozensets are opened; anything else is a
    leaf. Shared and self-containing sublists are yielded once per occurrence,
    so stopping at ``limit`` is what keeps ``a = [a, a]`` built in a loop from
    unfolding exponentially; the caller learns of the cut by counting.
    """
    stack = [value]
    seen = 0
    while stack and seen < limit:
        item = stack.pop()
        seen += 1
        yield item
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (tuple, list, set, frozenset)):
            stack.extend(item)


def node_count(value: Any, limit: int = MAX_VISITS) -> int | None:
    """How many nodes a value unfolds to (containers and their items, recursively), or None past ``limit``.

    Shared and self-containing sublists count once per occurrence, so the
    count bounds what ``hash``, ``==``, ``repr`` or a recursive walk would do.
    """
    count = sum(1 for _ in walk(value, limit + 1))
    return None if count > limit else count


def unresolved_in(value: Any, _depth: int = 0) -> list[Unresolved]:
    """Every `Unresolved` inside a value (itself, or nested in tuples and lists), in order.

    Values nested deeper than `MAX_NESTING` (or lists that contain themselves)
    count as unresolved: no Keras argument is legitimately that deep; so does
    a value that unfolds to more than `MAX_VISITS` nodes (the walk stops there).
    """
    found: list[Unresolved] = []
    stack: list[tuple[Any, int]] = [(value, _depth)]
    pushed = 1
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Unresolved):
            found.append(item)
        elif isinstance(item, (tuple, list)):
            if depth >= MAX_NESTING:
                found.append(Unresolved("<deeply nested value>"))
                continue
            pushed += len(item)
            if pushed > MAX_VISITS:
                found.append(Unresolved(_TOO_LARGE))
                return found
            stack.extend((child, depth + 1) for child in reversed(item))
    return found


def render(value: Any) -> str:
    """Source-like text of a plain value, for markers and messages (at most 80 characters)."""
    if isinstance(value, Unresolved):
        text = value.expr
    elif isinstance(value, KerasObject):
        text = value.text or ".".join(value.path) + "(...)"
    elif node_count(value) is None:  # repr would unfold it whole
        text = f"<{type(value).__name__}, {_TOO_LARGE[1:]}"
    else:
        try:
            text = repr(value)
        except (ValueError, RecursionError):  # ints past 4300 digits, absurdly nested tuples
            text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."
