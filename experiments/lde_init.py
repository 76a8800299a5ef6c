"""LDE initialisation (NeuNetS, TAPAS, paper section 4.1.2), scaled to this machine.

Fills a lifelong database of experiments (`nas.lde.LDE`) the way the paper
does before TAPAS's predictor has anything to learn from: for each of
several classification datasets that span a range of difficulty (DCN), it
samples networks from the MetaQNN-like space (`nas.tapas.metaqnn`) and
trains every prefix sub-network l_1..k of each (the paper's incremental
training), appending each prefix as one `ExperimentRecord`
(source kind ``lde_init``, one `lineage` per network, `prefix` = k). Each
dataset's DCN (`nas.tapas.dcn.dataset_dcn`) is computed once and stored.

Scaled down from the paper (800 networks per dataset, 18 GPU-months):

* every sub-network trains with one fixed recipe (`RECIPE`: 4 epochs, Adam,
  learning rate 1e-3, batch 64, seed 0, no augmentation), as the paper
  fixes one recipe for all; each prefix trains from scratch with the same
  seed (the paper's incremental method [39] reuses the shorter network's
  weights; from scratch costs more but gives each A_k independently of the
  order the prefixes were trained in);
* the datasets are small (`DATASETS`): digits, Fashion-MNIST subsets of
  ~2,000 training images (clean, 20% and 50% label noise, rotated,
  downsampled to 14x14), 300 images, and generated Gaussian-blob images
  (easy and hard).

Chunked and resumable: networks are taken round-robin, `--chunk` per
dataset per round, until `--networks-per-dataset` each or `--max-minutes`.
Each prefix is appended as soon as it has trained under a key fixed by
(dataset fingerprint, seed, network index, prefix), so a killed run resumes
where it stopped: prefixes already in the LDE are skipped (appends are
idempotent anyway), and network i of a dataset is always the same network
(its generator is seeded by (seed, dataset name, i)).

    JAX_PLATFORMS=cpu nice -n 10 .venv/bin/python experiments/lde_init.py \\
        --lde runs/lde_init/lde.sqlite --networks-per-dataset 50 --chunk 2 --max-minutes 40

The report (datasets with DCN, networks and experiments per dataset, wall
time, machine, seeds, the command) goes to --results
(experiments/results/lde_init.md) and stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import os
import platform
import sys
import time
import zlib
from typing import Callable

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from nas.data import Dataset, from_arrays, load_dataset  # noqa: E402
from nas.data.fashion_mnist import DIR_ENV_VAR, locate_idx_dir, read_idx_dir  # noqa: E402
from nas.data.splits import stratified_sample  # noqa: E402

DEFAULT_LDE = os.path.join(REPO, "runs", "lde_init", "lde.sqlite")
DEFAULT_RESULTS = os.path.join(REPO, "experiments", "results", "lde_init.md")
SOURCE_KIND = "lde_init"
RECIPE = {"recipe": "lde_init-v1", "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 64, "epochs": 4,
          "seed": 0, "feedback": False}


# ------------------------------------------------------------------ datasets
@functools.lru_cache(maxsize=1)
def _fashion_pool() -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's 60,000 official training images (uint8, N x 28 x 28 x 1) and labels."""
    raw = read_idx_dir(locate_idx_dir(None, os.environ.get(DIR_ENV_VAR) or None))
    return raw.x_train, raw.y_train.astype(np.int64)


def _fashion_subset(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified pool of `size` Fashion-MNIST images; from_arrays keeps 70% of it for training."""
    x, y = _fashion_pool()
    keep, _ = stratified_sample(y, size, np.random.default_rng(seed))
    return x[keep], y[keep]


def _noisy(y: np.ndarray, fraction: float, classes: int, seed: int) -> np.ndarray:
    """`fraction` of the labels (every split: the dataset itself is noisy) replaced by another class."""
    rng = np.random.default_rng(seed + 1)
    flip = rng.random(len(y)) < fraction
    shifted = (y + rng.integers(1, classes, len(y))) % classes
    return np.where(flip, shifted, y)


def _blobs(n: int, classes: int, size: int, jitter: float, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` size x size images of one Gaussian blob each; the class fixes the blob's mean position.

    Each class has a centre drawn once; an image's blob sits at its class's
    centre moved by N(0, jitter) pixels, plus N(0, noise) pixel noise: more
    classes, more jitter and more noise make the classes overlap.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(3, size - 3, (classes, 2))
    y = np.arange(n) % classes
    rng.shuffle(y)
    pos = centres[y] + rng.normal(0, jitter, (n, 2))
    grid = np.arange(size, dtype=np.float64)
    dy = (grid[None, :] - pos[:, 0:1]) ** 2
    dx = (grid[None, :] - pos[:, 1:2]) ** 2
    images = np.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * 2.0 ** 2))
    images += rng.normal(0, noise, images.shape)
    return images[..., None].astype(np.float32), y.astype(np.int64)


def _arrays(name: str, x: np.ndarray, y: np.ndarray, seed: int) -> Dataset:
    return from_arrays(x, y, name=name, seed=seed).dataset


FASHION_POOL = 2860  # 70% of it, ~2,000 images, trains
SMALL_POOL = 430  # ~300 training images


def _fmnist(seed: int) -> Dataset:
    return _arrays("fmnist_2k", *_fashion_subset(FASHION_POOL, seed), seed)


def _fmnist_noise(fraction: float) -> Callable[[int], Dataset]:
    def build(seed: int) -> Dataset:
        x, y = _fashion_subset(FASHION_POOL, seed)
        return _arrays(f"fmnist_2k_noise{round(fraction * 100)}", x, _noisy(y, fraction, 10, seed), seed)
    return build


def _fmnist_small(seed: int) -> Dataset:
    return _arrays("fmnist_300", *_fashion_subset(SMALL_POOL, seed), seed)


def _fmnist_14px(seed: int) -> Dataset:
    x, y = _fashion_subset(FASHION_POOL, seed)
    small = x.astype(np.float32).reshape(len(x), 14, 2, 14, 2, 1).mean(axis=(2, 4)) / 255.0
    return _arrays("fmnist_2k_14px", small, y, seed)


def _fmnist_rot90(seed: int) -> Dataset:
    x, y = _fashion_subset(FASHION_POOL, seed)
    return _arrays("fmnist_2k_rot90", np.rot90(x, 1, axes=(1, 2)).copy(), y, seed)


def _digits(seed: int) -> Dataset:
    return load_dataset("digits", seed=seed)


def _blobs_easy(seed: int) -> Dataset:
    return _arrays("blobs_easy", *_blobs(2000, 4, 16, 1.0, 0.3, seed + 7), seed)


def _blobs_hard(seed: int) -> Dataset:
    return _arrays("blobs_hard", *_blobs(2000, 10, 16, 2.5, 1.0, seed + 11), seed)


# name -> builder(seed) -> Dataset, cheapest first (digits and blobs are small images).
DATASETS: dict[str, Callable[[int], Dataset]] = {
    "digits": _digits,
    "blobs_easy": _blobs_easy,
    "blobs_hard": _blobs_hard,
    "fmnist_2k": _fmnist,
    "fmnist_2k_14px": _fmnist_14px,
    "fmnist_2k_rot90": _fmnist_rot90,
    "fmnist_2k_noise20": _fmnist_noise(0.2),
    "fmnist_2k_noise50": _fmnist_noise(0.5),
    "fmnist_300": _fmnist_small,
}


def build_dataset(name: str, seed: int = 0) -> Dataset:
    try:
        return DATASETS[name](seed)
    except KeyError:
        raise SystemExit(f"lde_init: unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


# ------------------------------------------------------------------ one network
def lineage_id(fingerprint: str, seed: int, index: int) -> str:
    """The stable id a network and its prefixes share: (dataset, network index, seed)."""
    return "lde_init:" + hashlib.sha256(f"{fingerprint}:{seed}:{index}".encode()).hexdigest()[:20]


def experiment_key(lineage: str, prefix: int) -> str:
    return f"{lineage}#prefix{prefix}"


def network_rng(name: str, seed: int, index: int) -> np.random.Generator:
    """Network `index` of dataset `name` is the same network in every run (resumes need no replay)."""
    return np.random.default_rng((seed, zlib.crc32(name.encode()), index))


@dataclasses.dataclass
class Tally:
    networks: int = 0  # networks with every prefix in the LDE
    trained: int = 0  # prefixes trained by this invocation
    added: int = 0  # rows this invocation added
    failed: int = 0
    seconds: float = 0.0


def train_network(lde, dataset: Dataset, record, index: int, seed: int, epochs: int, deadline: float,
                  tally: Tally, present: set[str]) -> bool:
    """Trains the missing prefixes of network `index`; False when the deadline stopped it early."""
    from nas.lde.ingest import experiment
    from nas.tapas.metaqnn import arch_of, sample
    from nas.train import OptimizerConfig, TrainConfig, train

    network = sample(network_rng(dataset.name, seed, index), dataset.input_shape, dataset.num_classes)
    lineage = lineage_id(record.fingerprint, seed, index)
    settings = dict(RECIPE, epochs=epochs, seed=seed)
    config = TrainConfig(epochs=epochs, batch_size=min(RECIPE["batch_size"], len(dataset.y_train)),
                         optimizer=OptimizerConfig("adam", learning_rate=RECIPE["learning_rate"]), seed=seed,
                         feedback=False)
    for k in range(1, len(network) + 1):
        key = experiment_key(lineage, k)
        if key in present:
            continue
        if time.monotonic() > deadline:
            return False
        arch = arch_of(network, dataset.input_shape, dataset.num_classes, k)
        start = time.perf_counter()
        try:
            result = train(arch, dataset, config)
            status, history, run_epochs, t_tr, params = (result.status, result.history, result.epochs,
                                                         result.t_tr, result.num_params)
        except Exception as exc:  # a sub-network the trainer refuses is an experiment too: recorded as failed
            print(f"  {dataset.name} net {index} prefix {k}: failed: {exc}", flush=True)
            status, history, run_epochs, t_tr, params = "failed", (), 0, None, arch.num_params(dataset.input_shape)
            tally.failed += 1
        seconds = time.perf_counter() - start
        source = {"kind": SOURCE_KIND, "script": "experiments/lde_init.py", "dataset": dataset.name,
                  "network": index, "seed": seed, "layers": len(network), "seconds": round(seconds, 3),
                  "spec": network.to_dict()}
        row = experiment(key=key, dataset=record, arch=arch, settings=settings, history=history, status=status,
                         epochs=run_epochs, t_tr=t_tr, num_params=params, source=source, lineage=lineage, prefix=k)
        tally.added += lde.append([row], dataset=record)
        tally.trained += 1
        tally.seconds += seconds
        present.add(key)
        peak = "-" if row.peak_val is None else f"{row.peak_val:.3f}"
        print(f"  {dataset.name} net {index} ({network.kind}, {len(network)} layers) prefix {k}: "
              f"peak {peak} in {seconds:.1f} s", flush=True)
    tally.networks += 1
    return True


# ------------------------------------------------------------------ the run
def run(args: argparse.Namespace) -> dict:
    from nas.lde import LDE, dataset_record
    from nas.tapas.dcn import dataset_dcn, probe_key

    os.makedirs(os.path.dirname(os.path.abspath(args.lde)), exist_ok=True)
    started = time.monotonic()
    deadline = started + args.max_minutes * 60 if args.max_minutes else float("inf")
    rows = {}
    with LDE(args.lde) as lde:
        prepared = []
        for name in args.datasets:
            dataset = build_dataset(name, args.data_seed)
            record = dataset_record(dataset)
            lde.add_dataset(record)
            t0 = time.perf_counter()
            dcn = dataset_dcn(lde, dataset, epochs=args.dcn_epochs)
            print(f"{name}: DCN {dcn:.3f} ({time.perf_counter() - t0:.1f} s; {len(dataset.y_train)} train, "
                  f"{len(dataset.y_val)} val, shape {list(dataset.input_shape)})", flush=True)
            present = {e.key for e in lde.experiments(datasets=[record.fingerprint])
                       if e.source.get("kind") == SOURCE_KIND}
            prepared.append((name, dataset, record, present))
            rows[name] = {"dcn": dcn, "tally": Tally(), "record": record}
        next_index = {name: 0 for name in args.datasets}
        stopped = False
        while not stopped and any(next_index[n] < args.networks_per_dataset for n in next_index):
            for name, dataset, record, present in prepared:
                for _ in range(args.chunk):
                    i = next_index[name]
                    if i >= args.networks_per_dataset:
                        break
                    if not train_network(lde, dataset, record, i, args.seed, args.epochs, deadline,
                                         rows[name]["tally"], present):
                        stopped = True
                        break
                    next_index[name] = i + 1
                if stopped:
                    break
        wall = time.monotonic() - started
        summary = []
        for name, dataset, record, present in prepared:
            mine = [e for e in lde.experiments(datasets=[record.fingerprint]) if e.source.get("kind") == SOURCE_KIND]
            lineages = {}
            for e in mine:
                lineages.setdefault(e.lineage, []).append(e)
            complete = sum(1 for es in lineages.values() if len(es) == es[0].source.get("layers"))
            t = rows[name]["tally"]
            summary.append({"name": name, "fingerprint": record.fingerprint[:12], "dcn": rows[name]["dcn"],
                            "shape": "x".join(map(str, dataset.input_shape)), "train": len(dataset.y_train),
                            "networks": len(lineages), "complete": complete, "experiments": len(mine),
                            "done": sum(e.status == "done" for e in mine), "added_now": t.added,
                            "trained_now": t.trained, "train_seconds_now": t.seconds,
                            "mean_peak": float(np.mean([e.peak_val for e in mine if e.peak_val is not None]))
                            if any(e.peak_val is not None for e in mine) else None})
        total = lde.count()
    return {"summary": summary, "wall": wall, "stopped_by_time": stopped, "total": total,
            "probe": probe_key(epochs=args.dcn_epochs)}


def report(args: argparse.Namespace, out: dict) -> str:
    lines = [
        "# LDE initialisation (TAPAS, NeuNetS section 4.1.2)",
        "",
        f"Generated by `experiments/lde_init.py` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- command: `{' '.join(['JAX_PLATFORMS=cpu', 'nice', '-n', '10', '.venv/bin/python'] + sys.argv)}`",
        f"- LDE: `{os.path.relpath(os.path.abspath(args.lde), REPO)}` ({out['total']} experiments in all)",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), {platform.python_version()}, "
        f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')}",
        f"- seeds: networks and training seed {args.seed}, dataset splits seed {args.data_seed}",
        f"- recipe (every sub-network): {dict(RECIPE, epochs=args.epochs, seed=args.seed)}; each prefix l_1..k "
        "trains from scratch and closes with GlobalAvgPool (images) + Dense",
        f"- DCN probe: `{out['probe']}` ({args.dcn_epochs} epochs; `nas.tapas.dcn`)",
        f"- wall time of this invocation: {out['wall'] / 60:.1f} min"
        + (" (stopped by --max-minutes; rerun the same command to continue)" if out["stopped_by_time"] else ""),
        "",
        "| dataset | shape | train | DCN | networks (complete) | experiments | done | mean peak val | "
        "added now | train s now |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sorted(out["summary"], key=lambda s: -s["dcn"]):
        peak = "-" if s["mean_peak"] is None else f"{s['mean_peak']:.3f}"
        lines.append(f"| {s['name']} | {s['shape']} | {s['train']} | {s['dcn']:.3f} | {s['networks']} "
                     f"({s['complete']}) | {s['experiments']} | {s['done']} | {peak} | {s['added_now']} | "
                     f"{s['train_seconds_now']:.0f} |")
    n = sum(s["experiments"] for s in out["summary"])
    lines += ["", f"Total lde_init experiments over these datasets: {n}; "
              f"networks: {sum(s['networks'] for s in out['summary'])}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lde", default=DEFAULT_LDE, help="the LDE file (default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--networks-per-dataset", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=2, help="networks per dataset per round-robin round")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop starting trainings after this")
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--dcn-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--results", default=DEFAULT_RESULTS, help="markdown report ('' for none)")
    args = parser.parse_args(argv)
    if args.networks_per_dataset < 0 or args.chunk < 1 or args.epochs < 1:
        parser.error("--networks-per-dataset >= 0, --chunk >= 1 and --epochs >= 1")
    out = run(args)
    text = report(args, out)
    print(text)
    if args.results:
        os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
        with open(args.results, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
