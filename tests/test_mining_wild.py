"""Construction styles seen in public Keras files outside the seed zoo's repositories.

experiments/results/miner_coverage.md measured the miner on a fresh sample of
such files; each style it widened the miner for has a hand-written fixture
under tests/fixtures/keras (its exact IR is in `tests/test_mining.EXPECTED`).
These tests check the properties each style is about, plus the shared
container walk of `nas.mining.values` and the coverage script.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from nas.mining import OK, mine_source
from nas.mining.interp_objects import _is_data
from nas.mining.keras_augmentation import AUGMENTATION_DROPPED
from nas.mining.values import MAX_VISITS, Unresolved, node_count, walk

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "keras"
REPO = pathlib.Path(__file__).parent.parent


def _models(name: str):
    result = mine_source((FIXTURES / f"{name}.py").read_bytes(), f"{name}.py")
    assert result.status == OK, result.reason
    return result.models


def _ops(model) -> list[str]:
    return [node.op for node in model.arch.nodes]


def test_a_model_called_on_data_in_a_training_loop_is_still_mined():
    # Before: `model(images, training=True)` counted as using the model as a layer, and the model vanished.
    (model,) = _models("train_loop_call")
    assert model.complete and model.arch is not None
    assert model.optimizer == {"type": "Adam", "learning_rate": 0.001}
    assert model.arch.shapes()["dense1"] == (10,)


def test_a_subclassed_model_called_on_data_is_still_traced():
    source = (FIXTURES / "input_signature.py").read_text() + "\nfor images in dataset:\n    model(images)\n"
    (model,) = mine_source(source, "x.py").models
    assert model.complete and _ops(model) == ["Input", "Conv2D", "Activation", "Flatten", "Dense", "Activation"]


def test_a_model_applied_to_a_keras_tensor_is_still_a_layer_of_the_outer_model():
    source = ("import tensorflow as tf\nfrom tensorflow.keras import layers\n"
              "inner = tf.keras.Sequential([layers.Dense(4, input_shape=(3,))])\n"
              "inp = tf.keras.Input(shape=(3,))\nouter = tf.keras.Model(inp, layers.Dense(2)(inner(inp)))\n")
    (model,) = mine_source(source, "x.py").models
    assert [node.attrs.get("units") for node in model.arch.nodes if node.op == "Dense"] == [4, 2]


def test_augmentation_layers_are_identity_and_say_what_was_left_out():
    (model,) = _models("augmentation")
    assert model.complete and model.supported
    augment = [layer for layer in model.layers if layer.op == "Identity"]
    assert [layer.keras for layer in augment] == ["RandomFlip", "RandomRotation", "RandomZoom"]
    assert all(AUGMENTATION_DROPPED in layer.dropped for layer in augment)
    shapes = model.arch.shapes()
    assert shapes["identity3"] == shapes["input"] == (64, 64, 3)
    assert shapes["sepconv1"] == (64, 64, 16)


def test_layers_that_change_values_at_inference_without_an_ir_op_stay_unsupported():
    source = ("from tensorflow.keras import layers, Sequential\n"
              "m = Sequential([layers.Rescaling(1. / 255, input_shape=(8, 8, 1)), layers.RandomCrop(4, 4),\n"
              "                layers.Conv2D(2, 3, activation='relu'), layers.Flatten(), layers.Dense(2)])\n")
    (model,) = mine_source(source, "x.py").models
    assert not model.supported and model.arch is None
    # Rescaling has an IR op (below); RandomCrop centre-crops at inference and has none.
    assert [layer.keras for layer in model.layers if layer.op is None] == ["RandomCrop"]


def test_custom_layer_blocks_in_a_sequential_are_traced_through_call():
    (model,) = _models("custom_layer_block")
    assert model.complete and model.supported
    adds = [node for node in model.arch.nodes if node.op == "Add"]
    # Each residual block adds its conv-bn branch to the block's own input.
    assert [node.inputs for node in adds] == [("bn1", "act1"), ("bn2", "act2")]
    shapes = model.arch.shapes()
    assert shapes["act3"] == (32, 32, 8) and shapes["dense1"] == (10,)
    assert not any(layer.keras.startswith("ResidualBlock") for layer in model.layers)


def test_input_signature_of_call_gives_the_input_shape():
    (model,) = _models("input_signature")
    assert model.complete
    assert model.arch.nodes[0].attrs["shape"] == (28, 28, 1)
    assert model.arch.shapes()["act2"] == (10,)


def test_a_custom_layers_build_sees_its_input_shape():
    known, unknown = _models("layer_build")
    # WideConv(2) on a (8, 8, 2) input builds Conv2D(2 * 2): Keras passes build() the input shape.
    assert [node.attrs["filters"] for node in known.arch.nodes if node.op == "Conv2D"] == [4]
    assert known.complete
    # WideConv(3) on the input builds 6 filters; the block after it cannot know its input width statically.
    assert unknown.layers[1].attrs["filters"] == 6
    assert not unknown.complete and unknown.unresolved == ("input_shape[-1] * self.factor",)


def test_a_required_argument_left_none_is_unresolved_not_complete():
    (model,) = _models("none_default")
    assert not model.complete and model.arch is None
    dense = next(layer for layer in model.layers if layer.keras == "Dense")
    assert dense.unresolved == (("units", "None"),)


def test_walk_yields_every_nested_item_once_per_occurrence():
    shared = [1, 2]
    value = {"a": (shared, shared), "b": {3}}
    items = list(walk(value))
    assert sum(1 for item in items if item is shared) == 2
    assert sorted(item for item in items if isinstance(item, int)) == [1, 1, 2, 2, 3]
    assert node_count(value) == len(items) == 12  # the dict, 2 keys, tuple, set, 2 lists, 5 ints


def test_walk_stops_at_its_limit_on_values_that_unfold_exponentially():
    doubling: list = []
    for _ in range(40):
        doubling = [doubling, doubling]
    assert len(list(walk(doubling, 100))) == 100
    assert node_count(doubling) is None
    assert node_count(list(range(MAX_VISITS - 1))) == MAX_VISITS
    assert node_count(list(range(MAX_VISITS))) is None


def test_is_data_still_tells_plain_values_from_keras_objects():
    assert _is_data({"filters": [32, 64], "name": "x", "shape": (None, 3), "u": Unresolved("n")})
    assert not _is_data([1, (2, object())])


def _coverage_module():
    spec = importlib.util.spec_from_file_location("miner_coverage", REPO / "experiments" / "miner_coverage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_coverage_script_reads_any_directory_of_python_files(tmp_path):
    for name in ("augmentation", "none_default", "not_keras"):
        (tmp_path / f"{name}.py").write_bytes((FIXTURES / f"{name}.py").read_bytes())
    report = _coverage_module().coverage(str(tmp_path))
    rows = {row["file"]: row for row in report["rows"]}
    assert (rows["augmentation.py"]["models"], rows["augmentation.py"]["zoo_ready"]) == (1, 1)
    assert rows["none_default.py"]["reasons"] == ["unresolved Dense.units"]
    assert rows["not_keras.py"]["status"] == "not_keras"
    totals = report["totals"]
    assert (totals["files"], totals["files_with_model"], totals["models"], totals["zoo_ready"]) == (3, 2, 2, 1)
    assert report["reasons"] == {"unresolved Dense.units": 1, "file: no keras import": 1}


# --------------------------------------------------------------------------- modules of the file's repository
SIBLING_REPO = FIXTURES / "sibling_config"


def _mine_in_repo(root: pathlib.Path, relpath: str):
    from nas.mining import SourceFile, mine_file
    return mine_file(SourceFile(str(root / relpath), relpath))


def test_constants_imported_from_the_repositorys_own_modules_are_read():
    (model,) = _mine_in_repo(SIBLING_REPO, "models/cnn.py").models
    assert model.complete and model.supported, model.issues
    nodes = {node.id: node for node in model.arch.nodes}
    assert nodes["input"].attrs["shape"] == (48, 48, 1)          # (*IMAGE_SIZE, CHANNELS) from settings.py
    assert [nodes[i].attrs["filters"] for i in ("conv1", "conv2")] == [16, 32]  # BASE_FILTERS, BASE_FILTERS * 2
    assert nodes["dropout1"].attrs["rate"] == 0.25               # from .blocks import DROPOUT
    assert nodes["dense1"].attrs["units"] == 4                   # NUM_CLASSES = len(CLASSES)


def test_without_the_repository_those_names_stay_unresolved():
    (model,) = mine_source((SIBLING_REPO / "models" / "cnn.py").read_text(), "models/cnn.py").models
    assert not model.complete
    assert set(model.unresolved) >= {"(*IMAGE_SIZE, CHANNELS)", "NUM_CLASSES", "DROPOUT"}


def test_a_sibling_module_is_never_run_and_lends_only_plain_constants(tmp_path):
    (tmp_path / "config.py").write_text(
        "import keras\nWIDTH = 8\nhead = keras.Sequential([keras.layers.Dense(3, input_shape=(4,))])\n"
        "def width():\n    return 99\nSIZE = width()\nwhile True:\n    WIDTH = 1\n")
    (tmp_path / "model.py").write_text(
        "from keras import layers, models\nfrom config import WIDTH, SIZE, head\n"
        "m = models.Sequential([layers.Conv2D(WIDTH, 3, activation='relu', input_shape=(SIZE, SIZE, 1)),\n"
        "                       layers.Flatten(), layers.Dense(2)])\n")
    result = _mine_in_repo(tmp_path, "model.py")
    (model,) = result.models  # the Sequential the config module writes is not built
    assert model.layers[1].attrs["filters"] == 8  # the `while True` after WIDTH = 8 is not run
    assert model.unresolved == ("SIZE",)  # width() is not called


def test_modules_outside_the_repository_are_not_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.py").write_text("WIDTH = 8\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.py").symlink_to(outside / "config.py")
    (repo / "model.py").write_text(
        "from keras import layers, models\nfrom config import WIDTH\n"
        "m = models.Sequential([layers.Dense(WIDTH, input_shape=(3,))])\n")
    (model,) = _mine_in_repo(repo, "model.py").models
    assert model.unresolved == ("WIDTH",)


# ---------------------------------------------------------------------------- Keras's parameter-free transforms
def _one_layer(layer: str, imports: str = "from tensorflow.keras import layers, Sequential\n", shape=(8, 8, 4)):
    """The mined model of Sequential([Conv2D, <layer>, Flatten, Dense]) and the node `layer` became."""
    source = (imports + f"m = Sequential([layers.Conv2D(4, 3, input_shape={shape!r}), {layer},\n"
              "                layers.Flatten(), layers.Dense(2)])\n")
    (model,) = mine_source(source, "x.py").models
    (layer_record,) = [record for record in model.layers if record.keras not in ("InputLayer", "Conv2D", "Flatten", "Dense")]
    return model, layer_record


def test_rescaling_heads_are_mined_with_their_scale_and_offset():
    plain, centred = _models("rescaling")
    assert plain.complete and centred.complete
    assert plain.arch.node("rescale1").op == "Rescaling" == centred.arch.node("rescale1").op
    assert dict(plain.arch.node("rescale1").attrs) == {"scale": 1 / 255}
    # layers.experimental.preprocessing.Rescaling(scale=, offset=) is the same layer.
    assert dict(centred.arch.node("rescale1").attrs) == {"scale": 1 / 127.5, "offset": -1.0}
    assert plain.arch.node("conv1").inputs == ("rescale1",)
    assert plain.arch.shapes()["rescale1"] == (32, 32, 3)


def test_a_per_channel_rescaling_has_no_ir_form():
    model, record = _one_layer("layers.Rescaling([0.5, 0.25, 0.125, 1.0])")
    assert record.op is None and "per-channel" in record.note
    assert not model.supported and model.arch is None


@pytest.mark.parametrize("layer, op, attrs", [
    ("layers.ReLU()", "Activation", {"fn": "relu"}),
    ("layers.ReLU(6.0)", "Activation", {"fn": "relu6"}),
    ("layers.ReLU(max_value=6)", "Activation", {"fn": "relu6"}),
    ("layers.LeakyReLU(alpha=0.2)", "Activation", {"fn": "leaky_relu"}),
    ("layers.LeakyReLU()", "ReLU", {"negative_slope": 0.3}),  # Keras's layer default, not leaky_relu's 0.2
    ("layers.LeakyReLU(negative_slope=0.1)", "ReLU", {"negative_slope": 0.1}),
    ("layers.ReLU(max_value=1.0, threshold=0.5)", "ReLU", {"max_value": 1.0, "threshold": 0.5}),
    ("layers.ReLU(6.0, 0.1)", "ReLU", {"max_value": 6.0, "negative_slope": 0.1}),
    ("layers.Activation('relu6')", "Activation", {"fn": "relu6"}),
    ("layers.Activation(tf.nn.relu6)", "Activation", {"fn": "relu6"}),
])
def test_the_relu_family_is_mined_in_its_most_specific_ir_form(layer, op, attrs):
    model, record = _one_layer(layer, "import tensorflow as tf\nfrom tensorflow.keras import layers, Sequential\n")
    assert model.complete and model.arch is not None, model.issues
    assert (record.op, dict(record.attrs)) == (op, attrs)
    assert dict(model.arch.node(record.id).attrs) == attrs


@pytest.mark.parametrize("layer, note", [
    ("layers.ReLU(max_value=-1.0)", "Keras refuses a negative max_value"),
    ("layers.LeakyReLU(alpha=-0.1)", "Keras refuses a negative negative_slope"),
    ("layers.UpSampling2D(interpolation='bilinear')", "interpolation='bilinear' has no IR equivalent"),
    ("layers.Reshape((-1, -1))", "one -1 at most"),
])
def test_transform_arguments_the_ir_cannot_express_leave_the_layer_unsupported(layer, note):
    model, record = _one_layer(layer)
    assert record.op is None and note in record.note
    assert model.arch is None


def test_inline_relu6_activations_of_a_mobilenet_block():
    (model,) = _models("relu_family")
    assert model.complete
    fns = {node.id: node.attrs["fn"] for node in model.arch.nodes if node.op == "Activation"}
    # ReLU(6.0) after BatchNorm, activation=tf.nn.relu6 on a depthwise conv, activation="relu6".
    assert [fns[i] for i in ("act1", "act2", "act3")] == ["relu6"] * 3
    assert model.arch.node("act2").inputs == ("dwconv1",)


def test_reshape_and_upsampling_are_mined_with_shapes_keras_gives():
    (model,) = _models("reshape_upsampling")
    assert model.complete
    shapes = model.arch.shapes()
    assert shapes["upsample1"] == shapes["act1"] == (16, 16, 8)  # back to the first branch's grid
    assert shapes["reshape1"] == (1, 1, 16) and shapes["upsample2"] == (2, 2, 4)
    assert shapes["reshape2"] == (16,)  # Reshape((-1,)) infers the size
    assert dict(model.arch.node("upsample2").attrs) == {}  # Keras's default size (2, 2) is the IR's


def test_a_reshape_whose_size_is_computed_from_data_is_unresolved():
    model, record = _one_layer("layers.Reshape((1, X.shape[1]))", "from tensorflow.keras import layers, Sequential\n"
                               "import numpy as np\nX = np.load('x.npy')\n")
    assert record.op == "Reshape" and record.unresolved
    assert model.arch is None and not model.complete


def test_a_reshape_in_a_channels_first_model_is_refused():
    # The IR holds the data channels-last; a Keras Reshape of channels-first data lays out another order.
    source = ("from keras.models import Sequential\nfrom keras.layers import Conv2D, Reshape, Flatten, Dense\n"
              "m = Sequential([Conv2D(4, 3, input_shape=(3, 8, 8), data_format='channels_first'),\n"
              "                Reshape((4, 36)), Flatten(), Dense(2)])\n")
    (model,) = mine_source(source, "x.py").models
    (record,) = [layer for layer in model.layers if layer.keras == "Reshape"]
    assert record.op is None and "channels-first" in record.note
    assert model.arch is None
