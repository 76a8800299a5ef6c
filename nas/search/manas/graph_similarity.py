"""Manas's model filter (ICSE'22 s4.3, eqs. 10-11): keep the most common architecture.

A model becomes a graph of its trainable layers (conv, Dense, ...; BatchNorm
and every non-trainable layer such as activations, pooling and dropout are
left out, as the paper asks): an edge joins two trainable layers when data
flows from one to the other through non-trainable layers only, and weighs the
channels (units) of its outgoing layer, the one the data leaves. Vertices are
numbered in topological order; the weighted adjacency matrix is symmetric.

Eq. 10 compares vertex i of graph A with vertex j of graph B by the cosine of
their rows of edge weights (``M_ij = sum_k w_ik w_jk / (|w_i| |w_j|)``, over the
common vertex numbering, smaller graphs padded with isolated vertices). Two
graphs belong to the same class when their pair matrix equals each one's own
(``M^AB = M^AA = M^BB``): B is then indistinguishable from A by eq. 10.
Because the diagonal of ``M^AB`` equal to 1 forces every row of B to point the
same way as A's, that holds exactly when the row-normalised adjacency matrices
are equal: the same topology with the same width ratio on every edge, whatever
the global width. The filter keeps the largest class.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nas.ir import Arch, InvalidArchError, Node

# Equal similarity matrices are compared to this tolerance (cosines of integer
# widths; anything coarser than float rounding would merge real differences).
ATOL = 1e-9


def is_trainable_layer(node: Node) -> bool:
    """Manas's 'trainable layers like convolutional or dense layers' (BatchNorm is not one)."""
    return node.spec.trainable and node.op != "BatchNorm"


def _width(node: Node, shapes: dict[str, tuple[int, ...]] | None) -> int:
    """Channels (units) a trainable layer puts out."""
    if shapes is not None:
        return int(shapes[node.id][-1])
    for key in ("filters", "units", "output_dim"):
        if key in node.attrs:
            return int(node.attrs[key])
    raise InvalidArchError(node.id, "its output width depends on its input; give the Input node a shape", node.op)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainableGraph:
    """The trainable-layer graph of one model.

    Attributes:
      layers: node ids of the trainable layers, in topological order (vertex i
        is ``layers[i]``).
      weights: symmetric (n, n) float64 matrix; ``weights[p, q]`` is the weight
        of the edge between vertices p and q (eq. 11), 0 where there is none.
    """

    layers: tuple[str, ...]
    weights: np.ndarray

    @property
    def size(self) -> int:
        return len(self.layers)


def trainable_graph(arch: Arch) -> TrainableGraph:
    """The graph of `arch`'s trainable layers with channel-weighted edges.

    Widths come from shape inference when the Input node declares a shape
    (so DepthwiseConv2D is sized), else from the layers' own attributes.
    """
    order = arch.topological_order()
    try:
        shapes = arch.shapes() if arch.input_node.attrs.get("shape") is not None else None
    except InvalidArchError:
        shapes = None
    layers = [n for n in order if is_trainable_layer(n)]
    index = {n.id: i for i, n in enumerate(layers)}
    # The trainable layers whose output reaches each node through non-trainable ones only.
    sources: dict[str, frozenset[str]] = {}
    for n in order:
        feeding = set()
        for i in n.inputs:
            feeding |= {i} if i in index else sources[i]
        sources[n.id] = frozenset(feeding)
    weights = np.zeros((len(layers), len(layers)))
    for n in layers:
        for src in sources[n.id]:
            w = _width(arch.node(src), shapes)
            weights[index[src], index[n.id]] = weights[index[n.id], index[src]] = w
    return TrainableGraph(tuple(n.id for n in layers), weights)


def _padded(weights: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size))
    out[: len(weights), : len(weights)] = weights
    return out


def _unit_rows(weights: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(weights, axis=1, keepdims=True)
    return np.divide(weights, norms, out=np.zeros_like(weights), where=norms > 0)


def similarity_matrix(a: TrainableGraph, b: TrainableGraph) -> np.ndarray:
    """Eq. 10: ``M[i, j]`` = cosine of vertex i's edge weights in `a` and vertex j's in `b`.

    Both graphs are padded to the larger size; an isolated vertex (no edges)
    has similarity 0 to every vertex.
    """
    size = max(a.size, b.size)
    return _unit_rows(_padded(a.weights, size)) @ _unit_rows(_padded(b.weights, size)).T


def same_architecture(a: TrainableGraph, b: TrainableGraph, atol: float = ATOL) -> bool:
    """Whether eq. 10 cannot tell `a` and `b` apart: ``M^AB == M^AA == M^BB``."""
    if a.size != b.size:
        return False
    cross = similarity_matrix(a, b)
    return (np.allclose(cross, similarity_matrix(a, a), rtol=0, atol=atol)
            and np.allclose(cross, similarity_matrix(b, b), rtol=0, atol=atol))


def architecture_classes(graphs: Sequence[TrainableGraph], atol: float = ATOL) -> list[list[int]]:
    """Groups graph indices into classes of equal similarity structure.

    Classes come in order of their first member; members in input order.
    """
    classes: list[list[int]] = []
    for i, g in enumerate(graphs):
        for members in classes:
            if same_architecture(graphs[members[0]], g, atol):
                members.append(i)
                break
        else:
            classes.append([i])
    return classes


def most_common_architecture(archs: Sequence[Arch], prefer: int | None = None) -> tuple[int, ...]:
    """Indices of the models in the largest class (the paper's filter).

    Args:
      archs: the models to filter.
      prefer: an index whose class wins a tie for the largest (Manas's closest
        model); otherwise the class seen first wins.
    Returns:
      The winning class's indices, ascending.
    """
    if not archs:
        return ()
    classes = architecture_classes([trainable_graph(a) for a in archs])
    best = max(len(c) for c in classes)
    largest = [c for c in classes if len(c) == best]
    chosen = next((c for c in largest if prefer in c), largest[0])
    return tuple(chosen)
