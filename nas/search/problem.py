"""The problem a search solves, and a strategy's space posed on it.

A `Problem` is what the data asks of every architecture (input shape,
output count, task); it is taken from the dataset once, at the edge
(`Problem.of`). A space spec (`SpaceSpec`: the strategy's own frozen
settings, e.g. `nas.search.space.SearchSpace`) holds nothing of the data.
`Posed` pairs the two: it is what `Strategy.init` takes, and building one
is where a space that cannot search the problem (a CNN space on tabular
data) is refused, once for every strategy.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Generic, Iterator, Protocol, TypeVar

from nas.data.dataset import Task
from nas.ir import Arch

TASKS = typing.get_args(Task)


@dataclasses.dataclass(frozen=True)
class Problem:
    """What every proposed architecture must fit.

    Attributes:
      input_shape: one example's shape, without the batch axis; images are
        (height, width, channels).
      num_outputs: the head's width: classes, or 1 for regression.
      task: ``classification`` or ``regression``.
    """

    input_shape: tuple[int, ...]
    num_outputs: int
    task: str = "classification"

    def __post_init__(self):
        shape = tuple(int(d) for d in self.input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"input_shape must be a non-empty shape of positive sizes, got {self.input_shape!r}")
        if int(self.num_outputs) < 1:
            raise ValueError(f"num_outputs must be >= 1, got {self.num_outputs!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "num_outputs", int(self.num_outputs))

    @classmethod
    def of(cls, dataset: Any) -> "Problem":
        """The problem of a `nas.data.Dataset` (anything with input_shape, num_outputs and task)."""
        return cls(dataset.input_shape, dataset.num_outputs, dataset.task)

    @property
    def image(self) -> bool:
        """Whether examples are (height, width, channels) images, which convolutional families need."""
        return len(self.input_shape) == 3


class SpaceSpec(Protocol):
    """What a strategy's space spec offers besides its settings (a frozen dataclass).

    ``check(problem)``, optional: raises ValueError naming what the problem
    lacks when the space cannot search it. ``most_complex(problem)``: the
    space's most complex architecture for the problem (Deep-n-Cheap's c_0
    reference, `nas.search.reference`).
    """

    def most_complex(self, problem: Problem) -> Arch: ...


S = TypeVar("S")


@dataclasses.dataclass(frozen=True)
class Posed(Generic[S]):
    """A strategy's space spec posed on a problem: what `Strategy.init` takes.

    Building one runs the space's ``check(problem)`` (if it has one), so a
    strategy never sees a problem its space cannot search. Unpacks as
    ``space, problem = posed``.
    """

    space: S
    problem: Problem

    def __post_init__(self):
        if not isinstance(self.problem, Problem):
            raise TypeError(f"a space is posed on a nas.search.Problem (Problem.of(dataset)), got "
                            f"{type(self.problem).__name__} {self.problem!r}")
        check = getattr(self.space, "check", None)
        if check is not None:
            check(self.problem)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.space, self.problem))

    def most_complex(self) -> Arch:
        """The space's most complex architecture for the problem."""
        return self.space.most_complex(self.problem)


__all__ = ["Posed", "Problem", "SpaceSpec", "TASKS"]
