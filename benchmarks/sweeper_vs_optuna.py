"""The tinygp sweeper against hydra-optuna-sweeper (TPE), current Optuna (TPE, GP) and random search.

    make optuna-current   # once: current optuna + torch in .venv/optuna-current
    .venv/bin/python benchmarks/sweeper_vs_optuna.py [--seeds 10] [--multirun-seeds 5]

Problems: Branin (2-D), Hartmann-6 (6-D), and a real training objective: a
32-unit MLP trained 3 epochs on scikit-learn's digits with nas.train, searching
AdamW's learning rate and weight decay on log scales (validation error; its
reference optimum is the best of a 40 x 40 log grid or of any run).

Every method gets the same search space, written once as Hydra overrides:

- tinygp: `parse_search_space` + `SweepSettings` defaults + `bo.ask/tell`,
  the code path the plugin runs between launches;
- TPE: optuna's TPESampler with hydra-optuna-sweeper's defaults, its
  distributions built by the plugin's own `create_params_from_overrides`, and
  trials asked and told as the plugin does;
- tpe-mv / gp (optuna N): the current Optuna release (N in the table), which
  hydra-optuna-sweeper cannot use (it pins optuna 2.x): TPESampler with
  multivariate=True, and GPSampler (torch), both otherwise at their defaults,
  on the same distributions, asked and told the same way. They run in
  .venv/optuna-current through benchmarks/optuna_worker.py (a pipe; the
  objectives are evaluated here); without that venv these rows are left out;
- random: uniform in the same space.

Batch size 1 (sequential) and 4 (what a 4-way parallel launcher gets: tinygp's
kriging believer, TPE asked 4 times before telling, as the optuna sweeper does
with n_jobs=4). Reported: median simple regret after 20 and 40 evaluations over
the seeds, and the proposal overhead per trial (median once the model is in
charge, i.e. after the Sobol design or TPE's start-up trials; and the maximum,
which for tinygp is a JIT compilation of the GP for a new observation bucket).

The last block runs Branin through real `--multirun` invocations of
tests/sweeper_app (basic launcher), with hydra/sweeper=tinygp and
hydra/sweeper=optuna, and checks that they reproduce the in-process numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "sweeper_app" / "app.py"
sys.path.insert(0, str(APP.parent))

from app import BRANIN_OPTIMUM, HARTMANN6_OPTIMUM, branin, hartmann6  # noqa: E402

from hydra_plugins.tinygp_sweeper._impl import SweepSettings, parse_search_space  # noqa: E402
from nas.search import bo  # noqa: E402

BUDGETS = (20, 40)


# ---------------------------------------------------------------------------
# Problems: overrides, objective (to minimise), optimum

def digits_problem():
    """Validation error of a small MLP on digits after 3 epochs of AdamW, by (lr, weight decay)."""
    from nas.data import load_dataset
    from nas.ir import mlp
    from nas.train import OptimizerConfig, TrainConfig, train
    from nas.train.loop import to_device

    data = load_dataset("digits")
    arch = mlp([32], data.num_outputs, input_shape=data.input_shape)
    splits = to_device(data)
    cache: dict[tuple[float, float], float] = {}

    def error(c):
        key = (float(c["optimizer.learning_rate"]), float(c["optimizer.weight_decay"]))
        if key not in cache:
            config = TrainConfig(epochs=3, batch_size=64, optimizer=OptimizerConfig("adamw", *key))
            result = train(arch, data, config, splits=splits)
            acc = result.best_val_metrics.get("val_accuracy", math.nan)
            cache[key] = 1.0 - acc if math.isfinite(acc) else 1.0
        return cache[key]

    overrides = ["optimizer.learning_rate=tag(log, interval(1e-4, 1.0))",
                 "optimizer.weight_decay=tag(log, interval(1e-6, 1e-1))"]
    grid = [{"optimizer.learning_rate": lr, "optimizer.weight_decay": wd}
            for lr in np.logspace(-4, 0, 40) for wd in np.logspace(-6, -1, 40)]
    tic = time.perf_counter()
    optimum = min(error(c) for c in grid)
    note = (f"digits_mlp: 32-unit MLP, 3 epochs AdamW, validation error (270 examples); best on a 40x40 log "
            f"grid of (lr, wd) {optimum:.4f} ({time.perf_counter() - tic:.0f} s for 1600 trainings)")
    print(note, flush=True)
    return (overrides, error, optimum), note


PROBLEMS = {
    "branin": (["x1=interval(-5, 10)", "x2=interval(0, 15)"], lambda c: branin(c["x1"], c["x2"]), BRANIN_OPTIMUM),
    "hartmann6": ([f"x.{i}=interval(0, 1)" for i in range(6)],
                  lambda c: hartmann6([c[f"x.{i}"] for i in range(6)]), HARTMANN6_OPTIMUM),
}


# ---------------------------------------------------------------------------
# Methods: each returns (values in evaluation order, seconds per proposal)

def run_tinygp(overrides, f, seed, n, batch):
    search = parse_search_space(overrides)
    settings = SweepSettings.create(seed=seed, batch_size=batch)
    state = bo.init(search.space, settings.seed, **settings.optimiser(search.space))
    values, seconds = [], []
    while len(values) < n:
        tic = time.perf_counter()
        state, configs = bo.ask(state, min(batch, n - len(values)))
        seconds += [(time.perf_counter() - tic) / len(configs)] * len(configs)
        batch_values = [f(c) for c in configs]
        state = bo.tell(state, list(zip(configs, batch_values)))
        values += batch_values
    return values, seconds


def run_tpe(overrides, f, seed, n, batch):
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from hydra_plugins.hydra_optuna_sweeper.config import TPESamplerConfig

    distributions, _ = create_params_from_overrides(list(overrides))
    defaults = {k: v for k, v in vars(TPESamplerConfig()).items() if not k.startswith("_") and k != "seed"}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, **defaults), direction="minimize")
    values, seconds = [], []
    while len(values) < n:
        tic = time.perf_counter()
        trials = [study.ask() for _ in range(min(batch, n - len(values)))]
        for trial in trials:
            for name, distribution in distributions.items():
                trial._suggest(name, distribution)
        seconds += [(time.perf_counter() - tic) / len(trials)] * len(trials)
        for trial in trials:
            values.append(f(trial.params))
            study.tell(trial, values[-1])
    return values, seconds


def run_random(overrides, f, seed, n, batch):
    space = parse_search_space(overrides).space
    U = np.random.default_rng([seed, 271828]).uniform(size=(n, space.unit_dim))
    return [f(bo.decode(space, x)) for x in bo.from_unit(space, U)], [0.0] * n


OPTUNA_PYTHON = REPO / ".venv" / "optuna-current" / "bin" / "python"
WORKER = REPO / "benchmarks" / "optuna_worker.py"


def _worker_space(overrides) -> dict:
    """hydra-optuna-sweeper's distributions for the overrides, as optuna_worker.py reads them."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    distributions, _ = create_params_from_overrides(list(overrides))
    space = {}
    for name, d in distributions.items():
        kind = type(d).__name__
        if kind in ("UniformDistribution", "LogUniformDistribution"):
            space[name] = {"type": "float", "low": d.low, "high": d.high, "log": kind.startswith("Log")}
        elif kind in ("IntUniformDistribution", "IntLogUniformDistribution"):
            space[name] = {"type": "int", "low": d.low, "high": d.high, "log": kind.startswith("IntLog")}
        elif kind == "CategoricalDistribution":
            space[name] = {"type": "categorical", "choices": list(d.choices)}
        else:
            raise ValueError(f"{name}: no current-optuna equivalent for {kind}")
    return space


class OptunaWorker:
    """benchmarks/optuna_worker.py in the current-optuna venv, one JSON line each way."""

    def __init__(self):
        self.proc = subprocess.Popen([str(OPTUNA_PYTHON), str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.version = None

    def call(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{WORKER} stopped (exit {self.proc.wait()}) on {request['op']}")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


_WORKER: OptunaWorker | None = None


def current_optuna() -> OptunaWorker:
    global _WORKER
    if _WORKER is None:
        _WORKER = OptunaWorker()
    return _WORKER


def run_current_optuna(sampler):
    def run(overrides, f, seed, n, batch):
        worker = current_optuna()
        worker.version = worker.call(op="start", sampler=sampler, seed=seed, space=_worker_space(overrides))["version"]
        values, seconds = [], []
        while len(values) < n:
            asked = worker.call(op="ask", n=min(batch, n - len(values)))
            seconds += [asked["seconds"]] * len(asked["params"])
            batch_values = [f(params) for params in asked["params"]]
            worker.call(op="tell", values=batch_values)
            values += batch_values
        return values, seconds

    return run


METHODS = {"tinygp": run_tinygp, "tpe (optuna)": run_tpe, "tpe-mv (new)": run_current_optuna("tpe_multivariate"),
           "gp (new)": run_current_optuna("gp"), "random": run_random}
CURRENT_OPTUNA_METHODS = ("tpe-mv (new)", "gp (new)")


def regrets(values, optimum):
    return [min(values[:b]) - optimum for b in BUDGETS]


def in_process(problems, seeds, lines):
    header = (f"{'problem':<11} {'method':<13} {'batch':>5} " + " ".join(f"{'regret@' + str(b):>11}" for b in BUDGETS)
              + f" {'IQR@40':>17} {'s/proposal':>11} {'max s':>7}")
    lines += [header, "-" * len(header)]
    summary = {}
    for name, (overrides, f, optimum) in problems.items():
        for batch in (1, 4):
            for method, run in METHODS.items():
                if method == "random" and batch > 1:
                    continue
                if method in CURRENT_OPTUNA_METHODS and not OPTUNA_PYTHON.exists():
                    continue
                results = [run(overrides, f, seed, max(BUDGETS), batch) for seed in range(seeds)]
                r = np.array([regrets(v, optimum) for v, _ in results])
                # Overhead once the model is in charge (tinygp's GP after its Sobol
                # design, TPE after its 10 random start-up trials); max includes JIT.
                # Current TPE and GPSampler also start with 10 random trials (their defaults).
                model_from = {"tinygp": SweepSettings.create().initial_trials(parse_search_space(overrides).space),
                              "tpe (optuna)": 10, "tpe-mv (new)": 10, "gp (new)": 10}.get(method, 0)
                per = np.concatenate([s[model_from:] for _, s in results])
                worst = max(max(s) for _, s in results)
                med = np.median(r, axis=0)
                q1, q3 = np.percentile(r[:, -1], [25, 75])
                summary[(name, method, batch)] = med
                line = (f"{name:<11} {method:<13} {batch:>5} " + " ".join(f"{m:>11.4f}" for m in med)
                        + f" {f'[{q1:.3f}, {q3:.3f}]':>17} {np.median(per):>11.4f} {worst:>7.2f}")
                lines.append(line)
                print(line, flush=True)
        lines.append("")
    return summary


# ---------------------------------------------------------------------------
# Real multiruns

def multirun(sweeper: str, seed: int, n: int, directory: Path) -> tuple[list[float], float]:
    """Branin through `app.py --multirun` with the given sweeper; (values in job order, wall seconds)."""
    jobs = directory / "jobs.jsonl"
    common = [f"hydra.sweep.dir={directory}", f"record={jobs}", "x1=interval(-5, 10)", "x2=interval(0, 15)",
              f"hydra.sweeper.n_trials={n}"]
    extra = ([f"hydra.sweeper.seed={seed}"] if sweeper == "tinygp" else
             ["hydra/sweeper=optuna", f"hydra.sweeper.sampler.seed={seed}", "hydra.sweeper.n_jobs=1"])
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, str(APP), "--multirun", *common, *extra], capture_output=True, text=True,
                          cwd=directory.parent)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"{sweeper} multirun failed:\n{proc.stderr[-3000:]}")
    rows = sorted((json.loads(line) for line in jobs.read_text().splitlines()), key=lambda r: r["job"])
    return [r["value"] for r in rows], wall


def through_multirun(seeds, lines):
    n = max(BUDGETS)
    header = (f"{'branin via --multirun':<24} " + " ".join(f"{'regret@' + str(b):>11}" for b in BUDGETS)
              + f" {'wall s/run':>11} {'same as in-process':>19}")
    lines += [header, "-" * len(header)]
    runners = {"tinygp": run_tinygp, "optuna": run_tpe}
    with tempfile.TemporaryDirectory() as tmp:
        for sweeper in ("tinygp", "optuna"):
            r, walls, same = [], [], 0
            for seed in range(seeds):
                values, wall = multirun(sweeper, seed, n, Path(tmp) / f"{sweeper}-{seed}")
                r.append(regrets(values, BRANIN_OPTIMUM))
                walls.append(wall)
                reference, _ = runners[sweeper](PROBLEMS["branin"][0], PROBLEMS["branin"][1], seed, n, 1)
                same += bool(np.allclose(values, reference, rtol=1e-9))
            med = np.median(np.array(r), axis=0)
            line = (f"{sweeper + f' ({seeds} seeds)':<24} " + " ".join(f"{m:>11.4f}" for m in med)
                    + f" {np.median(walls):>11.1f} {f'{same}/{seeds}':>19}")
            lines.append(line)
            print(line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--multirun-seeds", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sweeper_vs_optuna.txt"))
    args = parser.parse_args()
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    digits, note = digits_problem()
    problems = dict(PROBLEMS, digits_mlp=digits)
    current = (current_optuna().call(op="start", sampler="tpe_multivariate", seed=0, space={})["version"]
               if OPTUNA_PYTHON.exists() else None)
    lines = [f"tinygp sweeper vs hydra-optuna-sweeper (TPE, optuna {optuna.__version__})"
             + (f" vs optuna {current} (new: TPE multivariate=True, GPSampler)" if current else
                f" (no {OPTUNA_PYTHON.relative_to(REPO)}: `make optuna-current` adds optuna's current release)")
             + f" vs random; median over {args.seeds} seeds; regret = best value so far - optimum", note, ""]
    summary = in_process(problems, args.seeds, lines)
    for rival in ("tpe (optuna)", *(CURRENT_OPTUNA_METHODS if current else ())):
        lines.append(f"median regret at 40 evaluations, {rival} / tinygp (> 1: tinygp better):")
        for name in problems:
            for batch in (1, 4):
                theirs, ours = summary[(name, rival, batch)][-1], summary[(name, "tinygp", batch)][-1]
                lead = "tinygp" if ours < theirs else rival  # regret < 0: better than the grid's best (digits)
                verdict = (f"{theirs / ours:.2g}x" if ours > 0 and theirs > 0 else "same" if ours == theirs else
                           f"{lead}'s median run reached the reference optimum, the other's did not" if
                           min(ours, theirs) == 0 else f"{lead}'s median run beat the reference optimum")
                lines.append(f"  {name:<11} batch {batch}: {theirs:.4f} / {ours:.4f}: {verdict}")
    lines.append("")
    through_multirun(args.multirun_seeds, lines)
    if _WORKER is not None:
        _WORKER.close()
    lines += ["", f"machine: {os.cpu_count()} CPU cores; total {time.perf_counter() - start:.0f} s"]
    text = "\n".join(lines)
    print("\n" + text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
