"""What DREAM's feedback costs: epoch time with `train.feedback` on and off.

Feedback is, per step, each layer's gradient norm and, per ReLU node, the
fraction of units whose loss gradient at the pre-activation is zero for the
whole batch (the trainer differentiates with respect to a zero perturbation
of every ReLU input, `nas.compile.PROBES`). Both programs are otherwise the
same, so the ratio of their epoch times is the cost. Each setting trains
both programs `--repeats` times, alternating, and compares medians of two
clocks: wall time (`TrainResult.t_tr`, the median epoch, compilation
excluded) and the process's CPU time between consecutive epoch ends (one
epoch and its validation pass), which other processes on a shared machine
disturb far less than wall time. Every number comes from this one run.

    python benchmarks/feedback_cost.py                 # Fashion-MNIST if installed, else digits
    python benchmarks/feedback_cost.py --data digits --epochs 5 --repeats 5

The issue's budget is 5% of an epoch on an MLP and a CNN.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import jax

from nas.data import DatasetError, load_dataset
from nas.ir import cnn, mlp
from nas.train import TrainConfig, to_device, train


def _subset(data, n: int):
    """The first `n` training examples (a CNN epoch on all of Fashion-MNIST takes a minute on 2 cores)."""
    return dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])


def _cpu_seconds_per_epoch(arch, data, config, splits) -> tuple[float, float]:
    """(t_tr, median CPU seconds of the process between consecutive epoch ends: one epoch plus its validation)."""
    stamps = []
    result = train(arch, data, config, splits=splits, on_epoch=lambda epoch, rows: stamps.append(time.process_time()))
    return result.t_tr, statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def measure(arch, data, batch_size: int, epochs: int, repeats: int) -> dict[bool, tuple[float, float]]:
    """feedback on/off -> (median wall seconds per epoch, median CPU seconds per epoch)."""
    splits = to_device(data)
    on = TrainConfig(epochs=epochs, batch_size=batch_size, feedback=True)
    off = dataclasses.replace(on, feedback=False)
    times = {True: [], False: []}
    for _ in range(repeats):
        for config in (on, off):
            times[config.feedback].append(_cpu_seconds_per_epoch(arch, data, config, splits))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="digits or fashion_mnist (default: fashion_mnist if installed)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=6000, help="training examples used")
    args = parser.parse_args()

    name = args.data
    if name is None:
        try:
            data, name = load_dataset("fashion_mnist"), "fashion_mnist"
        except DatasetError:
            data, name = load_dataset("digits"), "digits"
    else:
        data = load_dataset(name)
    data = _subset(data, args.max_train)
    settings = (  # (label, architecture, batch size)
        ("MLP 256-256", mlp([256, 256], data.num_outputs), 64),
        ("CNN 16-32", cnn([16, 32], data.num_outputs, downsample_after=(0, 1), head="flatten"), 64),
    )
    print(f"# device: {jax.devices()[0].device_kind} x{jax.device_count()}, cores: {os.cpu_count()}, "
          f"data: {name} ({len(data.x_train)} training examples), epochs {args.epochs}, repeats {args.repeats}")
    print(f"{'model':<14}{'batch':>6}{'wall on':>10}{'wall off':>10}{'on/off':>8}"
          f"{'CPU on':>10}{'CPU off':>10}{'on/off':>8}   (seconds per epoch, medians)")
    for label, arch, batch_size in settings:
        t = measure(arch, data, batch_size, args.epochs, args.repeats)
        (wall_on, cpu_on), (wall_off, cpu_off) = t[True], t[False]
        print(f"{label:<14}{batch_size:>6}{wall_on:>10.4f}{wall_off:>10.4f}{wall_on / wall_off:>8.3f}"
              f"{cpu_on:>10.4f}{cpu_off:>10.4f}{cpu_on / cpu_off:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
