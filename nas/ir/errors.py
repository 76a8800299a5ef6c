"""Errors raised for malformed architectures; each names the node at fault."""

from __future__ import annotations


class IRError(ValueError):
    """Base class of every architecture error."""


class IRFormatError(IRError):
    """The JSON text is not an architecture document (bad JSON, schema, version)."""


class InvalidArchError(IRError):
    """A well-formed document describes an invalid graph.

    Attributes:
      node_id: the offending node (None when the fault is graph-wide).
      reason: what is wrong, in words.
    """

    def __init__(self, node_id: str | None, reason: str, op: str | None = None):
        self.node_id = node_id
        self.reason = reason
        self.op = op
        where = f"node {node_id!r}" if node_id is not None else "architecture"
        if op is not None:
            where += f" ({op})"
        super().__init__(f"{where}: {reason}")


class UnknownOpError(InvalidArchError):
    """A node uses an op that the IR does not define."""


class BadAttributeError(InvalidArchError):
    """A node's attribute is missing, unknown or has a bad value."""


class DanglingEdgeError(InvalidArchError):
    """An edge (or the input/output list) names a node that does not exist."""


class CycleError(InvalidArchError):
    """The graph is not acyclic."""


class ShapeError(InvalidArchError):
    """Shapes do not fit: a merge of unequal shapes, a kernel larger than its input..."""


class UnknownNodeError(IRError, KeyError):
    """A caller asked for a node id that the architecture does not have."""

    def __init__(self, node_id: str, known: list[str]):
        self.node_id = node_id
        hint = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        super().__init__(f"no node {node_id!r} in this architecture (nodes: {hint})")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]
