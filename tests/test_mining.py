"""The Keras miner (Manas section 4.1) against a fixture corpus with known truth.

Each file under tests/fixtures/keras is one construction style; `EXPECTED`
holds, per file, every model it builds: the exact IR nodes (ids, ops,
attributes as the IR stores them, edges), outputs, compiled optimizer and
loss, the provenance line span and Manas's completeness/support verdicts.
The expectations were written from reading the fixture sources, not from
the miner's output. Then: unresolved markers, per-file outcomes for bad
input, a hypothesis fuzz test (the miner never raises and never hits its
own last-resort handler), the funnel and ``nas-mine`` on a small corpus,
and the zoo's SQLite/JSONL round trip.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.ir import Node
from nas.mining import (
    BINARY, INTERNAL_ERROR, NO_MODEL, NOT_KERAS, NOT_TEXT, OK, PYTHON2, STATUSES, SYNTAX_ERROR, TOO_LARGE,
    MineResult, UnstorableModelError, ZooFormatError, export_jsonl, load_seed_zoo, load_zoo, mine_corpus,
    mine_source, model_intent, python_files, read_jsonl, read_zoo, seed_zoo_meta, write_zoo, zoo_entry,
)
from nas.mining.cli import main as nas_mine
from nas.mining.source import MAX_SOURCE_CHARS
from nas.mining.zoo import SEED_ZOO

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "keras"


def n(node_id: str, op: str, *inputs: str, **attrs) -> Node:
    return Node(node_id, op, inputs, attrs)


def conv(node_id, src, filters, kernel, padding="valid", **more):
    return n(node_id, "Conv2D", src, filters=filters, kernel_size=kernel, padding=padding, **more)


def act(node_id, src, fn):
    return n(node_id, "Activation", src, fn=fn)


def dense(node_id, src, units, **more):
    return n(node_id, "Dense", src, units=units, **more)


def inp(*shape):
    return n("input", "Input", shape=tuple(shape))


@dataclasses.dataclass(frozen=True)
class Expected:
    """One mined model's truth. ``nodes`` is None for models with no IR arch; then ``layers`` lists
    (id, keras class, IR op or None, inputs) and ``unresolved`` the markers."""

    lines: tuple[int, int]
    nodes: tuple[Node, ...] | None
    outputs: tuple[str, ...] = ()
    optimizer: dict | None = None
    loss: str | None = None
    complete: bool = True
    supported: bool = True
    layers: tuple[tuple, ...] = ()
    unresolved: tuple[str, ...] = ()


# The model of sequential_add.py; duplicate.py writes the same network with the functional API.
_SMALL_CNN = (inp(32, 32, 3), conv("conv1", "input", 16, (3, 3)), act("act1", "conv1", "relu"),
              n("maxpool1", "MaxPool2D", "act1", pool_size=2), n("flatten1", "Flatten", "maxpool1"),
              dense("dense1", "flatten1", 10), act("act2", "dense1", "softmax"))
_TINY = (inp(8, 8, 1), conv("conv1", "input", 4, 3), act("act1", "conv1", "relu"),
         n("flatten1", "Flatten", "act1"), dense("dense1", "flatten1", 2), act("act2", "dense1", "softmax"))

EXPECTED: dict[str, tuple[Expected, ...]] = {
    "sequential_add": (Expected((5, 11), _SMALL_CNN, ("act2",), {"type": "Adam"}, "categorical_crossentropy"),),
    "duplicate": (Expected((5, 9), (
        inp(32, 32, 3), conv("conv1", "input", 16, 3), act("act1", "conv1", "relu"),
        n("maxpool1", "MaxPool2D", "act1", pool_size=(2, 2)), n("flatten1", "Flatten", "maxpool1"),
        dense("dense1", "flatten1", 10), act("act2", "dense1", "softmax")), ("act2",)),),
    "sequential_list": (Expected((5, 9), (
        inp(28, 28, 1), conv("conv1", "input", 8, 3, "same"), act("act1", "conv1", "relu"),
        n("bn1", "BatchNorm", "act1"), n("gap1", "GlobalAvgPool", "bn1"), dense("dense1", "gap1", 10),
        act("act2", "dense1", "softmax")), ("act2",), {"type": "RMSprop"}, "sparse_categorical_crossentropy"),),
    "functional": (Expected((5, 11), (
        inp(64, 64, 3), conv("conv1", "input", 32, (3, 3), "same", strides=(2, 2)), act("act1", "conv1", "relu"),
        n("maxpool1", "MaxPool2D", "act1", pool_size=(2, 2), strides=2), n("flatten1", "Flatten", "maxpool1"),
        n("dropout1", "Dropout", "flatten1", rate=0.5), dense("dense1", "dropout1", 5),
        act("act2", "dense1", "softmax")), ("act2",), {"type": "SGD"}, "categorical_crossentropy"),),
    "helper_function": (Expected((7, 15), (
        inp(32, 32, 3), conv("conv1", "input", 32, (3, 3)), act("act1", "conv1", "relu"),
        conv("conv2", "act1", 64, (3, 3), "same"), act("act2", "conv2", "relu"), n("flatten1", "Flatten", "act2"),
        dense("dense1", "flatten1", 10), act("act3", "dense1", "softmax")),
        ("act3",), {"type": "Adam"}, "categorical_crossentropy"),),
    "class_builder": (Expected((12, 21), (
        inp(48, 48, 1), conv("conv1", "input", 8, 3, "same"), act("act1", "conv1", "relu"),
        conv("conv2", "act1", 16, 3, "same"), act("act2", "conv2", "relu"), n("gmp1", "GlobalMaxPool", "act2"),
        dense("dense1", "gmp1", 3)), ("dense1",)),),
    "subclassed": (Expected((8, 19), (
        inp(28, 28, 1), conv("conv1", "input", 32, 3), act("act1", "conv1", "relu"),
        n("maxpool1", "MaxPool2D", "act1", pool_size=2), n("flatten1", "Flatten", "maxpool1"),
        dense("dense1", "flatten1", 10)), ("dense1",), {"type": "Adam", "learning_rate": 0.001},
        "sparse_categorical_crossentropy"),),
    "nested_model": (Expected((5, 9), (
        inp(16, 16, 1), conv("conv1", "input", 8, 3), act("act1", "conv1", "relu"), n("flatten1", "Flatten", "act1"),
        dense("dense1", "flatten1", 3), act("act2", "dense1", "softmax")), ("act2",)),),
    "loop_range": (Expected((5, 11), (
        inp(32, 32, 3), conv("conv1", "input", 16, (3, 3), "same"), act("act1", "conv1", "relu"),
        conv("conv2", "act1", 32, (3, 3), "same"), act("act2", "conv2", "relu"),
        n("maxpool1", "MaxPool2D", "act2", pool_size=(2, 2)),
        conv("conv3", "maxpool1", 64, (3, 3), "same"), act("act3", "conv3", "relu"),
        n("maxpool2", "MaxPool2D", "act3", pool_size=(2, 2)), n("flatten1", "Flatten", "maxpool2"),
        dense("dense1", "flatten1", 10), act("act4", "dense1", "softmax")), ("act4",)),),
    "loop_list": (Expected((5, 14), (
        inp(32, 32, 3),
        conv("conv1", "input", 16, 3, "same"), act("act1", "conv1", "relu"),
        n("maxpool1", "MaxPool2D", "act1", pool_size=2),
        conv("conv2", "maxpool1", 32, 3, "same"), act("act2", "conv2", "relu"),
        n("maxpool2", "MaxPool2D", "act2", pool_size=2),
        conv("conv3", "maxpool2", 64, 3, "same"), act("act3", "conv3", "relu"),
        n("maxpool3", "MaxPool2D", "act3", pool_size=2), n("flatten1", "Flatten", "maxpool3"),
        dense("dense1", "flatten1", 128), act("act4", "dense1", "relu"),
        dense("dense2", "act4", 64), act("act5", "dense2", "relu"),
        dense("dense3", "act5", 10), act("act6", "dense3", "softmax")), ("act6",)),),
    # Both arms of `if <command line>`: one model per arm, the 'then' arm first.
    "if_else": (
        Expected((10, 18), (
            inp(28, 28, 1), conv("conv1", "input", 32, (3, 3)), act("act1", "conv1", "relu"),
            conv("conv2", "act1", 64, (3, 3)), act("act2", "conv2", "relu"),
            n("dropout1", "Dropout", "act2", rate=0.25),
            n("flatten1", "Flatten", "dropout1"), dense("dense1", "flatten1", 10), act("act3", "dense1", "softmax")),
            ("act3",)),
        Expected((10, 18), (
            inp(28, 28, 1), conv("conv1", "input", 32, (3, 3)), act("act1", "conv1", "relu"),
            n("dropout1", "Dropout", "act1", rate=0.5), n("flatten1", "Flatten", "dropout1"),
            dense("dense1", "flatten1", 10), act("act2", "dense1", "softmax")), ("act2",)),
    ),
    "constants": (Expected((16, 25), (
        inp(28, 28, 1), conv("conv1", "input", 32, (3, 3)), act("act1", "conv1", "relu"),
        conv("conv2", "act1", 64, 3), act("act2", "conv2", "relu"),
        n("maxpool1", "MaxPool2D", "act2", pool_size=(2, 2)),
        n("dropout1", "Dropout", "maxpool1", rate=0.25), n("flatten1", "Flatten", "dropout1"),
        dense("dense1", "flatten1", 128), act("act3", "dense1", "relu"), dense("dense2", "act3", 10),
        act("act4", "dense2", "softmax")), ("act4",)),),
    "keras1": (Expected((9, 20), (
        inp(28, 28, 1), conv("conv1", "input", 32, (3, 3), "same"), act("act1", "conv1", "relu"),
        conv("conv2", "act1", 64, (3, 3), strides=(2, 2), kernel_init="he_normal"), act("act2", "conv2", "relu"),
        n("maxpool1", "MaxPool2D", "act2", pool_size=(2, 2)), n("dropout1", "Dropout", "maxpool1", rate=0.25),
        n("flatten1", "Flatten", "dropout1"), dense("dense1", "flatten1", 128, kernel_init="random_uniform"),
        act("act3", "dense1", "relu"), dense("dense2", "act3", 10), act("act4", "dense2", "softmax")), ("act4",),
        {"type": "SGD", "learning_rate": 0.1, "decay": 1e-6, "momentum": 0.9, "nesterov": True},
        "categorical_crossentropy"),),
    "imports_tf_keras": (Expected((4, 8), (
        inp(28, 28, 1), conv("conv1", "input", 32, (5, 5)), act("act1", "conv1", "relu"),
        n("maxpool1", "MaxPool2D", "act1", pool_size=2), n("flatten1", "Flatten", "maxpool1"),
        dense("dense1", "flatten1", 10), act("act2", "dense1", "softmax")), ("act2",),
        {"type": "SGD", "learning_rate": 0.01, "momentum": 0.9}, "sparse_categorical_crossentropy"),),
    "aliases": (Expected((7, 13), (
        inp(16, 16, 3), conv("conv1", "input", 8, 3), act("act1", "conv1", "relu"),
        n("sepconv1", "SeparableConv2D", "act1", filters=16, kernel_size=3, padding="same"),
        n("dwconv1", "DepthwiseConv2D", "sepconv1", depth_multiplier=2, kernel_size=3, padding="valid"),
        n("gap1", "GlobalAvgPool", "dwconv1"), dense("dense1", "gap1", 4), act("act2", "dense1", "sigmoid")),
        ("act2",)),),
    # 'linear' and activation=None add no node; LeakyReLU(alpha=0.2) is the IR's leaky_relu (slope 0.2).
    "inline_activation": (Expected((5, 14), (
        inp(10, 10, 1), conv("conv1", "input", 8, 3), act("act1", "conv1", "tanh"), act("act2", "act1", "relu"),
        conv("conv2", "act2", 8, 3), act("act3", "conv2", "leaky_relu"), conv("conv3", "act3", 8, 3),
        act("act4", "conv3", "elu"), n("flatten1", "Flatten", "act4"), dense("dense1", "flatten1", 3),
        act("act5", "dense1", "softmax")), ("act5",)),),
    "input_layer": (
        Expected((5, 9), (
            inp(20, 20, 3), conv("conv1", "input", 4, 3), act("act1", "conv1", "relu"),
            n("flatten1", "Flatten", "act1"),
            dense("dense1", "flatten1", 2), act("act2", "dense1", "softmax")), ("act2",)),
        # An MLP: no conv, so not complete.
        Expected((11, 13), (
            inp(784), dense("dense1", "input", 64), act("act1", "dense1", "relu"), dense("dense2", "act1", 10),
            act("act2", "dense2", "softmax")), ("act2",), complete=False),
        # batch_input_shape drops the batch axis; no activation layer, so not complete.
        Expected((15, 15), (
            inp(8, 8, 1), conv("conv1", "input", 4, 3), n("flatten1", "Flatten", "conv1"),
            dense("dense1", "flatten1", 1)), ("dense1",), complete=False),
    ),
    "channels_first": (
        Expected((5, 9), (
            inp(28, 28, 1), conv("conv1", "input", 16, (3, 3)), act("act1", "conv1", "relu"),
            n("maxpool1", "MaxPool2D", "act1", pool_size=(2, 2)), n("flatten1", "Flatten", "maxpool1"),
            dense("dense1", "flatten1", 10), act("act2", "dense1", "softmax")), ("act2",)),
        Expected((11, 14), (
            inp(32, 32, 3), conv("conv1", "input", 16, (5, 5)), act("act1", "conv1", "relu"),
            n("flatten1", "Flatten", "act1"), dense("dense1", "flatten1", 10), act("act2", "dense1", "softmax")),
            ("act2",)),
    ),
    "merges_add": (Expected((8, 22), (
        n("input", "Input", shape=(32, 32, 16)), conv("conv1", "input", 16, 3, "same"), n("bn1", "BatchNorm", "conv1"),
        act("act1", "bn1", "relu"), conv("conv2", "act1", 16, 3, "same"), n("add1", "Add", "input", "conv2"),
        act("act2", "add1", "relu"), conv("conv3", "act2", 16, 1), n("add2", "Add", "act2", "conv3"),
        n("gap1", "GlobalAvgPool", "add2"), dense("dense1", "gap1", 10), act("act3", "dense1", "softmax")),
        ("act3",)),),
    # axis=3 is the channel axis of a rank-4 Keras tensor, which is the IR's default (-1).
    "merges_concat": (Expected((5, 14), (
        inp(28, 28, 3), conv("conv1", "input", 8, 1, "same"), act("act1", "conv1", "relu"),
        conv("conv2", "input", 8, 3, "same"), act("act2", "conv2", "relu"),
        n("maxpool1", "MaxPool2D", "input", pool_size=3, strides=1, padding="same"),
        n("concat1", "Concat", "act1", "act2", "maxpool1"), conv("conv3", "concat1", 4, 1),
        n("concat2", "Concat", "concat1", "conv3"), n("flatten1", "Flatten", "concat2"),
        dense("dense1", "flatten1", 10), act("act3", "dense1", "softmax")), ("act3",)),),
    "optimizer_sgd": (Expected((6, 6), _TINY, ("act2",),
                               {"type": "SGD", "learning_rate": 0.01, "momentum": 0.9, "decay": 1e-6, "nesterov": True},
                               "categorical_crossentropy"),),
    "optimizer_adam_named": (Expected((7, 10), (
        inp(8, 8, 1), conv("conv1", "input", 4, 3), act("act1", "conv1", "relu"), n("flatten1", "Flatten", "act1"),
        dense("dense1", "flatten1", 1)), ("dense1",),
        {"type": "Adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "amsgrad": False}, "mse"),),
    "optimizer_string": (
        Expected((5, 5), _TINY, ("act2",), {"type": "Adam"}, "categorical_crossentropy"),
        Expected((8, 8), tuple(dataclasses.replace(node, attrs=node.attrs.replace(filters=6))
                               if node.id == "conv1" else node for node in _TINY),
                 ("act2",), {"type": "RMSprop"}, "categorical_crossentropy"),
    ),
    # Models with no IR arch: a Dense whose units come from an argument no caller gives.
    # Styles seen in public Keras files outside the seed zoo's repositories (experiments/results/miner_coverage.md).
    "custom_layer_block": (Expected((8, 28), (
        inp(32, 32, 3), conv("conv1", "input", 8, 3, "same"), act("act1", "conv1", "relu"),
        conv("conv2", "act1", 8, 3, "same"), n("bn1", "BatchNorm", "conv2"), n("add1", "Add", "bn1", "act1"),
        act("act2", "add1", "relu"), conv("conv3", "act2", 8, 3, "same"), n("bn2", "BatchNorm", "conv3"),
        n("add2", "Add", "bn2", "act2"), act("act3", "add2", "relu"), n("gap1", "GlobalAvgPool", "act3"),
        dense("dense1", "gap1", 10)), ("dense1",)),),
    "train_loop_call": (Expected((4, 7), (
        inp(28, 28, 1), conv("conv1", "input", 16, 3), act("act1", "conv1", "relu"), n("flatten1", "Flatten", "act1"),
        dense("dense1", "flatten1", 10)), ("dense1",), {"type": "Adam", "learning_rate": 0.001},
        "sparse_categorical_crossentropy"),),
    "augmentation": (Expected((5, 12), (
        inp(64, 64, 3), n("identity1", "Identity", "input"), n("identity2", "Identity", "identity1"),
        n("identity3", "Identity", "identity2"),
        n("sepconv1", "SeparableConv2D", "identity3", filters=16, kernel_size=3, padding="same"),
        act("act1", "sepconv1", "relu"), n("gap1", "GlobalAvgPool", "act1"), dense("dense1", "gap1", 4),
        act("act2", "dense1", "softmax")), ("act2",)),),
    # Keras's parameter-free transforms (nas.mining.keras_transforms); tests/test_mining_wild.py.
    "rescaling": (
        Expected((7, 12), (
            inp(32, 32, 3), n("rescale1", "Rescaling", "input", scale=1 / 255),
            conv("conv1", "rescale1", 16, 3, "same"), act("act1", "conv1", "relu"),
            n("maxpool1", "MaxPool2D", "act1", pool_size=2), n("flatten1", "Flatten", "maxpool1"),
            dense("dense1", "flatten1", 5)), ("dense1",)),
        Expected((15, 19), (
            inp(32, 32, 3), n("rescale1", "Rescaling", "input", scale=1 / 127.5, offset=-1.0),
            conv("conv1", "rescale1", 8, 3), act("act1", "conv1", "relu"), n("gap1", "GlobalAvgPool", "act1"),
            dense("dense1", "gap1", 2), act("act2", "dense1", "softmax")), ("act2",))),
    "relu_family": (Expected((9, 21), (
        inp(32, 32, 3), n("rescale1", "Rescaling", "input", scale=1 / 255),
        conv("conv1", "rescale1", 8, 3, "same", strides=2, use_bias=False), n("bn1", "BatchNorm", "conv1"),
        act("act1", "bn1", "relu6"), n("dwconv1", "DepthwiseConv2D", "act1", kernel_size=3, padding="same"),
        act("act2", "dwconv1", "relu6"), conv("conv2", "act2", 16, 1), act("act3", "conv2", "relu6"),
        n("relu1", "ReLU", "act3", max_value=6.0, negative_slope=0.1), conv("conv3", "relu1", 16, 3, "same"),
        n("relu2", "ReLU", "conv3", negative_slope=0.3), n("gap1", "GlobalAvgPool", "relu2"),
        dense("dense1", "gap1", 4), act("act4", "dense1", "softmax")), ("act4",)),),
    "reshape_upsampling": (Expected((8, 20), (
        inp(16, 16, 3), conv("conv1", "input", 8, (3, 3), "same"), act("act1", "conv1", "relu"),
        n("maxpool1", "MaxPool2D", "act1", pool_size=(2, 2)), conv("conv2", "maxpool1", 8, (3, 3), "same"),
        act("act2", "conv2", "relu"), n("upsample1", "UpSampling2D", "act2", size=(2, 2)),
        n("concat1", "Concat", "act1", "upsample1"), n("gap1", "GlobalAvgPool", "concat1"),
        dense("dense1", "gap1", 16), act("act3", "dense1", "sigmoid"),
        n("reshape1", "Reshape", "act3", target_shape=(1, 1, 16)), conv("conv3", "reshape1", 4, (1, 1)),
        act("act4", "conv3", "relu"), n("upsample2", "UpSampling2D", "act4"), n("flatten1", "Flatten", "upsample2"),
        n("reshape2", "Reshape", "flatten1", target_shape=(-1,)), dense("dense2", "reshape2", 10),
        act("act5", "dense2", "softmax")), ("act5",)),),
    "input_signature": (Expected((8, 19), (
        inp(28, 28, 1), conv("conv1", "input", 32, 3), act("act1", "conv1", "relu"), n("flatten1", "Flatten", "act1"),
        dense("dense1", "flatten1", 10), act("act2", "dense1", "softmax")), ("act2",)),),
    "layer_build": (
        Expected((13, 23), (
            inp(8, 8, 2), conv("conv1", "input", 4, 3), act("act1", "conv1", "relu"),
            n("flatten1", "Flatten", "act1"), dense("dense1", "flatten1", 2), act("act2", "dense1", "softmax")),
            ("act2",)),
        # The outer block's build() sees the inner block's output, whose width is not known statically.
        Expected((13, 26), None, complete=False, layers=(
            ("input", "Input", "Input", ()), ("conv1", "Conv2D", "Conv2D", ("input",)),
            ("act1", "Activation", "Activation", ("conv1",)), ("conv2", "Conv2D", "Conv2D", ("act1",)),
            ("act2", "Activation", "Activation", ("conv2",)), ("flatten1", "Flatten", "Flatten", ("act2",)),
            ("dense1", "Dense", "Dense", ("flatten1",))), unresolved=("input_shape[-1] * self.factor",)),
    ),
    # Dense(None) is rejected by Keras: the builder's None default is overridden by a caller the file lacks.
    "none_default": (Expected((5, 9), None, complete=False, layers=(
        ("input", "Input", "Input", ()), ("conv1", "Conv2D", "Conv2D", ("input",)),
        ("act1", "Activation", "Activation", ("conv1",)), ("flatten1", "Flatten", "Flatten", ("act1",)),
        ("dense1", "Dense", "Dense", ("flatten1",)), ("act2", "Activation", "Activation", ("dense1",))),
        unresolved=("None",)),),
    "library": (Expected((7, 10), None, complete=False, layers=(
        ("input", "InputLayer", "Input", ()), ("conv1", "Conv2D", "Conv2D", ("input",)),
        ("act1", "Activation", "Activation", ("conv1",)), ("flatten1", "Flatten", "Flatten", ("act1",)),
        ("dense1", "Dense", "Dense", ("flatten1",)), ("act2", "Activation", "Activation", ("dense1",))),
        unresolved=("num_classes",)),),
    "unresolved_classes": (Expected((10, 13), None, complete=False, layers=(
        ("input", "InputLayer", "Input", ()), ("conv1", "Conv2D", "Conv2D", ("input",)),
        ("act1", "Activation", "Activation", ("conv1",)), ("flatten1", "Flatten", "Flatten", ("act1",)),
        ("dense1", "Dense", "Dense", ("flatten1",)), ("act2", "Activation", "Activation", ("dense1",))),
        unresolved=("X.shape[1:]", "num_classes")),),
    "unknown_loop": (Expected((7, 12), None, complete=False, layers=(
        ("input", "InputLayer", "Input", ()), ("conv1", "Conv2D", "Conv2D", ("input",)),
        ("act1", "Activation", "Activation", ("conv1",)), ("conv2", "Conv2D", "Conv2D", ("act1",)),
        ("act2", "Activation", "Activation", ("conv2",)), ("flatten1", "Flatten", "Flatten", ("act2",)),
        ("dense1", "Dense", "Dense", ("flatten1",)), ("act3", "Activation", "Activation", ("dense1",))),
        unresolved=("range(depth)",)),),
    # PReLU has no IR op (it has weights); the IR's UpSampling2D is nearest-neighbour only.
    "unsupported_layer": (Expected((5, 10), None, supported=False, layers=(
        ("input", "InputLayer", "Input", ()), ("conv1", "Conv2D", "Conv2D", ("input",)),
        ("prelu1", "PReLU", None, ("conv1",)), ("upsampling2d1", "UpSampling2D", None, ("prelu1",)),
        ("flatten1", "Flatten", "Flatten", ("upsampling2d1",)), ("dense1", "Dense", "Dense", ("flatten1",)),
        ("act1", "Activation", "Activation", ("dense1",)))),),
    "application": (Expected((6, 9), None, complete=False, supported=False, layers=(
        ("input", "Input", "Input", ()), ("vgg161", "VGG16", None, ("input",)),
        ("flatten1", "Flatten", "Flatten", ("vgg161",)), ("dense1", "Dense", "Dense", ("flatten1",)),
        ("act1", "Activation", "Activation", ("dense1",)))),),
}

# Files with no model, and the status and reason each ends in.
OUTCOMES = {
    "no_model": (NO_MODEL, "no model built", True),
    "not_keras": (NOT_KERAS, "no keras import", False),
    "syntax_error": (SYNTAX_ERROR, "syntax error at line 3", True),
    "python2": (PYTHON2, "Python 2 source (a print statement at line 6)", True),
}


def _mine(name: str) -> MineResult:
    path = FIXTURES / f"{name}.py"
    return mine_source(path.read_bytes(), f"{name}.py")


def test_every_fixture_has_expectations():
    names = {p.stem for p in FIXTURES.glob("*.py")}
    assert names == set(EXPECTED) | set(OUTCOMES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_models_are_mined_exactly(name):
    result = _mine(name)
    assert result.status == OK and result.reason == ""
    assert result.path == f"{name}.py"
    expected = EXPECTED[name]
    assert len(result.models) == len(expected)
    for model, truth in zip(result.models, expected):
        assert (model.provenance.first_line, model.provenance.last_line) == truth.lines
        assert model.provenance.path == f"{name}.py"
        assert model.optimizer == truth.optimizer
        assert model.loss == truth.loss
        assert (model.complete, model.supported) == (truth.complete, truth.supported)
        if truth.nodes is None:
            assert model.arch is None
            assert [(l.id, l.keras, l.op, l.inputs) for l in model.layers] == list(truth.layers)
            assert model.unresolved == truth.unresolved
            continue
        assert model.arch is not None, model.issues
        assert model.arch.nodes == truth.nodes
        assert model.arch.inputs == ("input",)
        assert model.arch.outputs == truth.outputs
        assert model.unresolved == ()
        model.arch.validate()
        # The layer records agree with the IR node for node.
        assert [(l.id, l.op, l.inputs, l.attrs) for l in model.layers] == \
            [(nd.id, nd.op, nd.inputs, nd.attrs) for nd in truth.nodes]


def test_the_same_network_written_two_ways_has_one_canonical_hash():
    (sequential,) = _mine("sequential_add").models
    (functional,) = _mine("duplicate").models
    assert sequential.arch.nodes != functional.arch.nodes  # (3, 3) vs 3, pool_size 2 vs (2, 2)
    assert sequential.arch.structural_hash() == functional.arch.structural_hash()


def test_layer_lines_point_at_the_layer_calls():
    (model,) = _mine("keras1").models
    assert [layer.line for layer in model.layers] == [10, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    (model,) = _mine("helper_function").models
    # conv_block's layer is defined on line 7, inside the helper.
    assert {layer.id: layer.line for layer in model.layers}["conv2"] == 7


def test_unresolved_values_are_markers_never_guesses():
    (model,) = _mine("unresolved_classes").models
    layers = {layer.id: layer for layer in model.layers}
    assert layers["input"].unresolved == (("input_shape", "X.shape[1:]"),)
    assert "shape" not in layers["input"].attrs
    assert layers["dense1"].unresolved == (("units", "num_classes"),)
    assert "units" not in layers["dense1"].attrs
    assert "dense1: units unresolved (num_classes)" in model.issues
    (model,) = _mine("unknown_loop").models
    repeated = [layer.id for layer in model.layers if ("repeat", "range(depth)") in layer.unresolved]
    assert repeated == ["conv2", "act2"]
    (model,) = _mine("library").models
    assert {layer.id: layer.unresolved for layer in model.layers}["dense1"] == (("units", "num_classes"),)
    # The input shape came from the default argument, so it is known.
    assert {layer.id: layer.attrs for layer in model.layers}["input"]["shape"] == (28, 28, 1)


def test_unresolved_optimizer_arguments_are_markers():
    source = ("import sys\nfrom keras.models import Sequential\nfrom keras.layers import Conv2D, Flatten, Dense\n"
              "from keras.optimizers import SGD\nlr = float(sys.argv[1])\n"
              "m = Sequential([Conv2D(4, 3, activation='relu', input_shape=(8, 8, 1)), Flatten(), Dense(2)])\n"
              "m.compile(optimizer=SGD(lr=lr, momentum=0.5), loss='mse')\n")
    (model,) = mine_source(source).models
    assert model.optimizer == {"type": "SGD", "learning_rate": {"unresolved": "lr"}, "momentum": 0.5}
    assert model.unresolved == ("lr",)
    assert model.arch is not None and model.complete


def test_unsupported_layers_stay_in_the_model_with_a_note():
    (model,) = _mine("unsupported_layer").models
    notes = {layer.id: layer.note for layer in model.layers if layer.op is None}
    assert notes == {"prelu1": "the IR has no op for Keras layer PReLU",
                     "upsampling2d1": "interpolation='bilinear' has no IR equivalent"}
    assert {layer.id: dict(layer.attrs) for layer in model.layers}["upsampling2d1"] == {
        "size": (2, 2), "interpolation": "bilinear"}


def test_channels_first_inputs_are_stored_channels_last_with_a_note():
    declared, undeclared = _mine("channels_first").models
    assert any("channels-first" in issue for issue in declared.issues)
    assert any("read channels-first" in issue for issue in undeclared.issues)


def test_intent_of_a_mined_model():
    (model,) = _mine("sequential_add").models
    intent = model_intent(model)
    assert (intent.height, intent.width, intent.channels, intent.classes, intent.task) == \
        (32, 32, 3, 10, "classification")
    (model,) = _mine("optimizer_adam_named").models
    assert model_intent(model).task == "regression"


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_files_without_models_say_why(name):
    status, reason, imports_keras = OUTCOMES[name]
    result = _mine(name)
    assert result.models == ()
    assert result.status == status
    assert result.reason.startswith(reason)
    assert result.imports_keras == imports_keras


@pytest.mark.parametrize("data, status, reason", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", BINARY, "binary data"),
    (bytes(range(128, 256)) * 8, BINARY, "binary data"),
    ("import keras\x00", BINARY, "binary data"),
    (12345, NOT_TEXT, "expected source text, got int"),
    ("import keras\n" + "#" * MAX_SOURCE_CHARS, TOO_LARGE, f"{MAX_SOURCE_CHARS + 13} characters"),
    ("import keras\nexcept_here(:\n", SYNTAX_ERROR, "syntax error at line 2"),
    ("import keras\ntry:\n    pass\nexcept ValueError, e:\n    pass\n", PYTHON2, "Python 2 source ('except E, name:'"),
    ("import keras\nx = 0777\n", PYTHON2, "Python 2 source (an old-style octal literal at line 2)"),
    ("import keras\nif 1 <> 2: pass\n", PYTHON2, "Python 2 source (the <> operator at line 2)"),
    ("", NOT_KERAS, "no keras import"),
    ("import keras\n" + "(" * 5000 + ")" * 5000 + "\n", SYNTAX_ERROR, ""),
])
def test_bad_input_gets_a_status_and_a_reason(data, status, reason):
    result = mine_source(data, "junk.py")
    assert result.models == ()
    assert result.status == status
    assert result.reason.startswith(reason) and result.reason


def test_byte_order_mark_and_coding_cookie_are_honoured():
    text = (FIXTURES / "sequential_add.py").read_text()
    plain = _mine("sequential_add").models
    assert mine_source(b"\xef\xbb\xbf" + text.encode()).models[0].arch.nodes == plain[0].arch.nodes
    latin1 = ("# -*- coding: latin-1 -*-\n# caf\xe9\n" + text).encode("latin-1")
    (model,) = mine_source(latin1).models
    assert model.arch.nodes == plain[0].arch.nodes
    assert model.provenance.first_line == plain[0].provenance.first_line + 2


# --------------------------------------------------------------------------- fuzzing
_TOKENS = (
    "import keras", "from keras.layers import *", "from keras.models import Sequential, Model",
    "import tensorflow as tf",
    "model", "x", "=", "Sequential()", "Model(x, y)", ".add(", "Conv2D(", "Dense(", "Input(shape=(", "Flatten()",
    "Activation('relu')", "(x)", "[", "]", "(", ")", ",", ":", "\n", "    ", "for i in range(", "while ", "if ",
    "else:", "def f(", "class C(", "return ", "lambda ", "yield ", "*", "**", "-1", "3", "0.5", "'same'", "None",
    "True", "model.compile(optimizer=", "SGD(lr=", "Adam(", "globals()", "x.shape[1:]", "1e308", "2 ** 4096",
    "f(f)", "self", "super().__init__()", "@", "async ", "await ", "try:", "except:", "raise ", "with ", "del ",
    "import sys", "sys.argv", "concatenate([", "add([", "#", "\"\"\"", "\\", "print ", "exec ", "`", "<>",
)


def _fixture_texts() -> list[str]:
    return [p.read_text() for p in sorted(FIXTURES.glob("*.py"))]


@st.composite
def _mutated_fixtures(draw) -> str:
    """A fixture with lines and characters deleted, duplicated, swapped or replaced."""
    texts = _fixture_texts()
    lines = texts[draw(st.integers(0, len(texts) - 1))].splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(("delete", "duplicate", "swap", "char_delete", "char_insert", "char_swap")))
        if edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(j, lines[i])
        elif edit == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            line = lines[i]
            if edit == "char_delete":
                lines[i] = line[:k] + line[k + 1:]
            elif edit == "char_insert":
                lines[i] = line[:k] + draw(st.sampled_from("()[]:,=.'\"\\#\t 0x")) + line[k:]
            else:
                m = draw(st.integers(0, len(line) - 1))
                chars = list(line)
                chars[k], chars[m] = chars[m], chars[k]
                lines[i] = "".join(chars)
    return "".join(lines)


_SOURCES = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300),
    st.lists(st.sampled_from(_TOKENS), max_size=60).map(" ".join),
    st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join),
    _mutated_fixtures(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_SOURCES)
def test_the_miner_never_raises(source):
    result = mine_source(source, "fuzz.py")
    assert isinstance(result, MineResult)
    assert result.status in STATUSES
    # The last-resort handler is for miner bugs; none may be reachable.
    assert result.status != INTERNAL_ERROR, result.reason
    assert bool(result.models) == (result.status == OK)
    if not result.models:
        assert result.reason
    for model in result.models:
        assert model.provenance.first_line <= model.provenance.last_line
        if model.arch is not None:
            model.arch.validate()
            model.arch.structural_hash()


# --------------------------------------------------------------------------- funnel, CLI, zoo
def _corpus(tmp_path: pathlib.Path) -> pathlib.Path:
    """Two repositories built from the fixtures, with a manifest naming one of them."""
    root = tmp_path / "corpus"
    for repo, names in (("alpha", ("sequential_add", "duplicate", "if_else", "library", "python2", "not_keras")),
                        ("beta", ("merges_add", "unsupported_layer", "input_layer", "syntax_error"))):
        (root / repo / "src").mkdir(parents=True)
        for name in names:
            shutil.copy(FIXTURES / f"{name}.py", root / repo / "src" / f"{name}.py")
    (root / "beta" / "blob.py").write_bytes(b"\x00\x01binary")
    (root / "manifest.json").write_text(json.dumps({"alpha": {"repo": "owner/alpha", "commit": "a" * 40}}))
    return root


def test_funnel_counts_each_stage(tmp_path):
    report = mine_corpus(python_files(str(_corpus(tmp_path))))
    # files: 6 + 5; Keras files: all but not_keras and the binary blob.
    # models: sequential_add 1, duplicate 1, if_else 2, library 1, merges_add 1, unsupported_layer 1,
    # input_layer 3 = 10. Complete: all but library (unresolved units) and input_layer's last two = 7.
    # Supported: not unsupported_layer = 6. Unique: duplicate has sequential_add's hash = 5.
    funnel = report.funnel
    assert (funnel.files, funnel.keras_files, funnel.models, funnel.complete, funnel.supported, funnel.unique) == \
        (11, 9, 10, 7, 6, 5)
    assert report.statuses == {BINARY: 1, NOT_KERAS: 1, OK: 7, PYTHON2: 1, SYNTAX_ERROR: 1}
    by_path = {e.provenance.path: e for e in report.entries}
    # Files are read in sorted order, so duplicate.py keeps the hash it shares with sequential_add.py.
    assert set(by_path) == {"src/duplicate.py", "src/if_else.py", "src/merges_add.py", "src/input_layer.py"}
    first = by_path["src/duplicate.py"]
    assert (first.provenance.repo, first.provenance.commit) == ("owner/alpha", "a" * 40)
    assert by_path["src/merges_add.py"].provenance.repo == "beta"
    assert by_path["src/merges_add.py"].provenance.commit is None


def test_nas_mine_prints_the_funnel_and_fills_the_zoo(tmp_path, capsys):
    corpus, db, jsonl = _corpus(tmp_path), tmp_path / "zoo.sqlite", tmp_path / "zoo.jsonl"
    assert nas_mine([str(corpus), "--db", str(db), "--jsonl", str(jsonl)]) == 0
    out = capsys.readouterr().out
    rows = dict(line.rsplit(None, 1) for line in out.splitlines()[:6])
    assert {k.strip(): int(v) for k, v in rows.items()} == {
        "files": 11, "keras files": 9, "models": 10, "complete models": 7, "supported-layer models": 6,
        "unique models": 5}
    assert "5 new model(s), 5 in all" in out
    entries = read_zoo(db)
    assert len(entries) == 5 and len({e.hash for e in entries}) == 5
    assert [e.to_dict() for e in read_jsonl(jsonl)] == [e.to_dict() for e in entries]
    for entry in entries:
        assert entry.hash == entry.arch.structural_hash()
        assert entry.complete and entry.supported
    # A second run adds nothing: records are keyed by canonical hash.
    assert nas_mine([str(corpus), "--db", str(db)]) == 0
    assert "0 new model(s), 5 in all" in capsys.readouterr().out


def test_nas_mine_reports_bad_arguments(tmp_path, capsys):
    assert nas_mine([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    not_a_zoo = tmp_path / "junk.sqlite"
    not_a_zoo.write_bytes(b"this is not sqlite" * 100)
    (tmp_path / "repo").mkdir()
    assert nas_mine([str(tmp_path / "repo"), "--db", str(not_a_zoo)]) == 2
    assert "is not a model zoo" in capsys.readouterr().err


def test_zoo_records_hold_no_source_text(tmp_path):
    (model,) = _mine("keras1").models
    path = tmp_path / "zoo.jsonl"
    export_jsonl([model], path)
    record = path.read_text()
    for fragment in ("Convolution2D", "border_mode", "model.add", "nb_filters"):
        assert fragment not in record
    (entry,) = read_jsonl(path)
    assert entry.arch == model.arch and entry.optimizer == model.optimizer
    assert entry.provenance == model.provenance


def test_zoo_refuses_models_without_an_arch_and_foreign_files(tmp_path):
    (model,) = _mine("unknown_loop").models
    with pytest.raises(UnstorableModelError, match="unknown_loop.py:7"):
        zoo_entry(model)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hash": 1}\n')
    with pytest.raises(ZooFormatError, match="not a zoo record"):
        read_jsonl(bad)
    with pytest.raises(ZooFormatError, match="no zoo at"):
        read_zoo(tmp_path / "none.sqlite")
    assert write_zoo(tmp_path / "z.sqlite", []) == 0
    assert os.path.exists(tmp_path / "z.sqlite")


@pytest.mark.parametrize("expr, optimizer", [
    ("'adam'", {"type": "Adam"}),
    ("keras.optimizers.SGD(lr=0.01, momentum=0.9, decay=1e-6, nesterov=True)",
     {"type": "SGD", "learning_rate": 0.01, "momentum": 0.9, "decay": 1e-6, "nesterov": True}),
    ("keras.optimizers.RMSprop(learning_rate=0.002, rho=0.8)", {"type": "RMSprop", "learning_rate": 0.002, "rho": 0.8}),
    ("tf.optimizers.Adam(0.01)", {"type": "Adam", "learning_rate": 0.01}),
    ("tf.keras.optimizers.Adadelta()", {"type": "Adadelta"}),
])
def test_compiled_optimizers(expr, optimizer):
    source = ("import keras\nimport tensorflow as tf\n"
              "m = keras.Sequential([keras.layers.Conv2D(4, 3, activation='relu', input_shape=(8, 8, 1)),\n"
              "                      keras.layers.Flatten(), keras.layers.Dense(2, activation='softmax')])\n"
              f"m.compile(optimizer={expr}, loss='categorical_crossentropy')\n")
    (model,) = mine_source(source).models
    assert model.optimizer == optimizer


# --------------------------------------------------------------------------- the shipped seed zoo
def test_the_seed_zoo_holds_unique_complete_cnns_with_provenance():
    entries = load_seed_zoo()
    meta = seed_zoo_meta()
    funnel = meta["funnel"]
    assert funnel["files"] >= funnel["keras_files"]
    assert funnel["models"] >= funnel["complete"] >= funnel["supported"] >= funnel["unique"]
    hashes = [e.hash for e in entries]
    assert len(set(hashes)) == len(entries) == funnel["unique"] >= 200
    commits = {r["repo"]: r["commit"] for r in meta["repositories"]}
    for entry in entries:
        assert entry.hash == entry.arch.structural_hash()
        entry.arch.validate()
        assert entry.complete and entry.supported
        ops = {node.op for node in entry.arch.nodes}
        assert ops & {"Conv1D", "Conv2D", "SeparableConv2D", "DepthwiseConv2D"} and {"Activation", "Dense"} <= ops
        shape = entry.arch.input_node.attrs["shape"]
        assert entry.intent.channels == shape[-1]
        p = entry.provenance
        assert p.repo in commits and p.commit == commits[p.repo] and len(p.commit) == 40
        assert p.path and not p.path.startswith("/") and 1 <= p.first_line <= p.last_line


def test_the_seed_zoo_holds_no_source_text():
    raw = SEED_ZOO.read_text(encoding="utf-8")
    for fragment in ("import ", "model.add", "Sequential(", "def ", "Conv2D(", "compile("):
        assert fragment not in raw
    for line in raw.splitlines():
        assert set(json.loads(line)) == {"hash", "ir", "optimizer", "intent", "provenance", "complete", "supported"}


def test_the_seed_zoo_round_trips_through_sqlite(tmp_path):
    entries = load_seed_zoo()
    assert write_zoo(tmp_path / "zoo.sqlite", entries) == len(entries)
    assert [e.to_dict() for e in read_zoo(tmp_path / "zoo.sqlite")] == [e.to_dict() for e in entries]
    assert [e.hash for e in load_zoo(tmp_path / "zoo.sqlite")] == [e.hash for e in entries]


def _forward(entries) -> None:
    """Compiles each record to Flax, initialises it and runs a batch of two through it."""
    import jax
    import numpy as np

    from nas.compile import init_variables, to_flax

    for k, entry in enumerate(entries):
        shape = tuple(entry.arch.input_node.attrs["shape"])
        module = to_flax(entry.arch)
        variables = jax.jit(lambda key: init_variables(module, key, shape))(jax.random.key(k))
        if any(node.op == "Embedding" for node in entry.arch.nodes):
            x = jax.random.randint(jax.random.key(100 + k), (2, *shape), 0, 2)
        else:
            x = jax.random.normal(jax.random.key(100 + k), (2, *shape))
        y = jax.jit(module.apply)(variables, x)
        outputs = y if isinstance(y, tuple) else (y,)
        assert len(outputs) == len(entry.arch.outputs)
        for out, node_id in zip(outputs, entry.arch.outputs):
            assert out.shape == (2, *entry.arch.shapes()[node_id])
            assert np.all(np.isfinite(np.asarray(out)))


def _spread(max_flops: int, count: int) -> list:
    """``count`` records spread over the hash order, among those under ``max_flops``."""
    entries = sorted((e for e in load_seed_zoo() if e.arch.flops() < max_flops), key=lambda e: e.hash)
    sample = entries[::max(1, len(entries) // count)][:count]
    assert len(sample) == count
    return sample


def test_a_sample_of_the_seed_zoo_compiles_and_runs():
    _forward(_spread(5_000_000, 2))


@pytest.mark.slow
def test_a_wider_sample_of_the_seed_zoo_compiles_and_runs():
    _forward(_spread(200_000_000, 24))


def test_models_from_converted_notebooks_are_credited_to_the_notebook(tmp_path):
    repo = tmp_path / "corpus" / "nb"
    repo.mkdir(parents=True)
    shutil.copy(FIXTURES / "sequential_add.py", repo / "train.ipynb.py")
    (tmp_path / "corpus" / "manifest.json").write_text(json.dumps(
        {"nb": {"repo": "owner/nb", "commit": "b" * 40, "notebooks_converted": {"train.ipynb": "train.ipynb.py"}}}))
    (entry,) = mine_corpus(python_files(str(tmp_path / "corpus"))).entries
    assert (entry.provenance.repo, entry.provenance.path, entry.provenance.commit) == \
        ("owner/nb", "train.ipynb", "b" * 40)
