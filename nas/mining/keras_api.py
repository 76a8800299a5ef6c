"""Which Keras API a dotted name denotes, and whether a file imports Keras.

Keras is reached under several roots: ``keras`` (standalone Keras 1/2/3),
``tensorflow.keras``, ``tensorflow.python.keras``, ``tf_keras`` and
``tf.keras`` through ``import tensorflow as tf``. `keras_path` folds them into
one ``keras.*`` path plus a flavour (``"keras"`` or ``"tf"``) that settles the
two places where their positional arguments differ; `classify` says what a
path names: a layer, a model constructor, an optimizer, a backend setting...
"""

from __future__ import annotations

import ast
import dataclasses
import re

from nas.mining.keras_layers import KNOWN_ACTIVATIONS, LAYER_NAMES, MERGE_FUNCTIONS
from nas.mining.optimizers import optimizer_type

TRACKED_ROOTS = frozenset({"keras", "tensorflow", "tf_keras"})

SEQUENTIAL, MODEL, INPUT, LAYER, MERGE_FUNCTION, OPTIMIZER = (
    "sequential", "model", "input", "layer", "merge_function", "optimizer")
APPLICATION, BACKEND_CONFIG, ACTIVATION_FUNCTION, CONCAT_FUNCTION, ADD_FUNCTION = (
    "application", "backend_config", "activation_function", "concat_function", "add_function")
LOADED_MODEL, OTHER = "loaded_model", "other"

_BACKEND_CONFIG = frozenset({"image_data_format", "image_dim_ordering", "set_image_data_format",
                             "set_image_dim_ordering"})
_LOADERS = frozenset({"load_model", "model_from_json", "model_from_yaml", "clone_model"})
# Names a star import from a Keras module can bring in.
STAR_NAMES = LAYER_NAMES | frozenset(MERGE_FUNCTIONS) | frozenset(
    {"Sequential", "Model", "Input", "merge", "SGD", "Adam", "RMSprop", "Adagrad", "Adadelta", "Adamax",
     "Nadam", "Ftrl", "AdamW"})


@dataclasses.dataclass(frozen=True)
class ApiName:
    """What a dotted name denotes.

    Attributes:
      category: one of the module's category constants (`LAYER`, `OPTIMIZER`...).
      name: the final name (``Conv2D``, ``SGD``, ``relu``...).
      flavour: ``"keras"`` for standalone Keras, ``"tf"`` for tf.keras and
        TensorFlow itself.
    """

    category: str
    name: str
    flavour: str


def keras_path(path: tuple[str, ...]) -> tuple[tuple[str, ...], str] | None:
    """A dotted path under one of Keras's roots -> (``keras.*`` path, flavour); None otherwise."""
    if not path:
        return None
    if path[0] == "keras":
        return path, "keras"
    if path[0] == "tf_keras":
        return ("keras",) + path[1:], "tf"
    if path[0] == "tensorflow":
        rest = path[1:]
        if rest[:2] in (("compat", "v1"), ("compat", "v2")):
            rest = rest[2:]
        if rest[:1] == ("python",):
            rest = rest[1:]
        if rest[:1] == ("keras",):
            return ("keras",) + rest[1:], "tf"
        if rest[:1] == ("optimizers",):  # TF 2 exports tf.keras.optimizers as tf.optimizers too
            return ("keras",) + rest, "tf"
    return None


def classify(path: tuple[str, ...]) -> ApiName:
    """What a dotted path under a tracked root (keras, tensorflow) names.

    Args:
      path: the full dotted path, e.g. ``("tensorflow", "keras", "layers", "Conv2D")``.
    Returns:
      The `ApiName`; category `OTHER` for anything the miner has no rule for.
    """
    name = path[-1] if path else ""
    normal = keras_path(path)
    if normal is None:
        return ApiName(_classify_tensorflow(path), name, "tf")
    kpath, flavour = normal
    parents = kpath[1:-1]
    if len(kpath) == 1:
        category = OTHER
    elif name == "Sequential":
        category = SEQUENTIAL
    elif name in ("Model", "Functional"):
        category = MODEL
    elif name == "Input":
        category = INPUT
    elif name in _BACKEND_CONFIG:
        category = BACKEND_CONFIG
    elif name in MERGE_FUNCTIONS or (name == "merge" and "layers" in parents):
        category = MERGE_FUNCTION
    elif "applications" in parents:
        category = APPLICATION if name[:1].isupper() else OTHER
    elif any(p.startswith("optimizer") for p in parents) and optimizer_type(name):
        category = OPTIMIZER
    elif name in KNOWN_ACTIVATIONS and any(p in ("activations", "backend", "ops", "nn") for p in parents):
        category = ACTIVATION_FUNCTION
    elif name in _LOADERS:
        category = LOADED_MODEL
    elif name in LAYER_NAMES or (parents[:1] == ("layers",) and name[:1].isupper()):
        category = LAYER
    elif optimizer_type(name) and name[:1].isupper() and not parents:
        category = OPTIMIZER
    else:
        category = OTHER
    return ApiName(category, name, flavour)


def _classify_tensorflow(path: tuple[str, ...]) -> str:
    if path[:1] != ("tensorflow",) or len(path) < 2:
        return OTHER
    name = path[-1]
    if name in KNOWN_ACTIVATIONS and path[1:2] in (("nn",), ("math",), (name,)):
        return ACTIVATION_FUNCTION
    if name in ("sigmoid", "tanh") and len(path) == 2:
        return ACTIVATION_FUNCTION
    if name == "concat" and len(path) == 2:
        return CONCAT_FUNCTION
    if name == "add" and path[1:] in (("add",), ("math", "add")):
        return ADD_FUNCTION
    return OTHER


def _module_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and not node.level and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def _is_keras_module(dotted: str) -> bool:
    return keras_path(tuple(dotted.split("."))) is not None


def imports_keras(tree: ast.AST) -> bool:
    """Whether a parsed file imports Keras: ``keras``, ``tensorflow.keras``, ``tf_keras``, or uses ``tf.keras``.

    The last case is an ``import tensorflow as tf`` followed by any ``tf.keras``
    attribute, the way many TensorFlow 2 programs reach Keras.
    """
    tf_names: set[str] = set()
    for node in ast.walk(tree):
        for dotted in _module_names(node):
            if _is_keras_module(dotted):
                return True
        if isinstance(node, ast.Import):
            tf_names.update(alias.asname or alias.name for alias in node.names if alias.name == "tensorflow")
    if not tf_names:
        return False
    return any(isinstance(node, ast.Attribute) and node.attr == "keras" and isinstance(node.value, ast.Name)
               and node.value.id in tf_names for node in ast.walk(tree))


_KERAS_IMPORT_LINE = re.compile(
    r"^[ \t]*(?:import[ \t]+(?:keras|tf_keras|tensorflow\.(?:python\.)?keras)\b"
    r"|from[ \t]+(?:keras|tf_keras|tensorflow\.(?:python\.)?keras)\b"
    r"|from[ \t]+tensorflow(?:\.python)?[ \t]+import[^\n]*\bkeras\b)"
    r"|\btf\.keras\.", re.MULTILINE)


def mentions_keras_import(text: str) -> bool:
    """A textual fallback of `imports_keras` for files Python 3 cannot parse (Python 2 sources)."""
    return _KERAS_IMPORT_LINE.search(text) is not None
