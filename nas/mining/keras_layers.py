"""The layer table: Keras layer names and their Keras 1/2 argument spellings -> IR ops.

One table (`SPECS`) drives the translation of every layer constructor call:
which IR op it becomes, which positional parameters it takes, how each
argument spelling (``nb_filter``, ``filters``; ``border_mode``, ``padding``;
``p``, ``rate``...) maps onto an IR attribute, which Keras defaults differ
from the IR's and must be written out (a Keras conv pads ``'valid'``, the IR
defaults to ``'same'``), and which argument values the IR cannot express.

`translate_layer` is pure: it takes evaluated argument values (constants,
`Unresolved` markers, `KerasObject`s, other `LayerCall`s) and returns a
`LayerCall`. A layer the IR has no op for still translates, with ``op=None``,
its Keras arguments kept as written in ``attrs`` and a ``note`` saying why.
An ``activation=`` argument becomes a separate activation `LayerCall` (Manas
section 4.4: an activation given as an argument is its own AbNN node).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Sequence

from nas.ir import ACTIVATIONS, OPS, Attrs
from nas.mining.keras_augmentation import AUGMENTATION_DROPPED, AUGMENTATION_LAYERS
from nas.mining.keras_transforms import TRANSFORM_LAYERS, ir_form
from nas.mining.values import KerasObject, Unresolved, render, unresolved_in

# Layer kinds: Manas's completeness test needs "conv", "activation" and "linear".
CONV, LINEAR, ACTIVATION, POOL, GLOBAL_POOL, MERGE, INPUT = (
    "conv", "linear", "activation", "pool", "global_pool", "merge", "input")
NORM, DROPOUT, RESHAPE, EMBEDDING, RECURRENT, OTHER, SOURCE = (
    "norm", "dropout", "reshape", "embedding", "recurrent", "other", "source")


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One Keras layer constructor call, translated towards the IR.

    Attributes:
      keras: the canonical Keras 2 class name (``Convolution2D`` -> ``Conv2D``).
      op: the IR op, or None when the IR has no op for this layer as configured.
      kind: the layer's role (`CONV`, `LINEAR`, `ACTIVATION`, ...), also for
        layers without an IR op, so completeness does not depend on support.
      attrs: IR attributes when ``op`` is set; the Keras arguments as written
        (positional ones under their parameter names) when it is None.
      unresolved: (argument, source text) for every argument whose value could
        not be computed; the attribute is then absent from ``attrs``.
      dropped: Keras arguments not carried into the IR (regularizers, names,
        initializers the IR does not know...), as ``name`` or ``name=value``.
      note: why ``op`` is None.
      activation: the separate activation node given by ``activation=``.
      input_shape: the per-example input shape the call declares
        (``input_shape``, ``batch_input_shape``, ``input_dim``, ``Input(shape)``),
        possibly holding `Unresolved` parts; None when it declares none.
      channels_first: True/False when the call (or the file's global setting)
        fixes the data format, None when it does not.
      keras_axis: the Keras axis (batch axis counted) of a BatchNormalization
        or Concatenate, converted to the IR by `nas.mining.assemble`, which
        knows the model's data format and shapes.
    """

    keras: str
    op: str | None
    kind: str
    attrs: Attrs = Attrs()
    unresolved: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    note: str = ""
    activation: "LayerCall | None" = None
    input_shape: Any = None
    channels_first: bool | None = None
    keras_axis: int | None = None

    def without_activation(self) -> "LayerCall":
        return dataclasses.replace(self, activation=None) if self.activation is not None else self


@dataclasses.dataclass(frozen=True)
class Requirement:
    """The only values of a Keras argument the IR op can express.

    Attributes:
      names: the argument's spellings.
      allowed: accepted values.
      default: Keras's default when the argument is omitted.
    """

    names: tuple[str, ...]
    allowed: tuple[Any, ...]
    default: Any


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """How one Keras layer class translates.

    Attributes:
      op: the IR op (None: the IR has no such layer).
      kind: the layer's role.
      positional: Keras 2 positional parameter names, in order.
      args: Keras argument spelling -> IR attribute, or a directive starting
        with ``@`` (``@activation``, ``@input_shape``, ``@axis``...).
      fixed: IR attributes written when the source omits them (Keras defaults
        that differ from the IR's, and the ``fn`` of activation layers).
      requires: argument values the op can express.
      legacy_positional: Keras 1 positional parameter names.
    """

    op: str | None
    kind: str
    positional: tuple[str, ...] = ()
    args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    requires: tuple[Requirement, ...] = ()
    legacy_positional: tuple[str, ...] = ()


_INPUT = {"input_shape": "@input_shape", "batch_input_shape": "@batch_input_shape",
          "batch_shape": "@batch_input_shape"}
_FORMAT = {"data_format": "@data_format", "dim_ordering": "@dim_ordering"}
_BIAS = {"use_bias": "use_bias", "bias": "use_bias", "bias_initializer": "bias_init"}
_CONV_ARGS = {
    **_INPUT, **_FORMAT, **_BIAS,
    "filters": "filters", "nb_filter": "filters", "kernel_size": "kernel_size",
    "strides": "strides", "subsample": "strides", "padding": "padding", "border_mode": "padding",
    "dilation_rate": "dilation", "atrous_rate": "dilation", "activation": "@activation",
    "kernel_initializer": "kernel_init", "init": "kernel_init",
}
_CONV2D_ARGS = {**_CONV_ARGS, "nb_row": "@nb_row", "nb_col": "@nb_col"}
_CONV_POSITIONAL = ("filters", "kernel_size", "strides", "padding")
_CONV2D_LEGACY = ("nb_filter", "nb_row", "nb_col", "init", "activation", "weights", "border_mode", "subsample")
_POOL_ARGS = {**_INPUT, **_FORMAT, "pool_size": "pool_size", "strides": "strides",
              "padding": "padding", "border_mode": "padding"}
_POOL1D_ARGS = {**_POOL_ARGS, "pool_length": "pool_size", "stride": "strides",
                "input_dim": "@input_dim", "input_length": "@input_length"}
_NO_KEEPDIMS = (Requirement(("keepdims",), (False,), False),)
_SIMPLE = {**_INPUT, **_FORMAT}


def _activation_layer(fn: str, requires: tuple[Requirement, ...] = (), positional=()) -> LayerSpec:
    return LayerSpec("Activation", ACTIVATION, positional, dict(_INPUT), {"fn": fn}, requires)


SPECS: Mapping[str, LayerSpec] = {
    "Conv2D": LayerSpec("Conv2D", CONV, _CONV_POSITIONAL, {**_CONV2D_ARGS, "groups": "groups"},
                        {"padding": "valid"}, legacy_positional=_CONV2D_LEGACY),
    "Conv1D": LayerSpec("Conv1D", CONV, _CONV_POSITIONAL,
                        {**_CONV_ARGS, "groups": "groups", "filter_length": "kernel_size",
                         "subsample_length": "strides", "input_dim": "@input_dim", "input_length": "@input_length"},
                        {"padding": "valid"},
                        legacy_positional=("nb_filter", "filter_length", "init", "activation", "weights",
                                           "border_mode", "subsample_length")),
    "SeparableConv2D": LayerSpec(
        "SeparableConv2D", CONV, _CONV_POSITIONAL,
        {**_CONV2D_ARGS, "depth_multiplier": "depth_multiplier", "depthwise_initializer": "kernel_init"},
        {"padding": "valid"}, legacy_positional=_CONV2D_LEGACY + ("depth_multiplier",)),
    "DepthwiseConv2D": LayerSpec(
        "DepthwiseConv2D", CONV, ("kernel_size", "strides", "padding", "depth_multiplier"),
        {**_INPUT, **_FORMAT, **_BIAS, "kernel_size": "kernel_size", "strides": "strides", "padding": "padding",
         "depth_multiplier": "depth_multiplier", "dilation_rate": "dilation", "activation": "@activation",
         "depthwise_initializer": "kernel_init"},
        {"padding": "valid"}),
    "Dense": LayerSpec(
        "Dense", LINEAR, ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer"),
        {**_INPUT, **_BIAS, "units": "units", "output_dim": "units", "activation": "@activation",
         "kernel_initializer": "kernel_init", "init": "kernel_init", "input_dim": "@input_dim"}),
    "Embedding": LayerSpec(
        "Embedding", EMBEDDING, ("input_dim", "output_dim"),
        {**_INPUT, "input_dim": "input_dim", "output_dim": "output_dim", "embeddings_initializer": "kernel_init",
         "init": "kernel_init", "input_length": "@input_length"}),
    "MaxPooling2D": LayerSpec("MaxPool2D", POOL, ("pool_size", "strides", "padding"), _POOL_ARGS, {"pool_size": 2}),
    "AveragePooling2D": LayerSpec("AvgPool2D", POOL, ("pool_size", "strides", "padding"), _POOL_ARGS,
                                  {"pool_size": 2}),
    "MaxPooling1D": LayerSpec("MaxPool1D", POOL, ("pool_size", "strides", "padding"), _POOL1D_ARGS,
                              {"pool_size": 2}),
    "AveragePooling1D": LayerSpec("AvgPool1D", POOL, ("pool_size", "strides", "padding"), _POOL1D_ARGS,
                                  {"pool_size": 2}),
    "GlobalAveragePooling2D": LayerSpec("GlobalAvgPool", GLOBAL_POOL, (), _SIMPLE, requires=_NO_KEEPDIMS),
    "GlobalAveragePooling1D": LayerSpec("GlobalAvgPool", GLOBAL_POOL, (), _SIMPLE, requires=_NO_KEEPDIMS),
    "GlobalMaxPooling2D": LayerSpec("GlobalMaxPool", GLOBAL_POOL, (), _SIMPLE, requires=_NO_KEEPDIMS),
    "GlobalMaxPooling1D": LayerSpec("GlobalMaxPool", GLOBAL_POOL, (), _SIMPLE, requires=_NO_KEEPDIMS),
    "Flatten": LayerSpec("Flatten", RESHAPE, (), _SIMPLE),
    "Dropout": LayerSpec("Dropout", DROPOUT, ("rate",), {**_INPUT, "rate": "rate", "p": "rate"}),
    "BatchNormalization": LayerSpec(
        "BatchNorm", NORM, ("axis", "momentum", "epsilon", "center", "scale"),
        {**_INPUT, "axis": "@axis", "momentum": "momentum", "epsilon": "epsilon"},
        requires=(Requirement(("center",), (True,), True), Requirement(("scale",), (True,), True),
                  Requirement(("mode",), (0,), 0), Requirement(("renorm",), (False,), False))),
    "Activation": LayerSpec("Activation", ACTIVATION, ("activation",), {**_INPUT, "activation": "fn"}),
    "ELU": _activation_layer("elu", (Requirement(("alpha",), (1,), 1.0),), ("alpha",)),
    "Softmax": _activation_layer("softmax", (Requirement(("axis",), (-1,), -1),), ("axis",)),
    "ZeroPadding2D": LayerSpec("ZeroPadding2D", RESHAPE, ("padding",), {**_SIMPLE, "padding": "padding"}),
    "Add": LayerSpec("Add", MERGE, (), {}),
    "Concatenate": LayerSpec("Concat", MERGE, ("axis",), {"axis": "@axis"}),
    "Identity": LayerSpec("Identity", OTHER, (), dict(_INPUT)),
    # Identity at inference (nas.mining.keras_augmentation); their arguments are all dropped.
    **{name: LayerSpec("Identity", OTHER, (), dict(_INPUT)) for name in AUGMENTATION_LAYERS},
    # Rescaling, ReLU, LeakyReLU, Reshape, UpSampling2D (nas.mining.keras_transforms).
    **{name: LayerSpec(t.op, {"activation": ACTIVATION, "other": OTHER, "reshape": RESHAPE}[t.kind], t.positional,
                       {**_INPUT, **t.args}, dict(t.fixed), tuple(Requirement(*r) for r in t.requires))
       for name, t in TRANSFORM_LAYERS.items()},
    "Input": LayerSpec("Input", INPUT, ("shape", "batch_size", "name", "dtype"),
                       {"shape": "@input_shape", "batch_shape": "@batch_input_shape",
                        "batch_input_shape": "@batch_input_shape"}),
    "InputLayer": LayerSpec("Input", INPUT, ("input_shape",),
                            {**_INPUT, "shape": "@input_shape"}),
}

_UNSUPPORTED_KINDS = {
    CONV: ("Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "LocallyConnected1D",
           "LocallyConnected2D", "DepthwiseConv1D", "SeparableConv1D", "AtrousConvolution1D"),
    POOL: ("MaxPooling3D", "AveragePooling3D"),
    GLOBAL_POOL: ("GlobalMaxPooling3D", "GlobalAveragePooling3D"),
    RECURRENT: ("LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU", "Bidirectional", "TimeDistributed",
                "ConvLSTM2D", "RNN", "LSTMCell", "GRUCell"),
    RESHAPE: ("Permute", "RepeatVector", "UpSampling1D", "UpSampling3D",
              "Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding3D"),
    DROPOUT: ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout", "ActivityRegularization", "Masking"),
    ACTIVATION: ("PReLU", "ThresholdedReLU"),
    NORM: ("LayerNormalization", "GroupNormalization", "UnitNormalization"),
    MERGE: ("Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot", "Merge"),
    LINEAR: ("MaxoutDense", "Highway"),
    OTHER: ("Lambda", "Attention", "MultiHeadAttention", "Resizing", "Normalization"),
}
# Unsupported layers whose activation= acts after the layer, like a conv's.
_POST_ACTIVATION = frozenset(_UNSUPPORTED_KINDS[CONV] + _UNSUPPORTED_KINDS[LINEAR])
UNSUPPORTED: Mapping[str, str] = {name: kind for kind, names in _UNSUPPORTED_KINDS.items() for name in names}

ALIASES: Mapping[str, str] = {
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "AtrousConvolution2D": "Conv2D",
    "SeparableConvolution2D": "SeparableConv2D", "Convolution3D": "Conv3D", "Deconvolution2D": "Conv2DTranspose",
    "Deconvolution3D": "Conv3DTranspose", "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D",
    "MaxPool3D": "MaxPooling3D", "AvgPool1D": "AveragePooling1D", "AvgPool2D": "AveragePooling2D",
    "AvgPool3D": "AveragePooling3D", "GlobalMaxPool1D": "GlobalMaxPooling1D",
    "GlobalMaxPool2D": "GlobalMaxPooling2D", "GlobalAvgPool1D": "GlobalAveragePooling1D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D", "BatchNorm": "BatchNormalization",
}
# Keras 1 spellings whose positional arguments follow Keras 1's order.
_KERAS1_NAMES = frozenset({"Convolution1D", "Convolution2D", "AtrousConvolution2D", "SeparableConvolution2D"})

# The functional merge helpers (keras.layers.add, ...) and Keras 1's merge(mode=...).
MERGE_FUNCTIONS: Mapping[str, str] = {
    "add": "Add", "concatenate": "Concatenate", "subtract": "Subtract", "multiply": "Multiply",
    "average": "Average", "maximum": "Maximum", "minimum": "Minimum", "dot": "Dot",
}
MERGE_MODES: Mapping[str, str] = {
    "sum": "Add", "concat": "Concatenate", "mul": "Multiply", "ave": "Average", "max": "Maximum",
    "dot": "Dot", "cos": "Dot",
}

LAYER_NAMES = frozenset(SPECS) | frozenset(UNSUPPORTED) | frozenset(ALIASES)

# Keras activation names -> IR `Activation.fn`; anything else is a layer without an IR op.
ACTIVATION_NAMES: Mapping[str, str] = {
    **{name: name for name in ACTIVATIONS}, "swish": "silu",
}
KNOWN_ACTIVATIONS = frozenset(ACTIVATION_NAMES) | frozenset(
    {"hard_sigmoid", "softsign", "relu6", "exponential", "mish", "hard_swish", "hard_silu", "log_softmax",
     "crelu", "celu", "glu"})
# Keras initializer names (Keras 1's 'uniform'/'normal' have Keras 2's 0.05 scale) -> IR names.
_INITIALIZERS: Mapping[str, str] = {
    **{name: name for name in ("he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "glorot_normal",
                               "glorot_uniform", "random_normal", "random_uniform", "zeros", "ones")},
    "uniform": "random_uniform", "normal": "random_normal", "zero": "zeros", "one": "ones",
}
_INIT_DEFAULTS = {"random_normal": {"mean": 0.0, "stddev": 0.05},
                  "random_uniform": {"minval": -0.05, "maxval": 0.05}}
_WINDOWS = frozenset({"kernel_size", "strides", "pool_size", "dilation"})


class _Inexpressible(Exception):
    """An argument value the IR op cannot express; the layer translates with op=None."""


class _Unknown(Exception):
    """An argument value that is (or holds) an `Unresolved` marker."""

    def __init__(self, expr: str):
        super().__init__(expr)
        self.expr = expr


def canonical_name(name: str) -> str:
    """Keras 2's class name for a Keras 1 or alias spelling (``Convolution2D`` -> ``Conv2D``)."""
    return ALIASES.get(name, name)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON-like: None, bools, numbers, strings, and tuples/lists of them (not absurdly nested)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (tuple, list)) and depth < 16 and all(_plain(v, depth + 1) for v in value)


def _check_known(value: Any) -> None:
    found = unresolved_in(value)
    if found:
        raise _Unknown(", ".join(dict.fromkeys(u.expr for u in found)))


def _positional_names(spec: LayerSpec, written: str, args: Sequence[Any], flavour: str) -> tuple[str, ...]:
    """Keras 1 order for Keras 1 spellings, and for ``Conv2D(32, 3, 3)`` in standalone Keras 2.

    Standalone Keras 2 read a third integer as the kernel's column count
    (its legacy interface); tf.keras reads it as the stride.
    """
    if not spec.legacy_positional or len(args) < 3:
        return spec.positional
    if written in _KERAS1_NAMES:
        legacy = all(_is_int(a) or isinstance(a, Unresolved) for a in args[1:3])
        if written == "Convolution1D":
            legacy = True
        return spec.legacy_positional if legacy else spec.positional
    if flavour == "keras" and _is_int(args[1]) and _is_int(args[2]) and "nb_row" in spec.legacy_positional:
        return spec.legacy_positional
    return spec.positional


def _bind(spec: LayerSpec, written: str, args: Sequence[Any], kwargs: Mapping[str, Any],
          flavour: str) -> tuple[dict[str, Any], list[str]]:
    names = _positional_names(spec, written, args, flavour)
    bound: dict[str, Any] = {}
    dropped: list[str] = []
    for i, value in enumerate(args):
        if i < len(names):
            bound[names[i]] = value
        else:
            dropped.append(f"positional argument {i + 1}")
    for key, value in kwargs.items():
        bound[key] = value
    return bound, dropped


def _shape(value: Any, drop_batch: bool) -> Any:
    """A declared input shape -> tuple of ints, or an `Unresolved` naming what is unknown."""
    found = unresolved_in(value)
    if found:
        return Unresolved(", ".join(dict.fromkeys(u.expr for u in found)))
    if _is_int(value):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        return Unresolved(render(value))
    dims = tuple(value[1:] if drop_batch else value)
    if not dims or not all(_is_int(d) and d > 0 for d in dims):
        # None dims (variable size) give no concrete shape.
        return Unresolved(render(value))
    return dims


def _window(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _padding(value: Any) -> str:
    if isinstance(value, str) and value.lower() in ("same", "valid"):
        return value.lower()
    raise _Inexpressible(f"padding={render(value)} has no IR equivalent")


def _initializer(value: Any) -> str | None:
    """IR initializer name, or None when the IR has no equivalent (the argument is dropped)."""
    if isinstance(value, str):
        return _INITIALIZERS.get(value.lower())
    if isinstance(value, KerasObject):
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", value.name).lower()
        ir_name = _INITIALIZERS.get(name)
        if ir_name is None or value.args:
            return None
        settings = {k: v for k, v in value.kwargs if k != "seed"}
        defaults = _INIT_DEFAULTS.get(ir_name, {})
        if any(k not in defaults or v != defaults[k] for k, v in settings.items()):
            return None
        return ir_name
    return None


def activation_call(value: Any, *, inline: bool) -> LayerCall | None:
    """The activation node for an ``activation=`` argument or an ``Activation(...)`` layer.

    Args:
      value: a name (``'relu'``), another layer's `LayerCall` (``LeakyReLU(0.2)``),
        an `Unresolved` marker, or None.
      inline: True for ``activation=`` arguments, where None and ``'linear'``
        (Keras's identity) add no node.
    Returns:
      The activation `LayerCall`, or None for no node.
    """
    if value is None:
        return None
    if isinstance(value, LayerCall):
        if value.kind == ACTIVATION:
            return value
        return dataclasses.replace(value, op=None, note=f"{value.keras} used as an activation")
    found = unresolved_in(value)
    if found:
        return LayerCall("Activation", "Activation", ACTIVATION,
                         unresolved=(("activation", found[0].expr),))
    if isinstance(value, str):
        name = value.lower()
        if inline and name == "linear":
            return None
        if name in ACTIVATION_NAMES:
            return LayerCall("Activation", "Activation", ACTIVATION, Attrs(fn=ACTIVATION_NAMES[name]))
        return LayerCall("Activation", None, ACTIVATION, Attrs(fn=value),
                         note=f"activation {value!r} has no IR equivalent")
    return LayerCall("Activation", None, ACTIVATION, Attrs(fn=render(value)),
                     note=f"activation {render(value)} has no IR equivalent")


def _raw(value: Any) -> Any:
    """A Keras argument kept as written in an unsupported layer's attrs."""
    if _plain(value):
        return tuple(value) if isinstance(value, list) else value
    if isinstance(value, LayerCall):
        return value.keras
    return render(value)


def _unsupported(keras: str, kind: str, bound: Mapping[str, Any], note: str, spec: LayerSpec | None,
                 dropped: Sequence[str], default_cf: bool) -> LayerCall:
    attrs, unresolved = {}, []
    activation = None
    input_shape = None
    posts = spec is not None and spec.args.get("activation") == "@activation" or keras in _POST_ACTIVATION
    for key, value in bound.items():
        found = unresolved_in(value)
        directive = spec.args.get(key) if spec is not None else None
        if key == "activation" and posts:
            activation = activation_call(value, inline=True)
        elif directive in ("@input_shape", "@batch_input_shape") or key in _INPUT:
            input_shape = _shape(value, drop_batch=key in ("batch_input_shape", "batch_shape"))
        elif found:
            unresolved.append((key, ", ".join(dict.fromkeys(u.expr for u in found))))
        else:
            attrs[key] = _raw(value)
    return LayerCall(keras, None, kind, Attrs(attrs), tuple(unresolved), tuple(dropped), note, activation,
                     input_shape, True if default_cf else None)


def translate_layer(name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
                    flavour: str = "keras", channels_first: bool = False) -> LayerCall:
    """Translates one Keras layer constructor call.

    Args:
      name: the class name as written (``Conv2D``, ``Convolution2D``, ``LSTM``...).
      args: evaluated positional arguments.
      kwargs: evaluated keyword arguments.
      flavour: ``"keras"`` (standalone Keras) or ``"tf"`` (tf.keras); they read
        a third positional integer of ``Conv2D`` differently.
      channels_first: the file's global data format (``set_image_data_format``).
    Returns:
      The `LayerCall`; ``op`` is None when the IR cannot express the layer.
    """
    kwargs = dict(kwargs or {})
    keras = canonical_name(name)
    spec = SPECS.get(keras)
    if spec is None:
        kind = UNSUPPORTED.get(keras, OTHER)
        bound = {f"arg{i}": v for i, v in enumerate(args)} | kwargs
        note = f"the IR has no op for Keras layer {keras}"
        return _unsupported(keras, kind, bound, note, None, (), channels_first)
    bound, dropped = _bind(spec, name, args, kwargs, flavour)
    if keras in AUGMENTATION_LAYERS:
        dropped.append(AUGMENTATION_DROPPED)
    try:
        call = _translate(keras, spec, bound, list(dropped), channels_first)
        if keras in TRANSFORM_LAYERS and not call.unresolved:
            try:
                op, attrs = ir_form(keras, call.attrs)
            except ValueError as exc:
                raise _Inexpressible(str(exc)) from None
            call = dataclasses.replace(call, op=op, attrs=Attrs(attrs))
        return call
    except _Inexpressible as exc:
        return _unsupported(keras, spec.kind, bound, str(exc), spec, dropped, channels_first)


def _translate(keras: str, spec: LayerSpec, bound: dict[str, Any], dropped: list[str],
               default_cf: bool) -> LayerCall:
    attrs: dict[str, Any] = {}
    unresolved: list[tuple[str, str]] = []
    activation = None
    shapes: dict[str, Any] = {}
    channels_first: bool | None = True if default_cf else None
    keras_axis = None
    kernel_rc: dict[str, Any] = {}

    bound = dict(bound)
    for req in spec.requires:
        given = [n for n in req.names if n in bound]
        value = bound[given[0]] if given else req.default
        for n in given:
            bound.pop(n)
        if unresolved_in(value):
            unresolved.append((req.names[0], render(value)))
        elif not any(value == ok and type(value) is not bool or value is ok for ok in req.allowed):
            default = "" if given else " (Keras's default)"
            raise _Inexpressible(f"{req.names[0]}={render(value)}{default} has no IR equivalent")

    for key, value in bound.items():
        target = spec.args.get(key)
        if target is None:
            dropped.append(key if value is None or not _plain(value) else f"{key}={render(value)}")
            continue
        try:
            if target == "@activation":
                activation = activation_call(value, inline=True)
            elif target in ("@input_shape", "@batch_input_shape"):
                shapes[target] = _shape(value, drop_batch=target == "@batch_input_shape")
            elif target in ("@input_dim", "@input_length"):
                _check_known(value)
                shapes[target] = value
            elif target in ("@data_format", "@dim_ordering"):
                _check_known(value)
                if value is not None:
                    channels_first = value in ("channels_first", "th")
            elif target in ("@nb_row", "@nb_col"):
                _check_known(value)
                kernel_rc[target] = value
            elif target == "@axis":
                _check_known(value)
                if not _is_int(value):
                    raise _Inexpressible(f"axis={render(value)} has no IR equivalent")
                keras_axis = value
            elif target == "fn":
                call = activation_call(value, inline=False)
                if call is None or call.op is None:
                    raise _Inexpressible(call.note if call else "Activation(None)")
                unresolved.extend(call.unresolved)
                attrs.update(call.attrs)
            elif target in ("kernel_init", "bias_init"):
                _check_known(value)
                ir_name = _initializer(value)
                if ir_name is None:
                    dropped.append(f"{key}={render(value)}")
                else:
                    attrs[target] = ir_name
            else:
                _check_known(value)
                if value is None and target in OPS[spec.op].required:
                    # Keras rejects None here (Dense(None)): a builder's None default the real caller overrides.
                    raise _Unknown("None")
                if target == "padding" and spec.op != "ZeroPadding2D":
                    value = _padding(value)
                elif target in _WINDOWS or target == "padding":
                    value = _window(value)
                if not _plain(value):
                    raise _Unknown(render(value))
                attrs[target] = value
        except _Unknown as unknown:
            unresolved.append((key, unknown.expr))

    kernel_unknown = any(k in ("kernel_size", "nb_row", "nb_col", "filter_length") for k, _ in unresolved)
    if kernel_rc:
        if "kernel_size" in attrs:
            raise _Inexpressible("both kernel_size and nb_row/nb_col given")
        if len(kernel_rc) == 2:
            attrs["kernel_size"] = (kernel_rc["@nb_row"], kernel_rc["@nb_col"])
        elif not kernel_unknown:
            raise _Inexpressible("nb_row and nb_col must be given together")
    if spec.kind == CONV and "kernel_size" not in attrs and not kernel_unknown:
        raise _Inexpressible("no kernel size given")
    for key, value in spec.fixed.items():
        if key not in attrs and not any(key == spec.args.get(k) for k, _ in unresolved):
            attrs[key] = value
    return LayerCall(keras, spec.op, spec.kind, Attrs(attrs), tuple(unresolved), tuple(dropped), "",
                     activation, _input_shape(shapes, spec.kind), channels_first, keras_axis)


def _input_shape(shapes: Mapping[str, Any], kind: str) -> Any:
    if "@input_shape" in shapes:
        return shapes["@input_shape"]
    if "@batch_input_shape" in shapes:
        return shapes["@batch_input_shape"]
    dim, length = shapes.get("@input_dim"), shapes.get("@input_length")
    if dim is not None and length is not None:
        return _shape((length, dim), drop_batch=False)
    if length is not None:
        return _shape((length,), drop_batch=False)
    if dim is not None:
        if kind in (CONV, POOL, RECURRENT):
            return Unresolved("input_length")  # a sequence of unspecified length
        return _shape((dim,), drop_batch=False)
    return None


def translate_merge_function(name: str, kwargs: Mapping[str, Any] | None = None) -> LayerCall:
    """The layer behind a functional merge helper: ``add``, ``concatenate(axis=..)``, Keras 1 ``merge``.

    Args:
      name: the helper's name as written.
      kwargs: its keyword arguments (the inputs already removed).
    Returns:
      The merge `LayerCall`.
    """
    kwargs = dict(kwargs or {})
    if name == "merge":
        mode = kwargs.pop("mode", "sum")
        axis = kwargs.pop("concat_axis", -1)
        if isinstance(mode, str) and mode in MERGE_MODES:
            keras = MERGE_MODES[mode]
            if keras == "Concatenate":
                kwargs["axis"] = axis
            return translate_layer(keras, (), kwargs)
        return LayerCall("Merge", None, MERGE, Attrs(mode=render(mode)), note=f"merge mode {render(mode)}")
    return translate_layer(MERGE_FUNCTIONS[name], (), kwargs)


def input_call(shape: Any, *, channels_first: bool | None = None) -> LayerCall:
    """The Input node a Sequential model starts with (its first layer's declared shape)."""
    return LayerCall("InputLayer", "Input", INPUT, input_shape=shape, channels_first=channels_first)


def opaque_call(text: str) -> LayerCall:
    """A call on tensors that is not a Keras layer (``tf.reshape(x, ...)``, an unknown helper)."""
    return LayerCall(text, None, OTHER, note=f"{text} is not a Keras layer the miner knows")


def unresolved_source(expr: str) -> LayerCall:
    """The source of a tensor the miner could not trace (a layer applied to ``features``)."""
    return LayerCall("?", None, SOURCE, unresolved=(("input", expr),),
                     note=f"the tensor {expr} could not be traced")
