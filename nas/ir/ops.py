"""The op table: for every op, its attributes, shape rule, parameter and FLOP count.

One table drives validation, shape inference, counting and (in `nas.compile`)
code generation, so adding an op is one entry here plus one builder there.
Shapes never include the batch axis; images are channels-last (H, W, C).
FLOPs count a multiply-accumulate as two operations and element-wise work
(bias, BatchNorm, activations, merges) as one per output element.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

Shape = tuple[int, ...]

ACTIVATIONS = (
    "relu", "selu", "elu", "gelu", "tanh", "sigmoid", "softmax", "linear",
    "leaky_relu", "silu", "softplus", "relu6",
)
# Keras's names, so mined models keep their initialisers (DREAM's search space
# varies exactly these).
INITIALIZERS = (
    "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
    "glorot_normal", "glorot_uniform", "random_normal", "random_uniform",
    "zeros", "ones",
)
PADDINGS = ("same", "valid")


# ---------------------------------------------------------------- attribute parsing
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"attribute {name!r} must be a positive integer, got {value!r}")
    return value


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"attribute {name!r} must be an integer, got {value!r}")
    return value


def _int_tuple(value: Any, n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * n
    if not isinstance(value, (tuple, list)) or len(value) != n:
        raise ValueError(f"attribute {name!r} must be an integer or {n} integers, got {value!r}")
    return tuple(_positive_int(v, name) for v in value)


def _choice(value: Any, options: Sequence[str], name: str) -> str:
    text = str(value).lower()
    if text not in options:
        raise ValueError(f"attribute {name!r} must be one of {list(options)}, got {value!r}")
    return text


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"attribute {name!r} must be true or false, got {value!r}")
    return value


def _rate(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"attribute {name!r} must be a number in [0, 1), got {value!r}")
    return float(value)


def _positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"attribute {name!r} must be a positive number, got {value!r}")
    return float(value)


def _padding_2d(value: Any, name: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's ZeroPadding2D forms: p, (ph, pw), ((top, bottom), (left, right))."""
    def nonneg(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"attribute {name!r} needs non-negative integers, got {value!r}")
        return v
    if isinstance(value, int) and not isinstance(value, bool):
        p = nonneg(value)
        return ((p, p), (p, p))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if all(isinstance(v, int) for v in value):
            h, w = (nonneg(v) for v in value)
            return ((h, h), (w, w))
        if all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
            (t, b), (l, r) = value
            return ((nonneg(t), nonneg(b)), (nonneg(l), nonneg(r)))
    raise ValueError(f"attribute {name!r} must be p, [ph, pw] or [[top, bottom], [left, right]], got {value!r}")


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"attribute {name!r} must be a finite number, got {value!r}")
    return float(value)


def _non_negative(value: Any, name: str) -> float:
    # Keras's ReLU layer refuses negative max_value, negative_slope and threshold.
    if _finite(value, name) < 0:
        raise ValueError(f"attribute {name!r} must be a non-negative number, got {value!r}")
    return float(value)


def _target_shape(value: Any, name: str) -> tuple[int, ...]:
    """Keras's Reshape target: positive sizes, with at most one -1 (inferred)."""
    if not isinstance(value, (list, tuple)) or not value or any(
            isinstance(v, bool) or not isinstance(v, int) or (v < 1 and v != -1) for v in value):
        raise ValueError(f"attribute {name!r} must be a non-empty list of positive integers "
                         f"(one of them may be -1), got {value!r}")
    if list(value).count(-1) > 1:
        raise ValueError(f"attribute {name!r} may hold at most one -1, got {value!r}")
    return tuple(value)


def _shape_attr(value: Any, name: str) -> Shape:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"attribute {name!r} must be a non-empty list of positive integers, got {value!r}")
    return tuple(_positive_int(v, name) for v in value)


# Attribute kinds: name -> parser(value, attr_name, op_attrs) -> normalised value.
def _conv_parsers(nd: int) -> dict[str, Callable]:
    return {
        "kernel_size": lambda v, n: _int_tuple(v, nd, n),
        "strides": lambda v, n: _int_tuple(v, nd, n),
        "dilation": lambda v, n: _int_tuple(v, nd, n),
        "padding": lambda v, n: _choice(v, PADDINGS, n),
        "use_bias": _flag,
        "kernel_init": lambda v, n: _choice(v, INITIALIZERS, n),
        "bias_init": lambda v, n: _choice(v, INITIALIZERS, n),
    }


def _pool_parsers(nd: int) -> dict[str, Callable]:
    return {
        "pool_size": lambda v, n: _int_tuple(v, nd, n),
        "strides": lambda v, n: None if v is None else _int_tuple(v, nd, n),
        "padding": lambda v, n: _choice(v, PADDINGS, n),
    }


# ---------------------------------------------------------------- shape rules
def _spatial_out(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    reach = dilation * (kernel - 1) + 1
    if size < reach:
        raise ValueError(
            f"window of extent {reach} does not fit an input of size {size} with padding 'valid'"
        )
    return (size - reach) // stride + 1


def _expect_rank(shape: Shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        raise ValueError(f"expects a rank-{rank} input ({what}), got shape {list(shape)}")


def _conv_shape(nd: int, out_channels: Callable[[Mapping, int], int]):
    def rule(a: Mapping, shapes: list[Shape]) -> Shape:
        (shape,) = shapes
        _expect_rank(shape, nd + 1, "spatial dims + channels")
        channels = shape[-1]
        groups = a.get("groups", 1)
        if channels % groups:
            raise ValueError(f"input channels {channels} are not divisible by groups={groups}")
        spatial = tuple(
            _spatial_out(s, k, st, d, a["padding"])
            for s, k, st, d in zip(shape[:-1], a["kernel_size"], a["strides"], a["dilation"])
        )
        return spatial + (out_channels(a, channels),)
    return rule


def _pool_shape(nd: int):
    def rule(a: Mapping, shapes: list[Shape]) -> Shape:
        (shape,) = shapes
        _expect_rank(shape, nd + 1, "spatial dims + channels")
        strides = a["strides"]
        spatial = tuple(
            _spatial_out(s, k, st, 1, a["padding"])
            for s, k, st in zip(shape[:-1], a["pool_size"], strides)
        )
        return spatial + (shape[-1],)
    return rule


def _same_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _dense_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    return shapes[0][:-1] + (a["units"],)


def _embedding_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    return shapes[0] + (a["output_dim"],)


def _flatten_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    return (math.prod(shapes[0]),)


def _global_pool_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    (shape,) = shapes
    if len(shape) < 2:
        raise ValueError(f"needs spatial dims and channels to pool over, got shape {list(shape)}")
    return (shape[-1],)


def _add_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"cannot add tensors of different shapes {[list(s) for s in shapes]}")
    return shapes[0]


def _concat_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    rank = len(shapes[0])
    axis = a["axis"]
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for rank-{rank} inputs")
    axis %= rank
    rest = {s[:axis] + s[axis + 1:] for s in shapes}
    if any(len(s) != rank for s in shapes) or len(rest) != 1:
        raise ValueError(
            f"cannot concatenate shapes {[list(s) for s in shapes]} along axis {a['axis']}: "
            "all other dimensions must agree"
        )
    return shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]


def _zero_pad_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    (shape,) = shapes
    _expect_rank(shape, 3, "height, width, channels")
    (t, b), (l, r) = a["padding"]
    return (shape[0] + t + b, shape[1] + l + r, shape[2])


def _input_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _reshape_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    size, target = math.prod(shapes[0]), a["target_shape"]
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if size % known:
            raise ValueError(f"cannot reshape {size} elements into {list(target)}: "
                             f"{size} is not a multiple of {known}")
        return tuple(size // known if d == -1 else d for d in target)
    if known != size:
        raise ValueError(f"cannot reshape {size} elements into {list(target)} ({known} elements)")
    return tuple(target)


def _upsampling_shape(a: Mapping, shapes: list[Shape]) -> Shape:
    (shape,) = shapes
    _expect_rank(shape, 3, "height, width, channels")
    (sh, sw) = a["size"]
    return (shape[0] * sh, shape[1] * sw, shape[2])


# ---------------------------------------------------------------- counting rules
def _zero(a, ins, out) -> int:
    return 0


def _elementwise(a, ins, out) -> int:
    return math.prod(out) * max(1, len(ins) - 1)


def _conv_params(a, ins, out) -> int:
    cin = ins[0][-1]
    return math.prod(a["kernel_size"]) * (cin // a["groups"]) * a["filters"] + a["filters"] * a["use_bias"]


def _conv_flops(a, ins, out) -> int:
    cin = ins[0][-1]
    return 2 * math.prod(out) * math.prod(a["kernel_size"]) * (cin // a["groups"]) + math.prod(out) * a["use_bias"]


def _depthwise_params(a, ins, out) -> int:
    cout = ins[0][-1] * a["depth_multiplier"]
    return math.prod(a["kernel_size"]) * cout + cout * a["use_bias"]


def _depthwise_flops(a, ins, out) -> int:
    return 2 * math.prod(out) * math.prod(a["kernel_size"]) + math.prod(out) * a["use_bias"]


def _separable_params(a, ins, out) -> int:
    mid = ins[0][-1] * a["depth_multiplier"]
    return math.prod(a["kernel_size"]) * mid + mid * a["filters"] + a["filters"] * a["use_bias"]


def _separable_flops(a, ins, out) -> int:
    positions = math.prod(out[:-1])
    mid = ins[0][-1] * a["depth_multiplier"]
    depthwise = 2 * positions * mid * math.prod(a["kernel_size"])
    pointwise = 2 * positions * mid * a["filters"]
    return depthwise + pointwise + math.prod(out) * a["use_bias"]


def _dense_params(a, ins, out) -> int:
    return ins[0][-1] * a["units"] + a["units"] * a["use_bias"]


def _dense_flops(a, ins, out) -> int:
    return 2 * math.prod(out) * ins[0][-1] + math.prod(out) * a["use_bias"]


def _embedding_params(a, ins, out) -> int:
    return a["input_dim"] * a["output_dim"]


def _batchnorm_params(a, ins, out) -> int:
    # Trainable scale and offset only; the running mean and variance are
    # state (Flax's batch_stats), not parameters.
    return 2 * ins[0][-1]


def _pool_flops(a, ins, out) -> int:
    return math.prod(out) * math.prod(a["pool_size"])


def _global_pool_flops(a, ins, out) -> int:
    return math.prod(ins[0])


def _rescaling_flops(a, ins, out) -> int:
    # One multiply and, when there is an offset, one add per element.
    return math.prod(out) * (1 + (a["offset"] != 0))


# ---------------------------------------------------------------- the table
@dataclasses.dataclass(frozen=True)
class OpSpec:
    """Everything the IR knows about one op.

    Attributes:
      name: the op's name in IR documents.
      arity: "source" (no inputs), "unary" or "merge" (two or more inputs).
      required: attributes that must be given.
      defaults: optional attributes and their default values.
      parsers: attribute name -> function(value, name) returning the
        normalised value or raising ValueError.
      shape: (attrs, input shapes) -> output shape; raises ValueError.
      params: (attrs, input shapes, output shape) -> trainable parameter count.
      flops: (attrs, input shapes, output shape) -> FLOPs per example.
      trainable: whether the op owns parameters (Manas's trainable-layer graph).
      complete: optional; fills defaults that depend on other attributes.
    """

    name: str
    arity: str
    required: tuple[str, ...]
    defaults: Mapping[str, Any]
    parsers: Mapping[str, Callable[[Any, str], Any]]
    shape: Callable[[Mapping, list[Shape]], Shape]
    params: Callable[[Mapping, list[Shape], Shape], int] = _zero
    flops: Callable[[Mapping, list[Shape], Shape], int] = _zero
    trainable: bool = False
    complete: Callable[[dict], dict] | None = None  # derives defaults from other attributes

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.required + tuple(k for k in self.defaults if k not in self.required)

    def normalize(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Fills defaults and parses every value; raises ValueError naming the attribute."""
        missing = [k for k in self.required if k not in attrs]
        unknown = [k for k in attrs if k not in self.required and k not in self.defaults]
        if missing and not unknown:
            raise ValueError(f"missing required attribute(s) {missing}")
        if unknown:
            import difflib

            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, self.attribute_names, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            lacking = f"; missing {missing}" if missing else ""
            raise ValueError(
                f"unknown attribute(s) {', '.join(hints)}{lacking}; {self.name} takes {list(self.attribute_names)}"
            )
        out = dict(self.defaults)
        out.update(attrs)
        for key, parse in self.parsers.items():
            if key in out:
                out[key] = parse(out[key], key)
        return self.complete(out) if self.complete else out


_CONV_DEFAULTS = dict(
    strides=1, padding="same", dilation=1, use_bias=True,
    kernel_init="glorot_uniform", bias_init="zeros",
)


def _conv_spec(name: str, nd: int) -> OpSpec:
    return OpSpec(
        name=name, arity="unary", required=("filters", "kernel_size"),
        defaults=dict(_CONV_DEFAULTS, groups=1),
        parsers=dict(_conv_parsers(nd), filters=_positive_int, groups=_positive_int),
        shape=_conv_shape(nd, lambda a, cin: _checked_filters(a)),
        params=_conv_params, flops=_conv_flops, trainable=True,
    )


def _checked_filters(a: Mapping) -> int:
    if a["filters"] % a["groups"]:
        raise ValueError(f"filters={a['filters']} is not divisible by groups={a['groups']}")
    return a["filters"]


def _pool_spec(name: str, nd: int) -> OpSpec:
    return OpSpec(
        name=name, arity="unary", required=("pool_size",),
        defaults=dict(strides=None, padding="valid"),
        parsers=_pool_parsers(nd), shape=_pool_shape(nd), flops=_pool_flops, complete=_default_pool_strides,
    )


def _default_pool_strides(a: dict) -> dict:
    """Keras's default pool stride is the window itself."""
    return a if a["strides"] is not None else dict(a, strides=a["pool_size"])


_SPECS = [
    OpSpec("Input", "source", (), {"shape": None},
           {"shape": lambda v, n: None if v is None else _shape_attr(v, n)}, _input_shape),
    _conv_spec("Conv2D", 2),
    _conv_spec("Conv1D", 1),
    OpSpec("DepthwiseConv2D", "unary", ("kernel_size",), dict(_CONV_DEFAULTS, depth_multiplier=1),
           dict(_conv_parsers(2), depth_multiplier=_positive_int),
           _conv_shape(2, lambda a, cin: cin * a["depth_multiplier"]),
           _depthwise_params, _depthwise_flops, trainable=True),
    OpSpec("SeparableConv2D", "unary", ("filters", "kernel_size"), dict(_CONV_DEFAULTS, depth_multiplier=1),
           dict(_conv_parsers(2), filters=_positive_int, depth_multiplier=_positive_int),
           _conv_shape(2, lambda a, cin: a["filters"]),
           _separable_params, _separable_flops, trainable=True),
    OpSpec("Dense", "unary", ("units",),
           dict(use_bias=True, kernel_init="glorot_uniform", bias_init="zeros"),
           dict(units=_positive_int, use_bias=_flag,
                kernel_init=lambda v, n: _choice(v, INITIALIZERS, n),
                bias_init=lambda v, n: _choice(v, INITIALIZERS, n)),
           _dense_shape, _dense_params, _dense_flops, trainable=True),
    OpSpec("Embedding", "unary", ("input_dim", "output_dim"), dict(kernel_init="random_uniform"),
           dict(input_dim=_positive_int, output_dim=_positive_int,
                kernel_init=lambda v, n: _choice(v, INITIALIZERS, n)),
           _embedding_shape, _embedding_params, trainable=True),
    # Keras's defaults (momentum 0.99, epsilon 1e-3), so mined models keep them.
    OpSpec("BatchNorm", "unary", (), dict(momentum=0.99, epsilon=1e-3),
           dict(momentum=_rate, epsilon=_positive_float),
           _same_shape, _batchnorm_params, _elementwise, trainable=True),
    OpSpec("Activation", "unary", ("fn",), {}, {"fn": lambda v, n: _choice(v, ACTIVATIONS, n)},
           _same_shape, flops=_elementwise),
    _pool_spec("MaxPool2D", 2),
    _pool_spec("AvgPool2D", 2),
    _pool_spec("MaxPool1D", 1),
    _pool_spec("AvgPool1D", 1),
    OpSpec("GlobalAvgPool", "unary", (), {}, {}, _global_pool_shape, flops=_global_pool_flops),
    OpSpec("GlobalMaxPool", "unary", (), {}, {}, _global_pool_shape, flops=_global_pool_flops),
    OpSpec("Flatten", "unary", (), {}, {}, _flatten_shape),
    OpSpec("Dropout", "unary", ("rate",), {}, {"rate": _rate}, _same_shape),
    OpSpec("Add", "merge", (), {}, {}, _add_shape, flops=_elementwise),
    OpSpec("Concat", "merge", (), {"axis": -1}, {"axis": _integer}, _concat_shape),
    OpSpec("Identity", "unary", (), {}, {}, _same_shape),
    OpSpec("ZeroPadding2D", "unary", (), {"padding": 1}, {"padding": _padding_2d}, _zero_pad_shape),
    # Keras's Rescaling: x * scale + offset (scalars; Keras's per-channel lists are not expressed).
    OpSpec("Rescaling", "unary", ("scale",), {"offset": 0.0}, {"scale": _finite, "offset": _finite},
           _same_shape, flops=_rescaling_flops),
    # Keras's ReLU layer: x above threshold (clipped at max_value), else negative_slope * (x - threshold).
    OpSpec("ReLU", "unary", (), {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
           {"max_value": lambda v, n: None if v is None else _non_negative(v, n),
            "negative_slope": _non_negative, "threshold": _non_negative},
           _same_shape, flops=_elementwise),
    # Keras's Reshape: row-major over the per-example axes (channels-last, as everywhere in the IR).
    OpSpec("Reshape", "unary", ("target_shape",), {}, {"target_shape": _target_shape}, _reshape_shape),
    # Keras's UpSampling2D with its default interpolation, 'nearest': each cell repeated size times.
    OpSpec("UpSampling2D", "unary", (), {"size": 2}, {"size": lambda v, n: _int_tuple(v, 2, n)},
           _upsampling_shape),
]

OPS: Mapping[str, OpSpec] = {spec.name: spec for spec in _SPECS}
