"""DREAM's priority-table experiment (TOSEM'24 s4.4): P(action | A-C-G-W condition), measured.

For each random model (`nas.search.dream.random_models`): train it, name its
condition from its feedback (`conditions.classify`), apply EVERY applicable
action (`actions.applicable_actions`), retrain each child from scratch with
the same budget and seed, and record one row per (model, action)::

    {model, dataset, seed, condition, action, parent_acc, child_acc, delta, seconds,
     status, child_best_acc, family}

The table (`nas.search.dream.priorities`) is the mean delta per (condition,
action), written at the end, when `--max-seconds` runs out, or with
`--table-only`.

Accuracies are the best validation accuracy over the epochs (the score the
search records for a trial). A model that DIVERGED (non-finite loss or
weights: `TrainResult.status == "diverged"`) or whose training FAILED (an
exception, e.g. the size guard) counts as accuracy 0.0, the convention
`priorities.from_measurements` documents: a search treats such a trial as
the worst outcome. The row keeps ``status`` and ``child_best_acc`` (the best
validation accuracy before divergence) so another convention can be
recomputed from the file; nothing is dropped.

Scale (the paper: 300 models, 15 epochs, batch 32, full datasets): by
default 5 epochs, batch 32, 1500 training examples; the provenance says so.

Datasets, disjoint from digits and Fashion-MNIST, on which DREAM is
evaluated (`DATASETS`; the provenance records each one's recipe):

- ``shapes14``: generated 14x14 greyscale images of 8 shape classes (bars,
  diagonals, outlined squares, disks, crosses, rings) at random positions,
  sizes and contrasts, with Gaussian noise; image-like, for CNN families.
- ``tabular``: scikit-learn's `make_classification` (24 features, 6 classes,
  2 clusters per class, 3% flipped labels); MLPs only.
- ``fashion_rot14`` (optional; needs the Fashion-MNIST IDX files, found as
  `nas.data` finds them): Fashion-MNIST *training* images rotated 90 degrees,
  2x2-mean downsampled to 14x14, labels permuted by a fixed permutation.

Chunked and resumable: rows go to ``<out>/measurements.jsonl`` and parents to
``<out>/parents.jsonl``, one JSON line each, flushed and fsync'd; a restart
skips what is recorded and ignores (truncates) a torn last line, so a SIGKILL
loses at most the training in flight: one child, or one population of
same-architecture children (``learning_rate=`` / ``weight_decay=`` actions,
trained together with `nas.train.train_population` unless
``--no-population``). ``<out>/run.json`` pins the settings a resume must
share; ``<out>/chunks.jsonl`` logs each invocation (command, wall seconds).

Run (the shipped table)::

    nice -n 5 .venv/bin/python experiments/dream_priorities.py --out runs/dream_priorities \\
        --models 60 --max-seconds 1800 --table conf/dream/priorities/shipped.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import shlex
import sys
import time
from collections import Counter
from typing import Any, Callable, Iterable

import numpy as np

from nas.data import Dataset
from nas.data.arrays import from_arrays
from nas.search.dream import priorities
from nas.search.dream.actions import ACTIONS, Action, applicable_actions
from nas.search.dream.conditions import architecture_family, classify, load_thresholds
from nas.search.dream.random_models import model_seed, random_model
from nas.search.problem import Problem
from nas.train import DIVERGED, DONE, TrainConfig, to_device, train, train_population

FAILED = "failed"
VAL_FRACTION = TEST_FRACTION = 0.15
# Settings a resumed run must share with the run that started the directory.
PINNED = ("seed", "epochs", "batch_size", "train_size", "datasets", "actions", "population")


class ExperimentError(RuntimeError):
    """A run directory that cannot be resumed (other settings, a corrupt file)."""


# ------------------------------------------------------------------ datasets
def _pool_size(train_size: int) -> int:
    """Examples to generate so the train split holds about `train_size` after val/test are carved out."""
    return int(math.ceil(train_size / (1 - VAL_FRACTION - TEST_FRACTION)))


def _shapes14(train_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n, side = _pool_size(train_size), 14
    rng = np.random.default_rng([seed, 14])
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    labels = rng.integers(0, 8, size=n)
    images = np.empty((n, side, side), np.float32)
    for k, label in enumerate(labels):
        cy, cx = rng.uniform(4, side - 4, size=2)
        r = rng.uniform(2.0, 4.0)
        w = rng.uniform(0.6, 1.4)
        dy, dx = yy - cy, xx - cx
        mask = {
            0: (np.abs(dy) < w) & (np.abs(dx) < r + 1),                      # horizontal bar
            1: (np.abs(dx) < w) & (np.abs(dy) < r + 1),                      # vertical bar
            2: (np.abs(dy - dx) < w * 1.4) & (np.abs(dx) < r),               # diagonal \
            3: (np.abs(dy + dx) < w * 1.4) & (np.abs(dx) < r),               # diagonal /
            4: (np.maximum(np.abs(dy), np.abs(dx)) < r)
               & (np.maximum(np.abs(dy), np.abs(dx)) > r - w - 0.4),         # outlined square
            5: np.hypot(dy, dx) < r,                                         # filled disk
            6: ((np.abs(dy) < w) | (np.abs(dx) < w)) & (np.hypot(dy, dx) < r + 1),  # cross
            7: np.abs(np.hypot(dy, dx) - r) < w * 0.8,                       # ring
        }[int(label)]
        contrast = rng.uniform(0.5, 1.0)
        images[k] = rng.uniform(0, 0.3) + contrast * mask + rng.normal(0, 0.25, size=(side, side))
    return images[..., None], labels.astype(np.int64)


def _tabular(train_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification
    x, y = make_classification(n_samples=_pool_size(train_size), n_features=24, n_informative=10, n_redundant=6,
                               n_classes=6, n_clusters_per_class=2, class_sep=1.2, flip_y=0.03, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


FASHION_PERMUTATION = (3, 7, 0, 9, 5, 1, 8, 2, 6, 4)  # label k becomes FASHION_PERMUTATION[k]


def _fashion_rot14(train_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from nas.data.fashion_mnist import DIR_ENV_VAR, locate_idx_dir, read_idx_dir
    raw = read_idx_dir(locate_idx_dir(None, os.environ.get(DIR_ENV_VAR)))
    rng = np.random.default_rng([seed, 28])
    pick = rng.choice(len(raw.x_train), size=_pool_size(train_size), replace=False)
    x = np.rot90(raw.x_train[pick, :, :, 0].astype(np.float32), k=1, axes=(1, 2))
    x = x.reshape(len(pick), 14, 2, 14, 2).mean(axis=(2, 4)) / 255.0
    y = np.asarray(FASHION_PERMUTATION)[raw.y_train[pick]]
    return x[..., None].astype(np.float32), y.astype(np.int64)


DATASETS: dict[str, tuple[Callable[[int, int], tuple[np.ndarray, np.ndarray]], str]] = {
    "shapes14": (_shapes14, "generated: 14x14x1 images of 8 shapes (h/v bars, two diagonals, outlined square, disk, "
                            "cross, ring), random centre/size/width/contrast, background U(0,0.3), N(0,0.25) noise"),
    "tabular": (_tabular, "generated: sklearn make_classification(n_features=24, n_informative=10, n_redundant=6, "
                          "n_classes=6, n_clusters_per_class=2, class_sep=1.2, flip_y=0.03)"),
    "fashion_rot14": (_fashion_rot14, "Fashion-MNIST train images (a seeded sample) rotated 90 degrees, 2x2-mean "
                                      f"downsampled to 14x14, labels permuted k -> {list(FASHION_PERMUTATION)}"),
}


def build_dataset(name: str, train_size: int, seed: int) -> Dataset:
    """Dataset `name` with about `train_size` training examples (15% val, 15% test carved from the pool)."""
    try:
        make, _ = DATASETS[name]
    except KeyError:
        raise ExperimentError(f"--datasets: unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
    x, y = make(train_size, seed)
    return from_arrays(x, y, task="classification", val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION,
                       seed=seed, name=name).dataset


# ------------------------------------------------------------------ durable JSON lines
def read_jsonl(path: pathlib.Path, repair: bool = False) -> list[dict]:
    """The rows of a JSON-lines file; a torn last line (a killed writer) is ignored, and with
    `repair` cut off so the next append starts on a fresh line. A bad line elsewhere is an error."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows, good_end = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            if number < len(lines):
                good_end += len(line) + 1
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            if number == len(lines) or (number == len(lines) - 1 and not lines[-1]):
                break  # the last line, torn by a kill mid-write
            raise ExperimentError(f"{path}:{number}: not a JSON object ({exc}); only a torn last line is "
                                  "tolerated") from None
        if number == len(lines):  # complete JSON but no newline yet: keep it, and end it
            rows.append(row)
            if repair:
                with open(path, "ab") as f:
                    f.write(b"\n")
                    _sync(f)
            return rows
        rows.append(row)
        good_end += len(line) + 1
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
            _sync(f)
    return rows


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def append_jsonl(path: pathlib.Path, rows: Iterable[dict]) -> None:
    """Appends rows, one line each, flushed and fsync'd before returning."""
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        _sync(f)


# ------------------------------------------------------------------ one model
def _accuracy(result) -> tuple[float, float, str]:
    """(counted accuracy, best finite val accuracy, status): diverged counts 0.0 (see the module docstring)."""
    best = result.best_val_score if math.isfinite(result.best_val_score) else 0.0
    if result.status == DONE and math.isfinite(result.best_val_score):
        return best, best, DONE
    return 0.0, best, DIVERGED


def select_actions(arch, settings: TrainConfig, allowed: tuple[str, ...] | None) -> list[Action]:
    """Every applicable action, restricted to `allowed` names or objects (``learning_rate``) when given."""
    if allowed is None:
        return applicable_actions(arch, settings)
    # Filter first: checking an action's applicability can cost a shape trace.
    return [a for a in ACTIONS.values() if (a.name in allowed or a.object in allowed) and a.applicable(arch, settings)]


def _groups(children: list[tuple[Action, Any, TrainConfig]], population: bool) -> list[list]:
    """Children that can share one compiled program (same arch and shared settings), in first-seen order."""
    if not population:
        return [[c] for c in children]
    groups: dict[tuple, list] = {}
    for child in children:
        _, arch, settings = child
        groups.setdefault((arch.to_json(indent=None), settings.shared_part()), []).append(child)
    return list(groups.values())


def train_parent(index: int, name: str, dataset: Dataset, splits, args, thresholds) -> tuple[dict, Any, TrainConfig]:
    seed = model_seed(args.seed, index)
    arch, settings = random_model(seed, Problem.of(dataset), epochs=args.epochs, batch_size=args.batch_size)
    start = time.perf_counter()
    try:
        result = train(arch, dataset, settings, splits=splits)
    except Exception as exc:  # a parent that cannot train has no condition: recorded, skipped
        return ({"model": index, "dataset": name, "seed": seed, "arch": arch.name, "status": FAILED,
                 "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - start}, arch, settings)
    seconds = time.perf_counter() - start
    condition = classify(arch, result.history, result.feedback, thresholds, dataset.input_shape)
    acc, best, status = _accuracy(result)
    ev = condition.evidence
    row = {"model": index, "dataset": name, "seed": seed, "arch": arch.name, "family": architecture_family(arch),
           "optimizer": settings.optimizer.name, "learning_rate": settings.optimizer.learning_rate,
           "condition": condition.name, "parent_acc": acc, "parent_best_acc": best, "status": status,
           "epochs": result.epochs, "seconds": seconds,
           "evidence": {"changes": list(ev.changes), "gradient_ratio": ev.gradient_ratio,
                        "dead_fraction": ev.dead_fraction, "nonfinite_weights": ev.nonfinite_weights}}
    return row, arch, settings


def measure_children(parent: dict, group: list, dataset: Dataset, splits) -> list[dict]:
    """Trains one group of children from scratch; one row each."""
    start = time.perf_counter()
    configs = [s for _, _, s in group]
    try:
        if len(group) == 1:
            results = [train(group[0][1], dataset, configs[0], splits=splits)]
        else:
            results = train_population(group[0][1], dataset, configs, splits=splits)
        outcomes = [(_accuracy(r), None) for r in results]
    except Exception as exc:  # the size guard, a shape the trainer refuses: counted as 0, kept
        outcomes = [((0.0, 0.0, FAILED), f"{type(exc).__name__}: {exc}")] * len(group)
    seconds = (time.perf_counter() - start) / len(group)
    rows = []
    for (action, _, _), ((acc, best, status), error) in zip(group, outcomes):
        row = {"model": parent["model"], "dataset": parent["dataset"], "seed": parent["seed"],
               "condition": parent["condition"], "family": parent["family"], "action": action.name,
               "parent_acc": parent["parent_acc"], "child_acc": acc, "child_best_acc": best,
               "delta": acc - parent["parent_acc"], "status": status, "seconds": seconds,
               "population": len(group)}
        if error:
            row["error"] = error
        rows.append(row)
    return rows


# ------------------------------------------------------------------ the run
def _pinned(args) -> dict:
    return {"seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "train_size": args.train_size,
            "datasets": list(args.datasets), "actions": None if args.actions is None else list(args.actions),
            "population": args.population}


def _check_run_file(out: pathlib.Path, args) -> None:
    path = out / "run.json"
    pinned = _pinned(args)
    if path.exists():
        recorded = json.loads(path.read_text())
        differ = [f"{k}: directory {recorded.get(k)!r}, given {pinned[k]!r}" for k in PINNED
                  if recorded.get(k) != pinned[k]]
        if differ:
            raise ExperimentError(f"{path}: this run directory was measured with other settings "
                                  f"({'; '.join(differ)}); resume with those or use another --out")
    else:
        from nas.atomic_io import write_text_atomic
        write_text_atomic(str(path), json.dumps(pinned, indent=1) + "\n")


def _log(message: str) -> None:
    print(message, flush=True)


def run(args) -> dict:
    """Measures the share of models not yet recorded; returns a summary."""
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_run_file(out, args)
    thresholds = load_thresholds()
    started = time.monotonic()
    measurements, parents_path = out / "measurements.jsonl", out / "parents.jsonl"
    done = {(r["model"], r["action"]) for r in read_jsonl(measurements, repair=True)}
    parents = {r["model"]: r for r in read_jsonl(parents_path, repair=True)}
    datasets: dict[str, Dataset] = {}
    splits: dict[str, Any] = {}
    shard, shards = args.shard
    new_rows, stopped = 0, False

    def out_of_time() -> bool:
        return args.max_seconds is not None and time.monotonic() - started >= args.max_seconds

    for index in range(args.models):
        if index % shards != shard:
            continue
        if out_of_time():
            stopped = True
            break
        name = args.datasets[index % len(args.datasets)]
        if name not in datasets:
            datasets[name] = build_dataset(name, args.train_size, args.seed)
            splits[name] = to_device(datasets[name])
        dataset = datasets[name]
        parent = parents.get(index)
        seed = model_seed(args.seed, index)
        if parent is None:
            parent, arch, settings = train_parent(index, name, dataset, splits[name], args, thresholds)
            append_jsonl(parents_path, [parent])
            parents[index] = parent
            _log(f"model {index} ({name}) {parent['arch']}: {parent.get('condition', parent['status'])} "
                 f"acc {parent.get('parent_acc', float('nan')):.3f} ({parent['seconds']:.1f}s)")
        else:
            arch, settings = random_model(seed, Problem.of(dataset), epochs=args.epochs, batch_size=args.batch_size)
        if parent["status"] == FAILED:
            continue
        todo = [a for a in select_actions(arch, settings, args.actions) if (index, a.name) not in done]
        children = []
        for action in todo:
            child_arch, child_settings = action(arch, settings)
            # Children need only their accuracy; the feedback probes cost time.
            children.append((action, child_arch, dataclasses.replace(child_settings, feedback=False)))
        for group in _groups(children, args.population):
            if out_of_time():
                stopped = True
                break
            rows = measure_children(parent, group, dataset, splits[name])
            append_jsonl(measurements, rows)
            done.update((r["model"], r["action"]) for r in rows)
            new_rows += len(rows)
        if stopped:
            break
        _log(f"model {index}: {len(todo)} children measured, {time.monotonic() - started:.0f}s elapsed")
    wall = time.monotonic() - started
    append_jsonl(out / "chunks.jsonl", [{"command": _command(args), "wall_seconds": wall, "new_rows": new_rows,
                                        "stopped_for_time": stopped,
                                        "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}])
    return {"new_rows": new_rows, "stopped_for_time": stopped, "wall_seconds": wall}


def _command(args) -> str:
    """The command line as given (main's argv, so an in-process call records its own arguments)."""
    return " ".join(shlex.quote(a) for a in ["experiments/dream_priorities.py", *args.argv])


def write_table(args) -> priorities.PriorityTable:
    out = pathlib.Path(args.out)
    rows = read_jsonl(out / "measurements.jsonl")
    if not rows:
        raise ExperimentError(f"{out / 'measurements.jsonl'}: no measurements yet; run without --table-only first")
    parents = read_jsonl(out / "parents.jsonl")
    chunks = read_jsonl(out / "chunks.jsonl")
    run_file = json.loads((out / "run.json").read_text())
    measured = {r["model"] for r in rows}
    statuses = Counter(r["status"] for r in rows)
    provenance = {
        "experiment": "experiments/dream_priorities.py",
        "commands": [c["command"] for c in chunks],
        "table_command": _command(args),
        "seed": run_file["seed"],
        "model_seeds": "nas.search.dream.random_models.model_seed(seed, i) for model i",
        "models": len(measured),
        "models_trained": len(parents),
        "measurements": len(rows),
        "datasets": {n: DATASETS[n][1] for n in dict.fromkeys(run_file["datasets"])},
        "dataset_cycle": run_file["datasets"],
        "epochs": run_file["epochs"], "batch_size": run_file["batch_size"], "train_size": run_file["train_size"],
        "split": f"val {VAL_FRACTION}, test {TEST_FRACTION} of a pool of about train_size / "
                 f"{1 - VAL_FRACTION - TEST_FRACTION:g} examples",
        "actions": run_file["actions"] or "every applicable action",
        "scale": "paper: 300 models, 15 epochs, batch 32, full datasets; here: "
                 f"{len(measured)} models, {run_file['epochs']} epochs, batch {run_file['batch_size']}, "
                 f"about {run_file['train_size']} training examples",
        "accuracy": "best validation accuracy over the epochs; a diverged or failed child (or parent) counts 0.0",
        "child_status": dict(statuses),
        "models_per_condition": dict(sorted(Counter(p["condition"] for p in parents
                                                    if p["model"] in measured).items())),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "wall_seconds": round(sum(c["wall_seconds"] for c in chunks), 1),
    }
    table = priorities.from_measurements(rows, load_thresholds(), provenance)
    path = args.table or str(out / "priorities.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    priorities.save(table, path)
    _log(f"table: {len(measured)} models, {len(rows)} measurements, {len(table.cells)} conditions -> {path}")
    return table


def report_tables(table: priorities.PriorityTable, top: int = 4) -> str:
    """Markdown: models per condition, then each condition's `top` actions by mean delta (with counts)."""
    lines = ["| condition | models | top actions: mean delta (count) |", "|---|---:|---|"]
    for name in sorted(table.cells, key=lambda n: (-table.models.get(n, 0), n)):
        cells = sorted(table.cells[name].items(), key=lambda kv: (-kv[1].mean, kv[0]))[:top]
        best = "; ".join(f"`{a}` {c.mean:+.3f} ({c.count})" for a, c in cells)
        lines.append(f"| {name} | {table.models.get(name, 0)} | {best} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ command line
def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must read I/N (e.g. 0/2), got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= I < N")
    return i, n


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _actions(text: str) -> tuple[str, ...]:
    names = _names(text)
    objects = {a.object for a in ACTIONS.values()}
    unknown = [n for n in names if n not in ACTIONS and n not in objects]
    if unknown:
        raise argparse.ArgumentTypeError(f"--actions: unknown {unknown}; give action names "
                                         f"(learning_rate=0.01) or objects ({sorted(objects)})")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/dream_priorities", help="run directory (measurements.jsonl, ...)")
    p.add_argument("--models", type=int, default=60, help="models in total (indices 0..N-1)")
    p.add_argument("--shard", type=_shard, default=(0, 1), help="I/N: measure the models with index %% N == I")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop cleanly before starting a training once this many seconds have passed (resumable)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per training (paper: 15)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (paper: 32)")
    p.add_argument("--train-size", type=int, default=1000, help="training examples per dataset")
    p.add_argument("--seed", type=int, default=0, help="seeds the data and every model")
    p.add_argument("--datasets", type=_names, default=("shapes14", "tabular", "fashion_rot14"),
                   help=f"comma list cycled over the models (model i gets entry i mod len); known: {sorted(DATASETS)}")
    p.add_argument("--actions", type=_actions, default=None,
                   help="only these actions (names or objects, comma list): for tests and partial runs")
    p.add_argument("--no-population", dest="population", action="store_false",
                   help="train every child alone (default: same-architecture children as one vmapped population)")
    p.add_argument("--table", default=None, help="where to write the table (default <out>/priorities.json)")
    p.add_argument("--table-only", action="store_true", help="only write the table from what is measured")
    p.add_argument("--report", action="store_true",
                   help="also print the markdown summary (models and top 4 actions per condition)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv
    for name in args.datasets:
        if name not in DATASETS:
            parser().error(f"--datasets: unknown dataset {name!r}; known: {sorted(DATASETS)}")
    try:
        if not args.table_only:
            summary = run(args)
            _log(json.dumps(summary))
        table = write_table(args)
        if args.report:
            print(report_tables(table))
    except ExperimentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
