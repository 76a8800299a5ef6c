"""The architecture IR: an immutable DAG of nodes with named inputs and outputs.

Mined Keras models, built-in families and every morphism's child are values of
`Arch`; `nas.compile` turns one into a Flax module. A node is (stable string
id, op, attributes, input ids); ids survive JSON round-trips and key the
compiled parameters, so a weight transform finds a layer's kernel by its id.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

from nas.ir import errors
from nas.ir.ops import OPS, OpSpec, Shape

SCHEMA_VERSION = 1
FORMAT_NAME = "nas.arch"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")


def _freeze(value: Any) -> Any:
    """JSON-like value -> hashable value (lists become tuples, dicts Attrs)."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return Attrs(value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Attrs):
        return {k: _thaw(v) for k, v in value.items()}
    return value


class Attrs(Mapping[str, Any]):
    """A hashable, immutable attribute mapping (iterates in sorted key order)."""

    __slots__ = ("_items",)

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **extra: Any):
        merged = dict(data)
        merged.update(extra)
        self._items = tuple(sorted((str(k), _freeze(v)) for k, v in merged.items()))

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attrs):
            return self._items == other._items
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return "Attrs(" + ", ".join(f"{k}={v!r}" for k, v in self._items) + ")"

    def replace(self, **changes: Any) -> "Attrs":
        return Attrs(dict(self._items), **changes)

    def to_json(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self._items}


@dataclasses.dataclass(frozen=True)
class Node:
    """One layer call: a stable id, an op from `nas.ir.ops.OPS`, attributes, inputs."""

    id: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: Attrs = dataclasses.field(default_factory=Attrs)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not isinstance(self.attrs, Attrs):
            object.__setattr__(self, "attrs", Attrs(self.attrs))

    @property
    def spec(self) -> OpSpec:
        try:
            return OPS[self.op]
        except KeyError:
            raise errors.UnknownOpError(
                self.id, f"unknown op {self.op!r}; known ops: {sorted(OPS)}", self.op
            ) from None

    def normalized_attrs(self) -> dict[str, Any]:
        """Attributes with defaults filled and values parsed (kernel 3 -> (3, 3))."""
        spec = self.spec
        try:
            return spec.normalize(self.attrs)
        except ValueError as exc:
            raise errors.BadAttributeError(self.id, str(exc), self.op) from None

    def replace(self, **changes: Any) -> "Node":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "op": self.op}
        if self.inputs:
            out["inputs"] = list(self.inputs)
        if self.attrs:
            out["attrs"] = self.attrs.to_json()
        return out


@dataclasses.dataclass(frozen=True)
class Arch:
    """An architecture: nodes (any order), the input node ids and the output ids.

    Construction checks nothing beyond types, so a malformed graph can be held
    and reported; `validate()` names the first node at fault.
    """

    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))

    # ------------------------------------------------------------ lookup
    @functools.cached_property
    def _by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def node(self, node_id: str) -> Node:
        try:
            return self._by_id[node_id]
        except KeyError:
            raise errors.UnknownNodeError(node_id, [n.id for n in self.nodes]) from None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def consumers(self, node_id: str) -> tuple[Node, ...]:
        """Nodes that read `node_id`'s output, in topological order."""
        self.node(node_id)
        return tuple(n for n in self.topological_order() if node_id in n.inputs)

    @property
    def input_node(self) -> Node:
        return self.node(self.inputs[0])

    @property
    def output_id(self) -> str:
        return self.outputs[0]

    # ------------------------------------------------------------ editing
    def replace_nodes(self, nodes: Sequence[Node], **changes: Any) -> "Arch":
        return dataclasses.replace(self, nodes=tuple(nodes), **changes)

    # ------------------------------------------------------------ structure
    def topological_order(self) -> tuple[Node, ...]:
        """Kahn's order, ties broken by position in `nodes` (deterministic)."""
        return self._topological_order

    @functools.cached_property
    def _topological_order(self) -> tuple[Node, ...]:
        self._check_edges()
        position = {n.id: i for i, n in enumerate(self.nodes)}
        pending = {n.id: len(set(n.inputs)) for n in self.nodes}
        readers: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for src in set(n.inputs):
                readers[src].append(n.id)
        import heapq

        ready = [position[i] for i, count in pending.items() if count == 0]
        heapq.heapify(ready)
        order: list[Node] = []
        while ready:
            node = self.nodes[heapq.heappop(ready)]
            order.append(node)
            for reader in readers[node.id]:
                pending[reader] -= 1
                if pending[reader] == 0:
                    heapq.heappush(ready, position[reader])
        if len(order) != len(self.nodes):
            raise self._cycle_error({n.id for n in self.nodes if pending[n.id] > 0})
        return tuple(order)

    def _cycle_error(self, stuck: set[str]) -> errors.CycleError:
        # Every node Kahn's algorithm could not order reads another such node,
        # so walking inputs inside that set must revisit a node on a cycle.
        node = next(n for n in self.nodes if n.id in stuck)
        path: list[str] = []
        while node.id not in path:
            path.append(node.id)
            node = self.node(next(i for i in node.inputs if i in stuck))
        cycle = path[path.index(node.id):]
        return errors.CycleError(node.id, f"lies on a cycle ({' -> '.join(reversed(cycle + [node.id]))})", node.op)

    def _check_edges(self) -> None:
        seen: set[str] = set()
        for n in self.nodes:
            if not isinstance(n.id, str) or not _ID_PATTERN.match(n.id):
                raise errors.InvalidArchError(
                    str(n.id), "ids must be non-empty and use letters, digits, '_' or '-'", n.op
                )
            if n.id in seen:
                raise errors.InvalidArchError(n.id, "duplicate node id", n.op)
            seen.add(n.id)
        for n in self.nodes:
            for src in n.inputs:
                if src not in seen:
                    raise errors.DanglingEdgeError(n.id, f"input {src!r} is not a node of this architecture", n.op)
        for kind, ids in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not ids:
                raise errors.InvalidArchError(None, f"the architecture lists no {kind}")
            for i in ids:
                if i not in seen:
                    raise errors.DanglingEdgeError(i, f"named in {kind} but not a node of this architecture")

    def validate(self, input_shape: Sequence[int] | None = None) -> "Arch":
        """Checks the whole graph; raises an `InvalidArchError` naming the node.

        Checks: ids, dangling edges, unknown ops, attributes (missing, unknown,
        bad values), arity, acyclicity, reachability of the outputs, and (when
        an input shape is known from the argument or the Input node) shapes,
        including unequal shapes at Add and Concat.

        Returns:
          self, so calls chain: `Arch.from_json(text).validate()`.
        """
        self._check_edges()
        for n in self.nodes:
            n.normalized_attrs()  # unknown op / attribute errors, named
            arity = n.spec.arity
            if arity == "source" and n.inputs:
                raise errors.InvalidArchError(n.id, "an Input node takes no inputs", n.op)
            if arity == "unary" and len(n.inputs) != 1:
                raise errors.InvalidArchError(n.id, f"takes exactly one input, got {len(n.inputs)}", n.op)
            if arity == "merge" and len(n.inputs) < 2:
                raise errors.InvalidArchError(n.id, f"merges two or more inputs, got {len(n.inputs)}", n.op)
        if len(self.inputs) != 1:
            raise errors.InvalidArchError(None, f"exactly one input is supported, got {list(self.inputs)}")
        for n in self.nodes:
            if n.op == "Input" and n.id not in self.inputs:
                raise errors.InvalidArchError(n.id, "an Input node must be listed in the architecture's inputs", n.op)
        if self.input_node.op != "Input":
            raise errors.InvalidArchError(self.inputs[0], "listed as an input but its op is not Input", self.input_node.op)
        self.topological_order()
        reaching = self._ancestors(self.outputs)
        for n in self.nodes:
            if n.id not in reaching:
                raise errors.InvalidArchError(n.id, "does not reach any output (dead node)", n.op)
        if input_shape is not None or self.input_node.attrs.get("shape") is not None:
            self.shapes(input_shape)
        return self

    def _ancestors(self, ids: Iterable[str]) -> set[str]:
        stack, seen = list(ids), set()
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(self.node(i).inputs)
        return seen

    # ------------------------------------------------------------ shapes and counts
    def _resolve_input_shape(self, input_shape: Sequence[int] | None) -> Shape:
        declared = self.input_node.attrs.get("shape")
        if input_shape is None:
            input_shape = declared
        elif declared is not None and tuple(declared) != tuple(input_shape):
            raise errors.ShapeError(
                self.inputs[0], f"declares shape {list(declared)} but was given input shape {list(input_shape)}; "
                "rewrite the Input node's 'shape' to adapt the architecture to new data", "Input")
        if input_shape is None:
            raise errors.InvalidArchError(
                self.inputs[0], "no input shape: pass input_shape or set the Input node's 'shape'", "Input"
            )
        return tuple(int(d) for d in input_shape)

    def shapes(self, input_shape: Sequence[int] | None = None) -> dict[str, Shape]:
        """Output shape (without batch axis) of every node, by id."""
        return {i: s for i, (s, _) in self._infer(self._resolve_input_shape(input_shape)).items()}

    @functools.cached_property
    def _inferred(self) -> dict[Shape, dict[str, tuple[Shape, dict]]]:
        return {}

    def _infer(self, input_shape: Shape) -> dict[str, tuple[Shape, dict]]:
        if input_shape not in self._inferred:
            self._inferred[input_shape] = self._infer_uncached(input_shape)
        return self._inferred[input_shape]

    def _infer_uncached(self, input_shape: Shape) -> dict[str, tuple[Shape, dict]]:
        result: dict[str, tuple[Shape, dict]] = {}
        for n in self.topological_order():
            attrs = n.normalized_attrs()
            ins = [result[i][0] for i in n.inputs] if n.inputs else [input_shape]
            try:
                shape = n.spec.shape(attrs, ins)
            except ValueError as exc:
                raise errors.ShapeError(n.id, f"{exc} (input shapes {[list(s) for s in ins]})", n.op) from None
            result[n.id] = (tuple(shape), attrs)
        return result

    def output_shape(self, input_shape: Sequence[int] | None = None) -> Shape:
        """Shape of the (first) output for one example of `input_shape`."""
        return self.shapes(input_shape)[self.output_id]

    def layer_table(self, input_shape: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Per node, in topological order: id, op, inputs, output shape, params, FLOPs."""
        input_shape = self._resolve_input_shape(input_shape)
        inferred = self._infer(input_shape)
        rows = []
        for n in self.topological_order():
            out, attrs = inferred[n.id]
            ins = [inferred[i][0] for i in n.inputs] if n.inputs else [input_shape]
            rows.append(dict(
                id=n.id, op=n.op, inputs=n.inputs, shape=out,
                params=n.spec.params(attrs, ins, out), flops=n.spec.flops(attrs, ins, out),
            ))
        return rows

    def num_params(self, input_shape: Sequence[int] | None = None) -> int:
        """Trainable parameter count (BatchNorm's running statistics excluded)."""
        return sum(r["params"] for r in self.layer_table(input_shape))

    def flops(self, input_shape: Sequence[int] | None = None) -> int:
        """Forward FLOPs for one example (multiply-accumulate = 2)."""
        return sum(r["flops"] for r in self.layer_table(input_shape))

    def depth(self) -> int:
        """Trainable layers on the longest input-output path (the papers' 'layers')."""
        longest: dict[str, int] = {}
        for n in self.topological_order():
            before = max((longest[i] for i in n.inputs), default=0)
            longest[n.id] = before + int(n.spec.trainable and n.op != "BatchNorm")
        return longest[self.output_id]

    def summary(self, input_shape: Sequence[int] | None = None) -> str:
        """A readable table of layers, shapes, parameters and FLOPs."""
        from nas.ir.summary import format_summary

        return format_summary(self, input_shape)

    # ------------------------------------------------------------ identity
    def structural_hash(self) -> str:
        """Canonical hash: equal for graphs that differ only in ids, node order or name.

        Attributes are compared after defaults are filled (so `strides: 1` and
        no `strides` hash alike) and Add's inputs are unordered; Concat's order
        matters. Shared sub-graphs are told apart from duplicated ones.
        """
        labels = self._refined_labels()
        index: dict[str, int] = {}
        parts: list[str] = []

        def children(node: Node) -> list[str]:
            ids = list(node.inputs)
            if node.op == "Add":
                ids.sort(key=lambda c: labels[c])
            return ids

        def visit(node_id: str) -> str:
            # Post-order walk with an explicit stack: mined models run to
            # hundreds of layers, deeper than Python's recursion limit.
            stack: list[tuple[Node, list[str], list[str]]] = []
            if node_id not in index:
                node = self.node(node_id)
                stack.append((node, children(node), []))
            while stack:
                node, kids, refs = stack[-1]
                if len(refs) < len(kids):
                    child = kids[len(refs)]
                    if child in index:
                        refs.append(f"@{index[child]}")
                    else:
                        child_node = self.node(child)
                        stack.append((child_node, children(child_node), []))
                    continue
                stack.pop()
                index[node.id] = len(index)
                parts.append(f"{node.op}{json.dumps(_thaw(_freeze(node.normalized_attrs())), sort_keys=True)}"
                             f"<{','.join(refs)}>")
                if stack:
                    stack[-1][2].append(f"@{index[node.id]}")
            return f"@{index[node_id]}"

        outs = [visit(o) for o in self.outputs]
        return hashlib.sha256(("|".join(parts) + "=>" + ",".join(outs)).encode()).hexdigest()

    def _refined_labels(self) -> dict[str, str]:
        """Weisfeiler-Lehman colours over inputs and consumers, id-independent.

        They order an Add's inputs canonically: two branches that look alike
        bottom-up still differ by how the rest of the graph reads them.
        """
        def digest(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()

        order = self.topological_order()
        outputs = {o: i for i, o in enumerate(self.outputs)}
        readers: dict[str, list[tuple[str, str]]] = {n.id: [] for n in order}
        for n in order:
            for position, src in enumerate(n.inputs):
                readers[src].append((n.id, "+" if n.op == "Add" else str(position)))
        labels = {
            n.id: digest(f"{n.op}|{json.dumps(_thaw(_freeze(n.normalized_attrs())), sort_keys=True)}"
                         f"|{outputs.get(n.id, '')}")
            for n in order
        }
        classes = len(set(labels.values()))
        for _ in range(len(order)):
            refined = {}
            for n in order:
                ins = [labels[i] for i in n.inputs]
                if n.op == "Add":
                    ins.sort()
                outs = sorted(f"{labels[r]}:{pos}" for r, pos in readers[n.id])
                refined[n.id] = digest(f"{labels[n.id]}|{','.join(ins)}|{','.join(outs)}")
            labels = refined
            if len(set(labels.values())) == classes:
                break
            classes = len(set(labels.values()))
        return labels

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "nodes": [n.to_json() for n in self.nodes],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, doc: Any) -> "Arch":
        if not isinstance(doc, dict):
            raise errors.IRFormatError(f"an architecture document is a JSON object, got {type(doc).__name__}")
        if doc.get("format", FORMAT_NAME) != FORMAT_NAME:
            raise errors.IRFormatError(f"'format' must be {FORMAT_NAME!r}, got {doc.get('format')!r}")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise errors.IRFormatError(
                f"unsupported schema_version {version!r}; this version of nas reads {SCHEMA_VERSION}"
            )
        for key in ("nodes", "inputs", "outputs"):
            if not isinstance(doc.get(key), list):
                raise errors.IRFormatError(f"missing or non-list field {key!r}")
        for key in ("inputs", "outputs"):
            if not all(isinstance(i, str) for i in doc[key]):
                raise errors.IRFormatError(f"{key!r} must list node ids (strings), got {doc[key]!r}")
        if not isinstance(doc.get("name", ""), (str, type(None))):
            raise errors.IRFormatError(f"'name' must be a string, got {doc['name']!r}")
        nodes = []
        for i, raw in enumerate(doc["nodes"]):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not isinstance(raw.get("op"), str):
                raise errors.IRFormatError(f"nodes[{i}] must be an object with string 'id' and 'op', got {raw!r}")
            extra = set(raw) - {"id", "op", "inputs", "attrs"}
            if extra:
                raise errors.IRFormatError(f"nodes[{i}] ({raw['id']!r}) has unknown field(s) {sorted(extra)}")
            inputs, attrs = raw.get("inputs", []), raw.get("attrs", {})
            if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
                raise errors.IRFormatError(f"node {raw['id']!r}: 'inputs' must be a list of node ids")
            if not isinstance(attrs, dict):
                raise errors.IRFormatError(f"node {raw['id']!r}: 'attrs' must be an object")
            nodes.append(Node(raw["id"], raw["op"], tuple(inputs), Attrs(attrs)))
        return cls(tuple(nodes), tuple(doc["inputs"]), tuple(doc["outputs"]), doc.get("name") or "")

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        """Parses a document written by `to_json` (validate() it before use)."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise errors.IRFormatError(f"not valid JSON: {exc}") from None
        return cls.from_dict(doc)
