"""Training throughput: one candidate alone vs a population of K trained together (vmap).

For each setting, trains one candidate and then K candidates of the same
architecture as one vmapped program, and prints images/s for both and their
ratio; every number comes from this one run. Epoch times are medians over
the epochs (compilation excluded), i.e. `TrainResult.t_tr`.

    python benchmarks/train_throughput.py            # K=8, the settings below
    python benchmarks/train_throughput.py --k 16 --epochs 8

Population training pays where one candidate leaves the device idle: small
candidates on any device, and nearly everything on a GPU. On a 2-core CPU a
784-256-256 MLP already keeps both cores busy, so expect little gain there.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax

from nas.data import DatasetError, load_dataset
from nas.ir import mlp
from nas.train import TrainConfig, to_device, train, train_population

SETTINGS = (  # (dataset, hidden widths, batch size)
    ("digits", (32,), 64),
    ("digits", (128,), 64),
    ("digits", (256, 256), 64),
    ("fashion_mnist", (256, 256), 256),
)


def measure(data, hidden, batch_size: int, k: int, epochs: int) -> tuple[float, float]:
    """(images/s alone, images/s for the population) on `data`."""
    arch = mlp(hidden, data.num_outputs)
    splits = to_device(data)
    base = TrainConfig(epochs=epochs, batch_size=batch_size)
    images = (len(data.x_train) // batch_size) * batch_size
    alone = train(arch, data, base, splits=splits)
    together = train_population(arch, data, [dataclasses.replace(base, seed=i) for i in range(k)], splits=splits)
    # A member's t_tr is the population's epoch time / K.
    return images / alone.t_tr, images / together[0].t_tr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=8, help="population size")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-train", type=int, default=20000, help="Fashion-MNIST training examples used")
    args = parser.parse_args()

    print(f"# device: {jax.devices()[0].device_kind} x{jax.device_count()}, cores: {os.cpu_count()}, K={args.k}")
    print(f"{'data':<14}{'MLP':<12}{'batch':>6}{'1 alone img/s':>16}{f'K={args.k} img/s':>14}{'ratio':>8}")
    loaded = {}
    for name, hidden, batch_size in SETTINGS:
        if name not in loaded:
            try:
                loaded[name] = load_dataset(name, max_train=args.max_train if name == "fashion_mnist" else None)
            except DatasetError as exc:
                print(f"# {name}: skipped ({exc})")
                continue
        single, population = measure(loaded[name], hidden, batch_size, args.k, args.epochs)
        widths = "-".join(map(str, hidden))
        print(f"{name:<14}{widths:<12}{batch_size:>6}{single:>16,.0f}{population:>14,.0f}{population / single:>7.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
