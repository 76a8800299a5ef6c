"""Training throughput: one candidate alone vs a population of K trained together (vmap).

Prints images/s for each and their ratio, all measured in this one run
(compilation excluded: t_tr is timed around the compiled epoch).

    python benchmarks/train_throughput.py                 # MLP 784-256-256-10, K=8
    python benchmarks/train_throughput.py --model cnn_small --k 4
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax

from nas.data import DatasetError, load_dataset
from nas.ir import builtin, mlp
from nas.train import OptimizerConfig, TrainConfig, to_device, train, train_population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion_mnist", help="dataset (falls back to digits if missing)")
    parser.add_argument("--max-train", type=int, default=20000, help="training examples used")
    parser.add_argument("--model", default="mlp", help="'mlp' (784-256-256-10 style) or a built-in name")
    parser.add_argument("--k", type=int, default=8, help="population size")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    try:
        data = load_dataset(args.data, max_train=args.max_train)
    except DatasetError as exc:
        print(f"# {exc}\n# falling back to digits")
        data = load_dataset("digits")
    arch = mlp((256, 256), data.num_outputs) if args.model == "mlp" else builtin(args.model, data.num_outputs)
    splits = to_device(data)
    base = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
    steps = len(data.x_train) // args.batch_size
    images_per_epoch = steps * args.batch_size

    single = train(arch, data, base, splits=splits)
    configs = [dataclasses.replace(base, seed=i, optimizer=OptimizerConfig(learning_rate=1e-3 * (1 + i % 3)))
               for i in range(args.k)]
    population = train_population(arch, data, configs, splits=splits)

    single_rate = images_per_epoch / single.t_tr
    # t_tr of a population member is the shared epoch time / K, so this is K * images / epoch time.
    population_rate = images_per_epoch / population[0].t_tr
    print(f"# device: {jax.devices()[0].device_kind} x{jax.device_count()}  cores: {os.cpu_count()}")
    print(f"# data: {data.name} ({len(data.x_train)} train examples), arch: {arch.name} "
          f"({arch.num_params(data.input_shape):,} params), batch {args.batch_size}, {args.epochs} epochs")
    print(f"{'setting':<24}{'epoch s':>10}{'images/s':>14}")
    print(f"{'1 candidate':<24}{single.t_tr:>10.3f}{single_rate:>14,.0f}")
    print(f"{f'population K={args.k}':<24}{population[0].t_tr * args.k:>10.3f}{population_rate:>14,.0f}")
    print(f"ratio (population / single): {population_rate / single_rate:.2f}x")


if __name__ == "__main__":
    main()
