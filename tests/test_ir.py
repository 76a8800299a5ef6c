"""The IR: exact JSON round trips, canonical hashes, errors that name the node, worked counts.

Each test states a property of `nas.ir.Arch` and checks it either over random
valid architectures (`tests.strategies.archs`) or on a small example whose
numbers are worked out by hand in the test.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nas.ir as ir
from nas.ir import (
    ACTIVATIONS, BUILTINS, INITIALIZERS, OPS, Arch, Attrs, BadAttributeError, CycleError,
    DanglingEdgeError, InvalidArchError, IRFormatError, Node, ShapeError, UnknownOpError,
)
from tests.strategies import archs

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ir.md"
EXAMPLE = ROOT / "docs" / "examples" / "residual_cnn.json"

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _arch(*nodes, inputs=("in",), outputs=("head",), name="") -> Arch:
    """Nodes as (id, op, inputs, attrs) tuples."""
    return Arch(tuple(Node(i, op, tuple(ins), Attrs(attrs)) for i, op, ins, attrs in nodes), inputs, outputs, name)


def _renamed(arch: Arch, new_id: dict[str, str]) -> Arch:
    nodes = [Node(new_id[n.id], n.op, tuple(new_id[i] for i in n.inputs), n.attrs) for n in arch.nodes]
    return Arch(tuple(nodes), tuple(new_id[i] for i in arch.inputs), tuple(new_id[o] for o in arch.outputs), arch.name)


def _with_node(arch: Arch, node_id: str, **changes) -> Arch:
    return arch.replace_nodes([n.replace(**changes) if n.id == node_id else n for n in arch.nodes])


# A small residual net with a Concat: the hand-made subject of the hash tests.
def _small() -> Arch:
    return _arch(
        ("in", "Input", (), {"shape": [8, 8, 3]}),
        ("c1", "Conv2D", ("in",), {"filters": 4, "kernel_size": 3}),
        ("r1", "Activation", ("c1",), {"fn": "relu"}),
        ("c2", "Conv2D", ("r1",), {"filters": 4, "kernel_size": 3}),
        ("c3", "Conv2D", ("r1",), {"filters": 2, "kernel_size": 1}),
        ("add", "Add", ("r1", "c2"), {}),
        ("cat", "Concat", ("add", "c3"), {}),
        ("gap", "GlobalAvgPool", ("cat",), {}),
        ("head", "Dense", ("gap",), {"units": 3}),
        name="small",
    )


# ====================================================================== JSON round trip
@PROPERTY
@given(archs())
def test_json_round_trip_is_exact(pair):
    arch, input_shape = pair
    text = arch.to_json()
    back = Arch.from_json(text)
    assert back == arch
    assert back.structural_hash() == arch.structural_hash()
    assert back.to_json() == text
    assert Arch.from_json(arch.to_json(indent=None)) == arch
    assert back.validate().shapes() == arch.shapes(input_shape)
    assert arch.to_json() == text  # hashing and shape inference left the original alone


def test_json_document_has_the_documented_top_level_fields():
    doc = json.loads(_small().to_json())
    assert list(doc) == ["format", "schema_version", "name", "inputs", "outputs", "nodes"]
    assert (doc["format"], doc["schema_version"], doc["name"]) == ("nas.arch", ir.SCHEMA_VERSION, "small")
    assert doc["nodes"][1] == {"id": "c1", "op": "Conv2D", "inputs": ["in"], "attrs": {"filters": 4, "kernel_size": 3}}
    assert doc["nodes"][5] == {"id": "add", "op": "Add", "inputs": ["r1", "c2"]}  # empty attrs omitted


@PROPERTY
@given(archs(families=("image", "seq1d"), batchnorm=True), archs(batchnorm=False))
def test_the_strategy_honours_its_batchnorm_switch_and_families(with_bn, without_bn):
    arch, input_shape = with_bn
    assert len(input_shape) in (2, 3)  # image or seq1d, never embedding
    for node in arch.nodes:
        if re.fullmatch(r"(conv|dw|sep)\d+", node.id):  # a body conv: BatchNorm comes next
            assert [c.op for c in arch.consumers(node.id)] == ["BatchNorm"], node.id
    arch, _ = without_bn
    assert not any(n.op == "BatchNorm" for n in arch.nodes)


# ====================================================================== canonical hash
@PROPERTY
@given(archs(), st.randoms(use_true_random=False))
def test_hash_is_invariant_to_ids_node_order_name_and_add_order(pair, rng):
    arch, _ = pair
    before = arch.to_json()
    ids = [n.id for n in arch.nodes]
    fresh = [f"n{i}" for i in range(len(ids))]
    rng.shuffle(fresh)
    renamed = _renamed(arch, dict(zip(ids, fresh)))
    shuffled = list(arch.nodes)
    rng.shuffle(shuffled)
    h = arch.structural_hash()
    assert renamed.structural_hash() == h
    assert arch.replace_nodes(shuffled).structural_hash() == h
    assert arch.replace_nodes(arch.nodes, name="other name").structural_hash() == h
    adds_reversed = [n.replace(inputs=n.inputs[::-1]) if n.op == "Add" else n for n in arch.nodes]
    assert arch.replace_nodes(adds_reversed).structural_hash() == h
    concats_reversed = [n.replace(inputs=n.inputs[::-1]) if n.op == "Concat" else n for n in arch.nodes]
    if any(n.op == "Concat" for n in arch.nodes):  # the strategy's branches differ in width
        assert arch.replace_nodes(concats_reversed).structural_hash() != h
    assert arch.to_json() == before


@PROPERTY
@given(archs())
def test_hash_is_invariant_to_writing_every_default_out(pair):
    arch, input_shape = pair
    explicit = arch.replace_nodes([n.replace(attrs=Attrs(n.normalized_attrs())) for n in arch.nodes])
    assert explicit.structural_hash() == arch.structural_hash()
    assert explicit.validate().shapes() == arch.shapes(input_shape)
    assert explicit.num_params() == arch.num_params()


@PROPERTY
@given(archs(), st.data())
def test_hash_changes_when_a_width_changes(pair, data):
    arch, _ = pair
    widths = [(n.id, key) for n in arch.nodes for key in ("filters", "units") if key in n.attrs]
    node_id, key = data.draw(st.sampled_from(widths))
    node = arch.node(node_id)
    wider = _with_node(arch, node_id, attrs=node.attrs.replace(**{key: node.attrs[key] + 1}))
    assert wider.structural_hash() != arch.structural_hash()


@pytest.mark.parametrize("change, same", [
    (lambda a: a.replace_nodes(a.nodes, name="renamed"), True),
    (lambda a: _with_node(a, "c1", attrs=a.node("c1").attrs.replace(strides=1, padding="same")), True),
    (lambda a: _with_node(a, "c1", attrs=a.node("c1").attrs.replace(kernel_size=[3, 3])), True),
    (lambda a: _with_node(a, "r1", attrs=Attrs(fn="ReLU")), True),  # names are case-insensitive
    (lambda a: _with_node(a, "add", inputs=("c2", "r1")), True),  # Add is commutative
    (lambda a: _with_node(a, "cat", inputs=("c3", "add")), False),  # Concat is ordered
    (lambda a: _with_node(a, "c1", attrs=a.node("c1").attrs.replace(filters=5)), False),
    (lambda a: _with_node(a, "c1", attrs=a.node("c1").attrs.replace(strides=2)), False),
    (lambda a: _with_node(a, "c1", attrs=a.node("c1").attrs.replace(kernel_init="he_normal")), False),
    (lambda a: _with_node(a, "r1", attrs=Attrs(fn="tanh")), False),
    (lambda a: _with_node(a, "in", attrs=Attrs(shape=[9, 8, 3])), False),
], ids=["name", "explicit-defaults", "kernel-as-list", "fn-case", "add-swapped", "concat-swapped",
        "filters+1", "strides", "kernel_init", "activation", "input-shape"])
def test_hash_equal_exactly_for_equivalent_graphs(change, same):
    arch = _small()
    before = arch.to_json()
    changed = change(arch)
    assert (changed.structural_hash() == arch.structural_hash()) is same
    assert arch.to_json() == before


def test_shared_and_duplicated_subgraphs_hash_differently():
    conv = {"filters": 4, "kernel_size": 3}
    shared = _arch(
        ("in", "Input", (), {"shape": [8, 8, 3]}),
        ("c", "Conv2D", ("in",), conv),
        ("add", "Add", ("c", "c"), {}),
        ("gap", "GlobalAvgPool", ("add",), {}),
        ("head", "Dense", ("gap",), {"units": 3}),
    )
    duplicated = _arch(
        ("in", "Input", (), {"shape": [8, 8, 3]}),
        ("c", "Conv2D", ("in",), conv),
        ("c_copy", "Conv2D", ("in",), conv),
        ("add", "Add", ("c", "c_copy"), {}),
        ("gap", "GlobalAvgPool", ("add",), {}),
        ("head", "Dense", ("gap",), {"units": 3}),
    )
    assert shared.validate().output_shape() == duplicated.validate().output_shape()
    assert shared.structural_hash() != duplicated.structural_hash()
    assert shared.num_params() < duplicated.num_params()


def test_add_inputs_are_unordered_even_when_the_branches_tie():
    # Two identical conv -> relu branches meet at an Add, and one conv is also
    # read by the Concat. Swapping the Add's inputs is the same graph, but the
    # branches' bottom-up hashes tie, so the sharing pattern must break the tie.
    conv = {"filters": 2, "kernel_size": 1}

    def graph(add_inputs):
        return _arch(
            ("in", "Input", (), {"shape": [4, 4, 1]}),
            ("p", "Conv2D", ("in",), conv),
            ("q", "Conv2D", ("in",), conv),
            ("rp", "Activation", ("p",), {"fn": "relu"}),
            ("rq", "Activation", ("q",), {"fn": "relu"}),
            ("add", "Add", add_inputs, {}),
            ("cat", "Concat", ("add", "p"), {}),
            ("gap", "GlobalAvgPool", ("cat",), {}),
            ("head", "Dense", ("gap",), {"units": 2}),
        ).validate()

    assert graph(("rp", "rq")).structural_hash() == graph(("rq", "rp")).structural_hash()


GOLDEN_HASH = "35e210cd671f8421c197fd756cb00175cf8de8259bf1e6755331f1c1c4cc7c07"


def test_hash_of_a_fixed_arch_is_stable_across_versions():
    # Stored hashes (trial stores, caches) key on this value: changing the
    # canonical form is a format change and needs a migration.
    assert _small().structural_hash() == GOLDEN_HASH, (
        "the canonical hash changed; if that is deliberate, update GOLDEN_HASH and the summary "
        "pasted in docs/ir.md, and say so in the change log (stored hashes go stale)")


# ====================================================================== validation errors
_BASE = (
    ("in", "Input", (), {"shape": [8, 8, 3]}),
    ("conv", "Conv2D", ("in",), {"filters": 4, "kernel_size": 3}),
    ("relu", "Activation", ("conv",), {"fn": "relu"}),
    ("gap", "GlobalAvgPool", ("relu",), {}),
    ("head", "Dense", ("gap",), {"units": 2}),
)


def _edit(*, replace=(), insert=(), inputs=("in",), outputs=("head",)) -> Arch:
    """_BASE with nodes replaced by id and extra nodes inserted before 'head'."""
    by_id = {r[0]: r for r in replace}
    nodes = [by_id.get(n[0], n) for n in _BASE]
    nodes[-1:-1] = insert
    return _arch(*nodes, inputs=inputs, outputs=outputs)


def test_the_base_of_the_error_cases_is_valid():
    assert _edit().validate().output_shape() == (2,)


_CONV = ("conv", "Conv2D", ("in",))
ERROR_CASES = [
    pytest.param(_edit(replace=[("conv", "Conv3D", ("in",), {"filters": 4, "kernel_size": 3})]),
                 UnknownOpError, "conv", "Conv3D", id="unknown-op"),
    pytest.param(_edit(replace=[(*_CONV, {"kernel_size": 3})]),
                 BadAttributeError, "conv", "filters", id="missing-required"),
    pytest.param(_edit(replace=[(*_CONV, {"filters": 4, "kernel_size": 3, "stride": 2})]),
                 BadAttributeError, "conv", "did you mean 'strides'", id="unknown-attribute-hint"),
    pytest.param(_edit(replace=[(*_CONV, {"filters": 4, "kernel_size": 0})]),
                 BadAttributeError, "conv", "kernel_size", id="kernel-size-0"),
    pytest.param(_edit(replace=[(*_CONV, {"filters": 4, "kernel_size": 3, "padding": "full"})]),
                 BadAttributeError, "conv", "padding", id="padding-full"),
    pytest.param(_edit(replace=[(*_CONV, {"filters": 4.0, "kernel_size": 3})]),
                 BadAttributeError, "conv", "filters", id="float-filters"),
    pytest.param(_edit(replace=[(*_CONV, {"filters": 4, "kernel_size": 3, "kernel_init": "xavier"})]),
                 BadAttributeError, "conv", "kernel_init", id="unknown-initializer"),
    pytest.param(_edit(replace=[("relu", "Activation", ("conv",), {"fn": "swish"})]),
                 BadAttributeError, "relu", "fn", id="unknown-activation"),
    pytest.param(_edit(replace=[("gap", "Dropout", ("relu",), {"rate": 1.5})]),
                 BadAttributeError, "gap", "rate", id="dropout-rate-1.5"),
    pytest.param(_edit(replace=[("gap", "GlobalAvgPool", ("relu2",), {})]),
                 DanglingEdgeError, "gap", "relu2", id="dangling-edge"),
    pytest.param(_edit(outputs=("logits",)), DanglingEdgeError, "logits", "outputs", id="dangling-output"),
    pytest.param(_edit(replace=[("conv", "Conv2D", ("relu",), {"filters": 4, "kernel_size": 3})]),
                 CycleError, "conv", "cycle", id="cycle"),
    pytest.param(_edit(insert=[("add", "Add", ("in", "relu"), {})],
                       replace=[("gap", "GlobalAvgPool", ("add",), {})]),
                 ShapeError, "add", "different shapes", id="add-mismatched-shapes"),
    pytest.param(_edit(insert=[("pool", "MaxPool2D", ("relu",), {"pool_size": 2}),
                               ("cat", "Concat", ("relu", "pool"), {})],
                       replace=[("gap", "GlobalAvgPool", ("cat",), {})]),
                 ShapeError, "cat", "concatenate", id="concat-mismatched-spatial"),
    pytest.param(_edit(replace=[(*_CONV, {"filters": 4, "kernel_size": 9, "padding": "valid"})]),
                 ShapeError, "conv", "does not fit", id="kernel-too-big-valid"),
    pytest.param(_edit(replace=[(*_CONV, {"filters": 4, "kernel_size": 3, "groups": 2})]),
                 ShapeError, "conv", "groups", id="groups-not-dividing"),
    pytest.param(_edit(replace=[("gap", "GlobalAvgPool", ("relu", "conv"), {})]),
                 InvalidArchError, "gap", "exactly one input", id="unary-with-two-inputs"),
    pytest.param(_edit(insert=[("add", "Add", ("relu",), {})],
                       replace=[("head", "Dense", ("add",), {"units": 2})]),
                 InvalidArchError, "add", "two or more", id="add-with-one-input"),
    pytest.param(_edit(inputs=("conv",)), InvalidArchError, "in", "inputs", id="input-not-listed"),
    pytest.param(_edit(insert=[("in2", "Input", (), {"shape": [8, 8, 3]})]),
                 InvalidArchError, "in2", "inputs", id="second-input-not-listed"),
    pytest.param(_edit(insert=[("side", "Conv2D", ("relu",), {"filters": 2, "kernel_size": 1})]),
                 InvalidArchError, "side", "dead", id="dead-node"),
    pytest.param(_edit(insert=[("relu", "Activation", ("conv",), {"fn": "tanh"})]),
                 InvalidArchError, "relu", "duplicate", id="duplicate-id"),
    pytest.param(_edit(insert=[("bad id", "Identity", ("relu",), {})]),
                 InvalidArchError, "bad id", "ids", id="bad-id"),
]


@pytest.mark.parametrize("arch, error, node_id, fragment", ERROR_CASES)
def test_validation_errors_name_the_node(arch, error, node_id, fragment):
    before = arch.to_json()
    with pytest.raises(error) as caught:
        arch.validate()
    assert type(caught.value) is error
    assert caught.value.node_id == node_id
    message = str(caught.value)
    assert message.startswith(f"node {node_id!r}")
    assert fragment in message
    assert arch.to_json() == before


def test_a_misspelt_required_attribute_gets_a_did_you_mean_hint():
    # 'filter' for 'filters' is the commonest typo; the error should point at it,
    # not only report 'filters' as missing.
    arch = _edit(replace=[(*_CONV, {"filter": 4, "kernel_size": 3})])
    with pytest.raises(BadAttributeError, match="did you mean 'filters'") as caught:
        arch.validate()
    assert caught.value.node_id == "conv"


def test_a_cycle_error_names_a_node_on_the_cycle():
    # 'head' is listed first and reads the cycle a -> b -> a without being on it.
    arch = _arch(
        ("in", "Input", (), {"shape": [4, 4, 1]}),
        ("head", "Dense", ("b",), {"units": 2}),
        ("a", "Add", ("in", "b"), {}),
        ("b", "Conv2D", ("a",), {"filters": 1, "kernel_size": 1}),
    )
    with pytest.raises(CycleError) as caught:
        arch.validate()
    assert caught.value.node_id in {"a", "b"}


def test_shape_errors_need_a_shape_and_validate_takes_one():
    arch = _edit(replace=[("in", "Input", (), {}), (*_CONV, {"filters": 4, "kernel_size": 5, "padding": "valid"})])
    assert arch.validate() is arch  # no shape known: structure only
    assert arch.validate((8, 8, 3)).output_shape((8, 8, 3)) == (2,)
    with pytest.raises(ShapeError) as caught:
        arch.validate((4, 4, 3))
    assert caught.value.node_id == "conv"
    with pytest.raises(InvalidArchError, match="no input shape") as caught:
        arch.shapes()
    assert caught.value.node_id == "in"


def _doc() -> dict:
    return json.loads(_edit().to_json())


def _mutated(edit) -> str:
    doc = copy.deepcopy(_doc())
    edit(doc)
    return json.dumps(doc)


@pytest.mark.parametrize("text, fragment", [
    ("{", "not valid JSON"),
    ("[]", "JSON object"),
    (_mutated(lambda d: d.update(schema_version=2)), "schema_version"),
    (_mutated(lambda d: d.pop("schema_version")), "schema_version"),
    (_mutated(lambda d: d.update(format="keras")), "format"),
    (_mutated(lambda d: d.pop("nodes")), "nodes"),
    (_mutated(lambda d: d.update(outputs="head")), "outputs"),
    (_mutated(lambda d: d["nodes"][1].pop("op")), "nodes[1]"),
    (_mutated(lambda d: d["nodes"][1].update(op=3)), "nodes[1]"),
    (_mutated(lambda d: d["nodes"][1].update(attr={})), "unknown field"),
    (_mutated(lambda d: d["nodes"][1].update(attrs=[4, 3])), "'attrs' must be an object"),
    (_mutated(lambda d: d["nodes"][1].update(inputs="in")), "'inputs' must be a list"),
], ids=["malformed", "not-object", "schema-version-2", "no-schema-version", "format", "no-nodes",
        "outputs-not-list", "node-without-op", "op-not-string", "unknown-node-field", "attrs-not-object",
        "inputs-not-list"])
def test_documents_that_are_not_architectures_are_format_errors(text, fragment):
    with pytest.raises(IRFormatError) as caught:
        Arch.from_json(text)
    assert fragment in str(caught.value)
    assert not isinstance(caught.value, InvalidArchError)


def test_format_errors_and_graph_errors_share_a_base_class():
    assert issubclass(IRFormatError, ir.IRError) and issubclass(InvalidArchError, ir.IRError)
    assert issubclass(ir.IRError, ValueError)
    with pytest.raises(ir.UnknownNodeError, match="no node 'ghost'"):
        _small().node("ghost")


# ====================================================================== counts, worked by hand
def test_params_and_flops_of_a_small_conv_net_by_hand():
    arch = _arch(
        ("in", "Input", (), {"shape": [8, 8, 3]}),
        ("conv1", "Conv2D", ("in",), {"filters": 4, "kernel_size": 3}),  # same -> 8x8x4
        ("bn1", "BatchNorm", ("conv1",), {}),
        ("relu1", "Activation", ("bn1",), {"fn": "relu"}),
        ("pool1", "MaxPool2D", ("relu1",), {"pool_size": 2}),  # -> 4x4x4
        ("conv2", "Conv2D", ("pool1",), {"filters": 8, "kernel_size": 3, "padding": "valid",
                                         "use_bias": False}),  # -> 2x2x8
        ("gap", "GlobalAvgPool", ("conv2",), {}),  # -> 8
        ("head", "Dense", ("gap",), {"units": 10}),
    ).validate()
    params = {
        "conv1": 3 * 3 * 3 * 4 + 4,  # 112
        "bn1": 2 * 4,  # scale and offset; running mean/var are state
        "conv2": 3 * 3 * 4 * 8,  # 288, no bias
        "head": 8 * 10 + 10,  # 90
    }
    flops = {
        "in": 0,
        "conv1": 2 * (8 * 8 * 4) * (3 * 3 * 3) + 8 * 8 * 4,  # MACs x2, plus one add per output for the bias
        "bn1": 8 * 8 * 4,
        "relu1": 8 * 8 * 4,
        "pool1": (4 * 4 * 4) * (2 * 2),  # one op per window cell per output
        "conv2": 2 * (2 * 2 * 8) * (3 * 3 * 4),
        "gap": 2 * 2 * 8,  # one op per input element
        "head": 2 * 10 * 8 + 10,
    }
    table = {r["id"]: r for r in arch.layer_table()}
    assert {i: r["params"] for i, r in table.items() if r["params"]} == params
    assert {i: r["flops"] for i, r in table.items()} == flops
    assert arch.num_params() == 112 + 8 + 288 + 90 == 498
    assert arch.flops() == 14080 + 256 + 256 + 256 + 2304 + 32 + 170 == 17354
    assert [table[i]["shape"] for i in ("conv1", "pool1", "conv2", "gap", "head")] == [
        (8, 8, 4), (4, 4, 4), (2, 2, 8), (8,), (10,)]


def test_mlp_256_256_on_8x8x1_has_85002_params():
    arch = ir.mlp([256, 256], 10)
    # (64*256 + 256) + (256*256 + 256) + (256*10 + 10)
    assert arch.num_params((8, 8, 1)) == 16_640 + 65_792 + 2_570 == 85_002
    assert arch.output_shape((8, 8, 1)) == (10,)


@pytest.mark.parametrize("size, after_first, after_second", [(32, 16, 8), (7, 4, 2), (5, 3, 2)])
@pytest.mark.parametrize("downsample", ["maxpool", "stride"])
def test_cnn_downsamples_by_pooling_or_striding_alike(downsample, size, after_first, after_second):
    arch = ir.cnn([8, 16, 32], 10, input_shape=(size, size, 3), downsample=downsample).validate()
    shapes = arch.shapes()
    convs = [shapes[c] for c in ("conv1", "conv2", "conv3")]
    if downsample == "maxpool":  # conv keeps the size, a 2x2 'same' pool halves it (rounding up)
        assert convs == [(size, size, 8), (after_first, after_first, 16), (after_second, after_second, 32)]
        assert (shapes["pool1"], shapes["pool2"]) == ((after_first,) * 2 + (8,), (after_second,) * 2 + (16,))
    else:  # a stride-2 'same' conv halves it (rounding up)
        assert convs == [(after_first, after_first, 8), (after_second, after_second, 16),
                         (after_second, after_second, 32)]
        assert not any(n.op == "MaxPool2D" for n in arch.nodes)
    assert arch.output_shape() == (10,)
    # Downsampling never owns parameters: both variants count the same.
    assert arch.num_params() == (27 * 8 + 8) + (72 * 16 + 16) + (144 * 32 + 32) + (32 * 10 + 10)


def _one_layer(op: str, attrs: dict, shape=(6, 6, 4)) -> dict:
    arch = _arch(("in", "Input", (), {"shape": list(shape)}), ("layer", op, ("in",), attrs), outputs=("layer",))
    return {r["id"]: r for r in arch.validate().layer_table()}["layer"]


@pytest.mark.parametrize("channels, filters, kernel, multiplier, bias", [
    (4, 8, 3, 1, True), (4, 8, 3, 2, True), (3, 5, 5, 1, False), (1, 2, 1, 3, True),
])
def test_separable_and_depthwise_parameter_formulas(channels, filters, kernel, multiplier, bias):
    k2, mid = kernel * kernel, channels * multiplier
    sep = _one_layer("SeparableConv2D", dict(filters=filters, kernel_size=kernel, depth_multiplier=multiplier,
                                             use_bias=bias), (6, 6, channels))
    assert sep["params"] == k2 * mid + mid * filters + filters * bias  # depthwise + pointwise + bias
    assert sep["shape"] == (6, 6, filters)
    dw = _one_layer("DepthwiseConv2D", dict(kernel_size=kernel, depth_multiplier=multiplier, use_bias=bias),
                    (6, 6, channels))
    assert dw["params"] == k2 * mid + mid * bias
    assert dw["shape"] == (6, 6, mid)


@pytest.mark.parametrize("channels, filters, groups", [(4, 8, 1), (4, 8, 2), (4, 8, 4), (6, 3, 3)])
def test_grouped_conv_parameter_formula(channels, filters, groups):
    row = _one_layer("Conv2D", dict(filters=filters, kernel_size=3, groups=groups), (6, 6, channels))
    assert row["params"] == 3 * 3 * (channels // groups) * filters + filters
    assert row["flops"] == 2 * (6 * 6 * filters) * 9 * (channels // groups) + 6 * 6 * filters


@pytest.mark.parametrize("shape", [(6, 6, 4), (10, 7), (5,)])
def test_batchnorm_counts_scale_and_offset_only(shape):
    row = _one_layer("BatchNorm", {}, shape)
    assert row["params"] == 2 * shape[-1]
    assert row["shape"] == shape


def test_embedding_and_conv1d_counts():
    arch = _arch(
        ("in", "Input", (), {"shape": [12]}),
        ("embed", "Embedding", ("in",), {"input_dim": 20, "output_dim": 6}),
        ("conv", "Conv1D", ("embed",), {"filters": 5, "kernel_size": 3, "padding": "valid"}),
        ("pool", "GlobalMaxPool", ("conv",), {}),
        ("head", "Dense", ("pool",), {"units": 2}),
    ).validate()
    table = {r["id"]: r for r in arch.layer_table()}
    assert table["embed"]["shape"] == (12, 6) and table["embed"]["params"] == 20 * 6
    assert table["conv"]["shape"] == (10, 5) and table["conv"]["params"] == 3 * 6 * 5 + 5
    assert arch.num_params() == 120 + 95 + 12
    assert arch.depth() == 3  # embedding, conv, head


# ====================================================================== summary and depth
def test_summary_lists_every_node_the_totals_and_the_output_shape():
    arch = ir.cnn([8, 16], 10, input_shape=(12, 12, 1), batchnorm=True, dense=[32], dropout=0.1)
    before = arch.to_json()
    text = arch.summary()
    for node in arch.nodes:
        assert re.search(rf"^{re.escape(node.id)}\s", text, re.MULTILINE), node.id
    assert f"params: {arch.num_params():,}" in text
    assert f"output {arch.output_shape()}" in text
    assert arch.structural_hash()[:12] in text
    assert f"depth: {arch.depth()}" in text
    assert arch.to_json() == before


@pytest.mark.parametrize("arch, depth", [
    (ir.mlp([256, 256], 10), 3),
    (ir.mlp([], 10), 1),
    (ir.cnn([8, 16], 10, batchnorm=True), 3),  # BatchNorm is trainable but not a layer
    (ir.cnn([8, 16, 32], 10, dense=[64, 32]), 6),
    (_small(), 3),  # c1 -> c2 -> head through the residual branch; Add and Concat are free
], ids=["mlp", "logistic", "cnn-bn", "cnn-dense", "residual"])
def test_depth_counts_trainable_non_bn_layers_on_the_longest_path(arch, depth):
    assert arch.depth() == depth


# ====================================================================== built-ins and the compiler's coverage
@pytest.mark.parametrize("name", sorted(BUILTINS))
@pytest.mark.parametrize("input_shape", [(28, 28, 1), (32, 32, 3)])
def test_every_builtin_validates(name, input_shape):
    arch = ir.builtin(name, 10, input_shape)
    assert arch.validate() is arch
    assert arch.name == name
    assert arch.output_shape() == (10,)
    assert arch.num_params() > 0


def test_unknown_builtin_lists_the_builtins():
    with pytest.raises(ValueError) as caught:
        ir.builtin("resnet50", 10)
    for name in BUILTINS:
        assert name in str(caught.value)


def test_the_compiler_covers_every_op_activation_and_initializer():
    from nas.compile import flax_module

    # Input and Activation are interpreted by ArchModule itself; every other op needs a builder.
    assert set(flax_module._BUILDERS) == set(OPS) - {"Input", "Activation"}
    assert set(flax_module._ACTIVATIONS) == set(ACTIVATIONS)
    assert set(flax_module._INITIALIZERS) == set(INITIALIZERS)


# ====================================================================== the documentation cannot drift
def _attribute_row(spec: ir.OpSpec) -> str:
    """The row of docs/ir.md's attribute table for one op (generated from OPS)."""
    required = ", ".join(f"`{a}`" for a in spec.required) or "—"
    defaults = ", ".join(f"`{k}`: `{json.dumps(v)}`" for k, v in spec.defaults.items()) or "—"
    return f"| `{spec.name}` | {spec.arity} | {required} | {defaults} |"


def test_doc_attribute_table_matches_the_op_table():
    text = DOC.read_text()
    missing = [_attribute_row(spec) for spec in OPS.values() if _attribute_row(spec) not in text]
    assert not missing, "docs/ir.md is out of date; expected rows:\n" + "\n".join(missing)
    for name in (*ACTIVATIONS, *INITIALIZERS):
        assert f"`{name}`" in text, name


def test_doc_example_loads_validates_and_matches_its_quoted_numbers():
    arch = Arch.from_json(EXAMPLE.read_text()).validate()
    text = DOC.read_text()
    quoted = re.search(r"params: ([\d,]+)", text)
    assert quoted is not None and int(quoted.group(1).replace(",", "")) == arch.num_params()
    assert arch.summary() in text  # the pasted summary() output is the real one
    documents = [Arch.from_json(b).validate() for b in re.findall(r"```json\n(.*?)\n```", text, re.DOTALL)]
    assert arch in documents  # the doc's JSON is the file's, and every JSON example is valid
    assert [n.op for n in arch.nodes if n.op in ("Add", "BatchNorm", "MaxPool2D", "GlobalAvgPool")] == [
        "BatchNorm", "BatchNorm", "Add", "MaxPool2D", "GlobalAvgPool"]


# ====================================================================== Keras's parameter-free transforms
def _keras_head() -> Arch:
    """Rescaling -> conv -> relu6 -> UpSampling2D -> ReLU -> Reshape -> Dense: every new op once."""
    return _arch(
        ("in", "Input", (), {"shape": [8, 8, 3]}),
        ("rescale", "Rescaling", ("in",), {"scale": 1 / 127.5, "offset": -1}),
        ("conv", "Conv2D", ("rescale",), {"filters": 4, "kernel_size": 3, "strides": 2}),
        ("relu6", "Activation", ("conv",), {"fn": "relu6"}),
        ("up", "UpSampling2D", ("relu6",), {"size": [2, 3]}),
        ("leaky", "ReLU", ("up",), {"negative_slope": 0.3, "max_value": 6}),
        ("reshape", "Reshape", ("leaky",), {"target_shape": [-1, 4]}),
        ("head", "Dense", ("reshape",), {"units": 2}),
    )


def test_new_ops_shapes_params_and_flops_by_hand():
    table = {r["id"]: r for r in _keras_head().validate().layer_table()}
    assert [table[i]["shape"] for i in ("rescale", "conv", "relu6", "up", "leaky", "reshape", "head")] == [
        (8, 8, 3), (4, 4, 4), (4, 4, 4), (8, 12, 4), (8, 12, 4), (96, 4), (96, 2)]
    assert {i: table[i]["params"] for i in ("rescale", "relu6", "up", "leaky", "reshape")} == dict.fromkeys(
        ("rescale", "relu6", "up", "leaky", "reshape"), 0)
    # A multiply and an add per element; an activation one op per element; moves cost nothing.
    assert table["rescale"]["flops"] == 2 * 8 * 8 * 3
    assert table["relu6"]["flops"] == table["leaky"]["flops"] // 6 == 4 * 4 * 4
    assert table["up"]["flops"] == table["reshape"]["flops"] == 0
    no_offset = _arch(("in", "Input", (), {"shape": [5]}), ("head", "Rescaling", ("in",), {"scale": 2}))
    assert no_offset.flops() == 5


def test_new_ops_round_trip_through_json_and_hash_their_defaults_away():
    arch = _keras_head()
    text = arch.to_json()
    assert Arch.from_json(text) == arch and Arch.from_json(text).to_json() == text
    explicit = _with_node(_with_node(arch, "rescale", attrs=Attrs(scale=1 / 127.5, offset=-1.0)),
                          "leaky", attrs=Attrs(negative_slope=0.3, max_value=6.0, threshold=0))
    assert explicit.structural_hash() == arch.structural_hash()
    other = _with_node(arch, "leaky", attrs=Attrs(negative_slope=0.3))  # no bound: another function
    assert other.structural_hash() != arch.structural_hash()
    assert _with_node(arch, "up", attrs=Attrs(size=[2, 2])).structural_hash() == \
        _with_node(arch, "up", attrs=Attrs(size=2)).structural_hash()


def test_documents_without_the_new_ops_load_as_before():
    # The format is unchanged (schema_version 1): a stored document written before these ops reads back.
    text = EXAMPLE.read_text()
    assert json.loads(text)["schema_version"] == ir.SCHEMA_VERSION == 1
    assert Arch.from_json(text).validate().to_json() == Arch.from_json(text).to_json()


@pytest.mark.parametrize("node, fragment", [
    (("head", "Reshape", ("in",), {"target_shape": [7, 5]}), "cannot reshape 48 elements into [7, 5]"),
    (("head", "Reshape", ("in",), {"target_shape": [5, -1]}), "not a multiple of 5"),
    (("head", "Reshape", ("in",), {"target_shape": [-1, -1]}), "at most one -1"),
    (("head", "Reshape", ("in",), {"target_shape": [0, 48]}), "target_shape"),
    (("head", "Reshape", ("in",), {"target_shape": []}), "target_shape"),
    (("head", "UpSampling2D", ("in",), {"size": [2, 0]}), "size"),
    (("head", "Rescaling", ("in",), {"scale": float("inf")}), "finite"),
    (("head", "Rescaling", ("in",), {"scale": [0.5, 0.5, 0.5]}), "scale"),
    (("head", "Rescaling", ("in",), {}), "scale"),
    (("head", "ReLU", ("in",), {"max_value": -1}), "max_value"),
    (("head", "ReLU", ("in",), {"negative_slope": -0.1}), "negative_slope"),
    (("head", "ReLU", ("in",), {"threshold": -1}), "threshold"),
    (("head", "ReLU", ("in",), {"alpha": 0.3}), "unknown attribute"),
])
def test_new_op_errors_name_the_node(node, fragment):
    arch = _arch(("in", "Input", (), {"shape": [4, 4, 3]}), node)
    with pytest.raises(InvalidArchError) as caught:
        arch.validate()
    assert caught.value.node_id == "head" and fragment in str(caught.value)


def test_upsampling_needs_an_image():
    arch = _arch(("in", "Input", (), {"shape": [6, 3]}), ("head", "UpSampling2D", ("in",), {}))
    with pytest.raises(ShapeError, match="rank-3"):
        arch.validate()
    assert _with_node(arch, "in", attrs=Attrs(shape=[6, 5, 3])).validate().output_shape() == (12, 10, 3)
