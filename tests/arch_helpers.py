"""Hand-built architectures shared by the tests."""

from nas.ir import Arch, Attrs, Node


def chain(*nodes, name: str = "hand-built") -> Arch:
    """A chain: each (id, op, attrs) reads the node before it; the first is the Input."""
    built, previous = [], ()
    for node_id, op, attrs in nodes:
        built.append(Node(node_id, op, previous, Attrs(attrs)))
        previous = (node_id,)
    return Arch(tuple(built), (built[0].id,), (built[-1].id,), name).validate()
