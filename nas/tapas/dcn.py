"""The dataset characterisation number (DCN): how hard a classification dataset is.

TAPAS (NeuNetS, paper section 4.1.2, after Scheidegger et al.'s probe nets)
characterises a dataset by the peak validation accuracy, in [0, 1], that a
fixed, modest probe network reaches after ten epochs. TAPAS then compares
datasets by this one number (the LDE's neighbours within tau) and feeds it to
its accuracy predictor.

The probe ("deep normalised ProbeNet", scaled to a 2-core CPU), `probe_arch`:

* images (rank-3 inputs, H x W x C): images larger than 16 pixels on their
  short side are first averaged 2x2 (the paper's subsampling in pixels, iv);
  then three 3x3 convolutions of 16, 32 and 64 filters, each followed by
  BatchNorm and ReLU, with a 2x2 max-pooling (padding 'same', so odd sizes
  round up) before the second and third while the map is at least 4 pixels
  high and wide; then global average pooling and a Dense layer with one unit
  per class. 28x28 inputs: 28 -> 14 -> 7 -> 4; 8x8 digits: 8 -> 4 -> 2.
  About 24 k parameters and 1.1 MFLOPs per 28x28 image.
* anything else (vectors, sequences): Flatten, then three Dense(128) +
  BatchNorm + ReLU blocks and the Dense head: the same "deep and normalised"
  idea for inputs convolutions do not fit.

Why this shape: the paper's probe is deep (several conv layers) and
normalised (BatchNorm after every convolution), so it trains stably with one
fixed recipe on every dataset, with no per-dataset tuning, which is what
makes its accuracy comparable across datasets. Depth, widths and resolution
are cut (the paper runs on a P100): a first version with five convolutions
(16, 16, 32, 32, 64) at full 28x28 resolution cost 11 MFLOPs per image and
365 s for 2 epochs of 5,000 Fashion-MNIST images on this shared 2-core
machine, far too slow for a number computed for every new dataset. BatchNorm
uses momentum 0.9 rather than Keras's 0.99: after the ~300 steps of a probe
run, 0.99's running statistics still carry their initial values (0.99^300 =
5%, but 0.99^150 = 22%), and evaluation with them understates accuracy (the
first version read 0.38 after 2 epochs on Fashion-MNIST).

The recipe is fixed: Adam, learning rate 1e-3, batch 64, 10 epochs, seed 0,
DREAM feedback off (speed); at most `max_train` (default 2,000) training
images (a stratified subsample, as the paper subsamples large datasets) and at most
`MAX_VAL` validation images (stratified). The DCN is the best validation
accuracy over the epochs.

`dataset_dcn` caches the DCN in the lifelong database of experiments
(`nas.lde.LDE`) by the dataset's fingerprint and the probe's identity
(`probe_key`: `PROBE_ID`, plus the recipe when it is not the default), so a
changed probe or recipe never reuses a number measured with another.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nas.data import Dataset
from nas.data.splits import stratified_sample
from nas.ir import Arch, Attrs, Node

if TYPE_CHECKING:  # the LDE is passed in; nothing here needs it at import time
    from nas.lde import LDE

log = logging.getLogger(__name__)

# Bump when the probe or its recipe changes: DCNs cached under another id are ignored.
PROBE_ID = "deepnorm-probenet-v1"
DEFAULT_EPOCHS = 10
DEFAULT_MAX_TRAIN = 2000
DEFAULT_SEED = 0
# A validation split this large measures accuracy to about +-1% (binomial
# standard error sqrt(0.25 / 2000) = 0.011) while keeping evaluation cheap.
MAX_VAL = 2000
BATCH_SIZE = 64
LEARNING_RATE = 1e-3

# Stage widths and convolutions per stage of the image probe; the vector probe's hidden widths.
STAGES = ((16, 1), (32, 1), (64, 1))
MLP_HIDDEN = (128, 128, 128)
# Pool between stages only while the map is at least this high and wide.
MIN_POOL_SIZE = 4
# Images larger than this on their short side are first averaged 2x2.
MAX_PROBE_SIZE = 16
# Short probe runs need running statistics that forget their initial values quickly.
BN_MOMENTUM = 0.9


def probe_arch(input_shape: Sequence[int], num_classes: int) -> Arch:
    """The probe network for inputs of `input_shape` and `num_classes` classes.

    Args:
      input_shape: per-example shape without the batch axis; rank 3 (H, W, C)
        gets the convolutional probe, any other rank the normalised MLP.
      num_classes: units of the Dense head (at least 2).
    Returns:
      A validated `Arch` whose Input node declares `input_shape` and whose
      output node ``head`` gives logits.
    Raises:
      ValueError: fewer than two classes or an empty shape.
    """
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"probe_arch: input_shape must be positive sizes, got {list(input_shape)}")
    if isinstance(num_classes, bool) or int(num_classes) < 2:
        raise ValueError(f"probe_arch: the DCN is for classification with at least 2 classes, got {num_classes!r}")
    nodes = [Node("input", "Input", (), Attrs(shape=shape))]

    def add(node_id: str, op: str, **attrs) -> None:
        nodes.append(Node(node_id, op, (nodes[-1].id,), Attrs(attrs)))

    if len(shape) == 3:
        height, width = shape[:2]
        if min(height, width) > MAX_PROBE_SIZE:
            add("downsample", "AvgPool2D", pool_size=2, padding="same")
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        for stage, (filters, convs) in enumerate(STAGES, start=1):
            if stage > 1 and min(height, width) >= MIN_POOL_SIZE:
                add(f"pool{stage - 1}", "MaxPool2D", pool_size=2, padding="same")
                height, width = math.ceil(height / 2), math.ceil(width / 2)
            for j in range(1, convs + 1):
                add(f"conv{stage}_{j}", "Conv2D", filters=filters, kernel_size=3, padding="same",
                    use_bias=False, kernel_init="he_normal")  # BatchNorm's offset is the bias
                add(f"bn{stage}_{j}", "BatchNorm", momentum=BN_MOMENTUM)
                add(f"relu{stage}_{j}", "Activation", fn="relu")
        add("gap", "GlobalAvgPool")
    else:
        add("flatten", "Flatten")
        for i, units in enumerate(MLP_HIDDEN, start=1):
            add(f"dense{i}", "Dense", units=units, use_bias=False, kernel_init="he_normal")
            add(f"bn{i}", "BatchNorm", momentum=BN_MOMENTUM)
            add(f"relu{i}", "Activation", fn="relu")
    add("head", "Dense", units=int(num_classes))
    return Arch(tuple(nodes), ("input",), ("head",), PROBE_ID).validate(shape)


def probe_key(*, epochs: int = DEFAULT_EPOCHS, max_train: int = DEFAULT_MAX_TRAIN, seed: int = DEFAULT_SEED) -> str:
    """The probe identity a DCN is cached under: `PROBE_ID`, plus the recipe when it is not the default."""
    if (epochs, max_train, seed) == (DEFAULT_EPOCHS, DEFAULT_MAX_TRAIN, DEFAULT_SEED):
        return PROBE_ID
    return f"{PROBE_ID}:epochs={epochs}:max_train={max_train}:seed={seed}"


def probe_subset(dataset: Dataset, *, max_train: int = DEFAULT_MAX_TRAIN, seed: int = DEFAULT_SEED) -> Dataset:
    """`dataset` with at most `max_train` training and `MAX_VAL` validation examples, stratified by class."""
    rng = np.random.default_rng(seed)
    changes = {}
    for split, cap in (("train", max_train), ("val", MAX_VAL)):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if len(y) > cap:
            keep, _ = stratified_sample(y, cap, rng)
            changes[f"x_{split}"], changes[f"y_{split}"] = x[keep], y[keep]
    return dataclasses.replace(dataset, **changes) if changes else dataset


def _check_classification(dataset: Dataset) -> None:
    if dataset.task != "classification":
        raise ValueError(f"DCN of dataset {dataset.name!r}: the DCN is a classification accuracy and "
                         f"{dataset.name!r} is a {dataset.task} task; TAPAS characterises classification data only")


def compute_dcn(dataset: Dataset, *, epochs: int = DEFAULT_EPOCHS, max_train: int = DEFAULT_MAX_TRAIN,
                seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Trains the probe on `dataset` and returns (DCN, seconds).

    Args:
      dataset: a classification `Dataset` (already split and normalised).
      epochs: training epochs of the probe (the paper's ten).
      max_train: at most this many training examples (stratified subsample).
      seed: the subsample, the probe's initialisation and the shuffling.
    Returns:
      (the peak validation accuracy over the epochs, in [0, 1]; wall seconds,
      compilation included).
    Raises:
      ValueError: a regression dataset, or max_train/epochs below 1.
    """
    from nas.train import OptimizerConfig, TrainConfig, train  # jax only when a probe actually trains

    _check_classification(dataset)
    if max_train < 1 or epochs < 1:
        raise ValueError(f"compute_dcn: max_train and epochs must be >= 1, got {max_train}, {epochs}")
    start = time.perf_counter()
    data = probe_subset(dataset, max_train=max_train, seed=seed)
    config = TrainConfig(epochs=epochs, batch_size=min(BATCH_SIZE, len(data.y_train)),
                         optimizer=OptimizerConfig("adam", learning_rate=LEARNING_RATE), seed=seed, feedback=False)
    result = train(probe_arch(data.input_shape, data.num_classes), data, config)
    accuracies = [row["val_accuracy"] for row in result.history if math.isfinite(row.get("val_accuracy", math.nan))]
    dcn = float(max(accuracies)) if accuracies else 0.0  # a probe that diverged at once learned nothing
    seconds = time.perf_counter() - start
    log.info("DCN of %s: %.4f (%d train, %d val, %d epochs, %.1f s)", dataset.name, dcn, len(data.y_train),
             len(data.y_val), epochs, seconds)
    return dcn, seconds


def dataset_dcn(lde: "LDE | None", dataset: Dataset, *, epochs: int = DEFAULT_EPOCHS,
                max_train: int = DEFAULT_MAX_TRAIN, seed: int = DEFAULT_SEED) -> float:
    """The DCN of `dataset`, read from the LDE when it holds one for this probe, else computed and stored.

    Args:
      lde: the lifelong database of experiments, or None to compute without caching.
      dataset, epochs, max_train, seed: as `compute_dcn`.
    Returns:
      The DCN in [0, 1].
    Raises:
      ValueError: a regression dataset (before anything trains or is stored).
    """
    _check_classification(dataset)
    if lde is None:
        return compute_dcn(dataset, epochs=epochs, max_train=max_train, seed=seed)[0]
    from nas.lde import dataset_record

    record = dataset_record(dataset)
    probe = probe_key(epochs=epochs, max_train=max_train, seed=seed)
    cached = lde.dcn(record.fingerprint, probe=probe)
    if cached is not None:
        return float(cached)
    value, seconds = compute_dcn(dataset, epochs=epochs, max_train=max_train, seed=seed)
    lde.add_dataset(record)
    lde.set_dcn(record.fingerprint, value, probe=probe, seconds=seconds)
    return value
