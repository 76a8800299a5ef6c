"""Hypothesis strategies for random *valid* architectures, and inputs to feed them.

`archs()` draws an `(arch, input_shape)` pair from one of three families:

- ``image``: Input (H, W, C) -> blocks (conv, depthwise, separable, residual
  Add, Concat of conv branches, pools, padding/dropout/identity) -> a GAP, GMP or
  Flatten head -> optional hidden Dense -> ``head`` Dense;
- ``seq1d``: Input (L, C) -> Conv1D / MaxPool1D / AvgPool1D blocks -> head;
- ``embedding``: Input (L,) of token ids -> Embedding -> Conv1D -> GlobalMaxPool -> head.

Shapes are tracked by asking the IR (`Arch.output_shape`) about the graph built
so far, never by re-implementing a shape rule here, so a drawn arch is valid
exactly when the IR says so; every arch is `validate()`d before it is returned.
The Input node always carries its shape, and ids are readable and stable
(``conv1``, ``bn1``, ``res1_a``, ``cat1_b2``, ``head``): they depend only on the
drawn structure. Attributes at their default are sometimes omitted and sometimes
written out, and ints sometimes written as lists, so both forms get exercised.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from hypothesis import strategies as st

from nas.ir import ACTIVATIONS, INITIALIZERS, Arch, Attrs, Node

FAMILIES = ("image", "seq1d", "embedding")
MIN_VOCAB = 5  # smallest Embedding input_dim drawn; token ids below it are valid for every arch


class _Graph:
    """The nodes drawn so far, with the IR answering shape questions."""

    def __init__(self, input_shape: tuple[int, ...]):
        self.nodes: list[Node] = [Node("in", "Input", (), Attrs(shape=input_shape))]
        self.counts: dict[str, int] = {}
        self.last = "in"

    def fresh(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix]}"

    def add(self, node_id: str, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        self.nodes.append(Node(node_id, op, tuple(inputs), Attrs(attrs)))
        return node_id

    def shape(self, node_id: str | None = None) -> tuple[int, ...]:
        probe = Arch(tuple(self.nodes), ("in",), (node_id or self.last,))
        return probe.output_shape()

    def arch(self, name: str) -> Arch:
        return Arch(tuple(self.nodes), ("in",), (self.last,), name)


# ---------------------------------------------------------------- attribute helpers
def _maybe(draw, attrs: dict, key: str, value: Any, default: Any) -> None:
    """Writes `key` unless it equals the default, and then only sometimes."""
    if value != default or draw(st.booleans()):
        attrs[key] = value


def _int_or_list(draw, value: int, n: int) -> Any:
    return value if draw(st.booleans()) else [value] * n


def _window(draw, spatial: Sequence[int], *, kernels=(1, 3, 5), allow_dilation=True) -> dict:
    """kernel_size, strides, dilation and padding for a conv over `spatial` dims."""
    kernel = draw(st.sampled_from(kernels))
    dilation = draw(st.sampled_from((1, 2))) if allow_dilation and kernel > 1 else 1
    reach = dilation * (kernel - 1) + 1
    fits_valid = reach <= min(spatial)
    padding = draw(st.sampled_from(("same", "valid"))) if fits_valid else "same"
    stride = draw(st.sampled_from((1, 2)))
    nd = len(spatial)
    attrs = {"kernel_size": _int_or_list(draw, kernel, nd)}
    _maybe(draw, attrs, "strides", _int_or_list(draw, stride, nd) if stride != 1 else 1, 1)
    _maybe(draw, attrs, "dilation", dilation, 1)
    _maybe(draw, attrs, "padding", padding, "same")
    return attrs


def _inits(draw, attrs: dict, *, bias: bool = True) -> None:
    _maybe(draw, attrs, "kernel_init", draw(st.sampled_from(INITIALIZERS)), "glorot_uniform")
    if bias:
        use_bias = draw(st.booleans())
        _maybe(draw, attrs, "use_bias", use_bias, True)


def _post_conv(draw, g: _Graph, batchnorm: bool | None) -> None:
    """After a conv: optionally BatchNorm, optionally an Activation."""
    use_bn = draw(st.booleans()) if batchnorm is None else batchnorm
    if use_bn:
        attrs: dict = {}
        if draw(st.booleans()):
            attrs["momentum"] = draw(st.sampled_from((0.9, 0.99)))
        g.last = g.add(g.fresh("bn"), "BatchNorm", (g.last,), **attrs)
    if draw(st.booleans()):
        g.last = g.add(g.fresh("act"), "Activation", (g.last,), fn=draw(st.sampled_from(ACTIVATIONS)))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ---------------------------------------------------------------- image blocks
def _conv(draw, g: _Graph, batchnorm) -> None:
    """Conv2D or Conv1D (by the current rank) with random width, window, groups and init."""
    shape = g.shape()
    channels = shape[-1]
    filters = draw(st.integers(1, 8))
    attrs = {"filters": filters, **_window(draw, shape[:-1])}
    groups = draw(st.sampled_from(_divisors(math.gcd(channels, filters))))
    _maybe(draw, attrs, "groups", groups, 1)
    _inits(draw, attrs)
    op = "Conv2D" if len(shape) == 3 else "Conv1D"
    g.last = g.add(g.fresh("conv"), op, (g.last,), **attrs)
    _post_conv(draw, g, batchnorm)


def _depthwise(draw, g: _Graph, batchnorm) -> None:
    attrs = {**_window(draw, g.shape()[:-1])}
    _maybe(draw, attrs, "depth_multiplier", draw(st.integers(1, 2)), 1)
    _inits(draw, attrs)
    g.last = g.add(g.fresh("dw"), "DepthwiseConv2D", (g.last,), **attrs)
    _post_conv(draw, g, batchnorm)


def _separable(draw, g: _Graph, batchnorm) -> None:
    attrs = {"filters": draw(st.integers(1, 8)), **_window(draw, g.shape()[:-1])}
    _maybe(draw, attrs, "depth_multiplier", draw(st.integers(1, 2)), 1)
    _inits(draw, attrs)
    g.last = g.add(g.fresh("sep"), "SeparableConv2D", (g.last,), **attrs)
    _post_conv(draw, g, batchnorm)


def _residual(draw, g: _Graph, batchnorm) -> None:
    """x + conv(relu([BN](conv(x)))) with 'same' convs keeping C; sometimes two branches."""
    shape = g.shape()
    channels, op = shape[-1], ("Conv2D" if len(shape) == 3 else "Conv1D")
    block = g.fresh("res")
    source = g.last
    branches = []
    for b in range(draw(st.sampled_from((1, 1, 2)))):
        tag = "" if b == 0 else str(b + 1)
        kernel = draw(st.sampled_from((1, 3)))
        first = g.add(f"{block}_a{tag}", op, (source,), filters=channels, kernel_size=kernel, padding="same")
        use_bn = draw(st.booleans()) if batchnorm is None else batchnorm
        if use_bn:
            first = g.add(f"{block}_bn{tag}", "BatchNorm", (first,))
        first = g.add(f"{block}_relu{tag}", "Activation", (first,), fn="relu")
        branches.append(g.add(f"{block}_b{tag}", op, (first,), filters=channels, kernel_size=kernel))
    g.last = g.add(f"{block}_add", "Add", (source, *branches))


def _concat(draw, g: _Graph, batchnorm) -> None:
    """Concat of two or three 'same' conv branches with different widths."""
    shape = g.shape()
    op = "Conv2D" if len(shape) == 3 else "Conv1D"
    block = g.fresh("cat")
    widths = draw(st.lists(st.integers(1, 6), min_size=2, max_size=3, unique=True))
    source = g.last
    branches = [
        g.add(f"{block}_b{i + 1}", op, (source,), filters=w, kernel_size=draw(st.sampled_from((1, 3))))
        for i, w in enumerate(widths)
    ]
    attrs = {}
    if draw(st.booleans()):
        attrs["axis"] = draw(st.sampled_from((-1, len(shape) - 1)))
    g.last = g.add(block, "Concat", tuple(branches), **attrs)


def _pool(draw, g: _Graph, batchnorm) -> None:
    shape = g.shape()
    nd = len(shape) - 1
    kind = draw(st.sampled_from(("Max", "Avg")))
    op = f"{kind}Pool{nd}D"
    if min(shape[:-1]) >= 2 and draw(st.booleans()):
        attrs = {"pool_size": _int_or_list(draw, 2, nd)}
        _maybe(draw, attrs, "padding", "valid", "valid")
    else:
        attrs = {"pool_size": 3, "strides": 1, "padding": "same"}
    g.last = g.add(g.fresh(f"{kind.lower()}pool"), op, (g.last,), **attrs)


def _misc(draw, g: _Graph, batchnorm) -> None:
    kind = draw(st.sampled_from(("pad", "dropout", "identity")))
    if kind == "pad":
        padding = draw(st.sampled_from((1, [1, 2], [[0, 1], [2, 0]])))
        g.last = g.add(g.fresh("pad"), "ZeroPadding2D", (g.last,), padding=padding)
    elif kind == "dropout":
        g.last = g.add(g.fresh("drop"), "Dropout", (g.last,), rate=draw(st.sampled_from((0.0, 0.25, 0.5))))
    else:
        g.last = g.add(g.fresh("id"), "Identity", (g.last,))


_IMAGE_BLOCKS = {
    "conv": _conv, "depthwise": _depthwise, "separable": _separable, "residual": _residual,
    "concat": _concat, "pool": _pool, "misc": _misc,
}
_SEQ_BLOCKS = {"conv": _conv, "pool": _pool}


def _head(draw, g: _Graph, heads: Sequence[str]) -> None:
    reduce = draw(st.sampled_from(heads))
    g.last = g.add(reduce.lower(), reduce, (g.last,))
    if draw(st.booleans()):
        attrs = {"units": draw(st.integers(2, 8))}
        _inits(draw, attrs)
        g.last = g.add("hidden", "Dense", (g.last,), **attrs)
        g.last = g.add("hidden_act", "Activation", (g.last,), fn=draw(st.sampled_from(ACTIVATIONS)))
    attrs = {"units": draw(st.integers(1, 5))}
    _inits(draw, attrs)
    g.last = g.add("head", "Dense", (g.last,), **attrs)


# ---------------------------------------------------------------- the strategy
@st.composite
def archs(
    draw,
    families: Sequence[str] = FAMILIES,
    max_blocks: int = 4,
    batchnorm: bool | None = None,
) -> tuple[Arch, tuple[int, ...]]:
    """A random valid architecture and its per-example input shape.

    Args:
      families: any of ``image``, ``seq1d``, ``embedding``.
      max_blocks: most body blocks (image and seq1d families draw 1..max_blocks).
      batchnorm: None draws BatchNorm after each conv at random; True/False
        forces it on or off (residual branches included).
    Returns:
      ``(arch, input_shape)``; ``arch`` is validated, its Input node carries
      ``input_shape``, and its output node is ``head``.
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; choose from {FAMILIES}")
    # Images exercise most ops, so they get three shares of the draws.
    family = draw(st.sampled_from([f for f in families for _ in range(3 if f == "image" else 1)]))
    if family == "image":
        input_shape = (draw(st.integers(5, 10)), draw(st.integers(5, 10)), draw(st.integers(1, 3)))
        g = _Graph(input_shape)
        for _ in range(draw(st.integers(1, max_blocks))):
            block = draw(st.sampled_from(sorted(_IMAGE_BLOCKS)))
            _IMAGE_BLOCKS[block](draw, g, batchnorm)
        _head(draw, g, ("GlobalAvgPool", "GlobalMaxPool", "Flatten"))
    elif family == "seq1d":
        input_shape = (draw(st.integers(6, 12)), draw(st.integers(1, 3)))
        g = _Graph(input_shape)
        for _ in range(draw(st.integers(1, max_blocks))):
            block = draw(st.sampled_from(sorted(_SEQ_BLOCKS)))
            _SEQ_BLOCKS[block](draw, g, batchnorm)
        _head(draw, g, ("GlobalAvgPool", "Flatten"))
    else:
        input_shape = (draw(st.integers(6, 12)),)
        g = _Graph(input_shape)
        g.last = g.add("embed", "Embedding", ("in",), input_dim=draw(st.integers(MIN_VOCAB, 20)),
                       output_dim=draw(st.integers(2, 6)))
        _conv(draw, g, batchnorm)
        g.last = g.add("globalmaxpool", "GlobalMaxPool", (g.last,))
        g.last = g.add("head", "Dense", (g.last,), units=draw(st.integers(1, 5)))
    arch = g.arch(f"random-{family}")
    return arch.validate(), input_shape


def random_input(
    input_shape: Sequence[int],
    key_or_seed: jax.Array | int,
    batch: int = 3,
    dtype: Any = jnp.float32,
    *,
    vocab: int | None = None,
) -> jax.Array:
    """A batch of inputs for an arch drawn by `archs()`.

    Rank-1 input shapes are the embedding family's token sequences: they get
    int32 ids in ``[0, vocab)`` (default `MIN_VOCAB`, valid for every drawn
    Embedding). Other shapes get standard-normal values of `dtype`.
    """
    key = jax.random.key(key_or_seed) if isinstance(key_or_seed, int) else key_or_seed
    shape = (batch, *input_shape)
    if len(input_shape) == 1:
        return jax.random.randint(key, shape, 0, vocab or MIN_VOCAB, dtype=jnp.int32)
    return jax.random.normal(key, shape, dtype)
