"""Built-in architecture families: MLPs and plain CNNs, as Deep-n-Cheap searches them."""

from __future__ import annotations

from typing import Sequence

from nas.ir.arch import Arch, Attrs, Node


class _Chain:
    """Appends nodes one after another, numbering ids per op kind."""

    def __init__(self, input_shape: Sequence[int] | None):
        shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.nodes = [Node("input", "Input", (), Attrs(shape=shape))]
        self.counts: dict[str, int] = {}

    @property
    def last(self) -> str:
        return self.nodes[-1].id

    def add(self, op: str, prefix: str, inputs: Sequence[str] | None = None, **attrs) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        node_id = f"{prefix}{self.counts[prefix]}"
        self.nodes.append(Node(node_id, op, tuple(inputs or (self.last,)), Attrs(attrs)))
        return node_id

    def block(self, op: str, prefix: str, *, batchnorm: bool, activation: str, dropout: float, **attrs) -> None:
        self.add(op, prefix, **attrs)
        if batchnorm:
            self.add("BatchNorm", "bn")
        self.add("Activation", "act", fn=activation)
        if dropout:
            self.add("Dropout", "drop", rate=dropout)

    def build(self, name: str) -> Arch:
        return Arch(tuple(self.nodes), ("input",), (self.last,), name)


def mlp(
    hidden: Sequence[int],
    num_classes: int,
    *,
    input_shape: Sequence[int] | None = None,
    activation: str = "relu",
    batchnorm: bool = False,
    dropout: float = 0.0,
    kernel_init: str = "he_normal",
    name: str = "",
) -> Arch:
    """Flatten, then Dense-[BatchNorm]-activation-[Dropout] per hidden width, then a Dense head.

    Args:
      hidden: width of each hidden layer (empty for logistic regression).
      num_classes: units of the head (1 for regression).
      input_shape: optional per-example shape stored on the Input node.
    Returns:
      The architecture; its output node is ``head`` (logits, no softmax).
    """
    chain = _Chain(input_shape)
    chain.add("Flatten", "flatten")
    for width in hidden:
        chain.block("Dense", "dense", batchnorm=batchnorm, activation=activation, dropout=dropout,
                    units=int(width), kernel_init=kernel_init)
    chain.nodes.append(Node("head", "Dense", (chain.last,), Attrs(units=int(num_classes))))
    return chain.build(name or "mlp-" + "-".join(map(str, hidden)))


def cnn(
    channels: Sequence[int],
    num_classes: int,
    *,
    input_shape: Sequence[int] | None = None,
    kernel_size: int = 3,
    downsample_after: Sequence[int] | None = None,
    downsample: str = "maxpool",
    batchnorm: bool = False,
    dropout: float = 0.0,
    head: str = "gap",
    dense: Sequence[int] = (),
    activation: str = "relu",
    kernel_init: str = "he_normal",
    name: str = "",
) -> Arch:
    """Conv-[BN]-activation blocks with downsampling, a GAP or Flatten head, Dense layers.

    Args:
      channels: output channels of each conv layer.
      num_classes: units of the head.
      downsample_after: indices of the conv layers followed by a 2x downsampling
        (default: every layer but the last).
      downsample: ``maxpool`` (2x2 max pooling) or ``stride`` (the conv itself
        uses stride 2), Deep-n-Cheap's two options.
      head: ``gap`` (global average pooling) or ``flatten``.
      dense: hidden Dense widths between the conv body and the head.
    Returns:
      The architecture; its output node is ``head``.
    """
    if downsample not in ("maxpool", "stride"):
        raise ValueError(f"downsample must be 'maxpool' or 'stride', got {downsample!r}")
    if head not in ("gap", "flatten"):
        raise ValueError(f"head must be 'gap' or 'flatten', got {head!r}")
    if downsample_after is None:
        downsample_after = range(len(channels) - 1)
    down = set(downsample_after)
    chain = _Chain(input_shape)
    for i, width in enumerate(channels):
        strided = i in down and downsample == "stride"
        chain.block("Conv2D", "conv", batchnorm=batchnorm, activation=activation, dropout=0.0,
                    filters=int(width), kernel_size=kernel_size, strides=2 if strided else 1,
                    kernel_init=kernel_init)
        if i in down and downsample == "maxpool":
            chain.add("MaxPool2D", "pool", pool_size=2, padding="same")
    chain.add("GlobalAvgPool" if head == "gap" else "Flatten", head)
    for width in dense:
        chain.block("Dense", "dense", batchnorm=False, activation=activation, dropout=dropout,
                    units=int(width), kernel_init=kernel_init)
    if dropout and not dense:
        chain.add("Dropout", "drop", rate=dropout)
    chain.nodes.append(Node("head", "Dense", (chain.last,), Attrs(units=int(num_classes))))
    return chain.build(name or "cnn-" + "-".join(map(str, channels)))


BUILTINS = {
    # name: (builder, keyword arguments); num_classes and input_shape come from the data.
    "mlp_small": (mlp, dict(hidden=(128,))),
    "mlp": (mlp, dict(hidden=(256, 256))),
    # conv16-pool-conv32-pool-flatten: XLA:CPU convolutions are slow, and this
    # one trains a Fashion-MNIST epoch on 2 cores in about a minute.
    "cnn_small": (cnn, dict(channels=(16, 32), downsample_after=(0, 1), head="flatten")),
    "cnn": (cnn, dict(channels=(32, 64, 128), batchnorm=True)),
}


def builtin(name: str, num_classes: int, input_shape: Sequence[int] | None = None) -> Arch:
    """One of the named built-in architectures (`BUILTINS`) sized for a dataset."""
    try:
        build, kwargs = BUILTINS[name]
    except KeyError:
        raise ValueError(f"unknown built-in architecture {name!r}; built-ins: {sorted(BUILTINS)}") from None
    return build(num_classes=num_classes, input_shape=input_shape, name=name, **kwargs)
