"""``search=random search.prefilter=tap`` vs ``search=random``: does TAP's screening find better networks sooner?

Both arms train the SAME number of networks (search.max_trials) per seed on
the same data with the same training recipe; the prefilter arm's random
search proposes 1/keep times as many, TAP (trained on the LDE's networks of
datasets whose DCN lies within tau of this dataset's) ranks them, and only
the top `keep` fraction trains (the rest are in each run's screened.csv).
Each run is a `nas-search` subprocess with resume=true under
--out/<data>/seed<k>/<arm>, so an interrupted comparison continues.

Reported per arm, mean over seeds and per seed: best validation accuracy,
its test accuracy, trials to the best, trials to reach --target, and the
summed trial seconds (training and evaluation of the trained networks; the
prefilter arm's one-off preparation, the DCN probe and TAP's fit, is not in
them: see each run's search.log).

    .venv/bin/python experiments/tap_prefilter.py --lde runs/lde_init/lde.sqlite --seeds 0 1 2 --trials 10
    .venv/bin/python experiments/tap_prefilter.py --report-only
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
from typing import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from experiments.dream_compare import best_so_far, mean_by_trial, nas_search, read_trials  # noqa: E402

RESULTS = os.path.join(REPO, "experiments", "results")
ARMS = {"random": [], "random+tap": ["search.prefilter=tap"]}


def run_dir(out: str, data: str, seed: int, arm: str) -> str:
    return os.path.join(out, data, f"seed{seed}", arm)


def overrides_for(arm: str, data: str, seed: int, args) -> list[str]:
    return ["search=random", f"data={data}", f"search.max_trials={args.trials}", f"search.seed={seed}",
            f"train.seed={seed}", f"train.epochs={args.epochs}", "train.patience=null", "logger=console",
            "progress=false", f"lde.path={os.path.abspath(args.lde)}", "lde.enabled=false",
            f"tapas.keep={args.keep}", f"tapas.tau={args.tau}", f"tapas.epochs={args.tap_epochs}",
            f"tapas.cache={os.path.abspath(os.path.join(args.out, 'tap_cache'))}",
            f"hydra.run.dir={run_dir(args.out, data, seed, arm)}", "resume=true", *ARMS[arm], *args.extra]


def run(arm: str, data: str, seed: int, args) -> dict:
    return nas_search(overrides_for(arm, data, seed, args), args.nice, limit=300) | {"arm": arm, "seed": seed}


def load(out: str, data: str, seed: int, arm: str) -> dict | None:
    directory = run_dir(out, data, seed, arm)
    path = os.path.join(directory, "trials.csv")
    if not os.path.exists(path):
        return None
    curve = best_so_far(read_trials(path))
    results = {}
    if os.path.exists(os.path.join(directory, "results.json")):
        with open(os.path.join(directory, "results.json")) as f:
            results = json.load(f)
    task = {}
    if os.path.exists(os.path.join(directory, "tap", "task.json")):
        with open(os.path.join(directory, "tap", "task.json")) as f:
            task = json.load(f)
    screened = 0
    if os.path.exists(os.path.join(directory, "screened.csv")):
        with open(os.path.join(directory, "screened.csv")) as f:
            screened = max(0, sum(1 for _ in f) - 1)
    return {"curve": curve, "results": results, "task": task, "screened": screened}


def _fmt(x, spec=".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else None


def report(args) -> str:
    runs = {(arm, s): load(args.out, args.data, s, arm) for arm in ARMS for s in args.seeds}
    lines = [f"# TAP as a prefilter: `search=random search.prefilter=tap` vs `search=random` ({args.data})", "",
             f"Written by `experiments/tap_prefilter.py` on {datetime.date.today()}. Device: CPU only "
             f"({platform.machine()}, {os.cpu_count()} cores, shared; runs niced), so seconds are only comparable "
             "within this file.", "",
             f"Budget: {args.trials} trained networks per run (search.max_trials, both arms); seeds {list(args.seeds)} "
             f"(search.seed and train.seed); every network trains {args.epochs} epochs (train.epochs, no early "
             f"stopping); extra overrides: `{' '.join(args.extra) or 'none'}`. The prefilter arm proposes "
             f"{1 / args.keep:g}x as many random networks and trains the top tapas.keep={args.keep} by TAP's "
             f"prediction; TAP trains {args.tap_epochs} epochs on the LDE `{args.lde}` networks of datasets with "
             f"|DCN - DCN(data)| <= {args.tau}.", ""]
    tasks = [r["task"] for (arm, _), r in runs.items() if r and r["task"]]
    if tasks:
        t = tasks[0]
        lines += [f"TAP's training set (seed {args.seeds[0]}): DCN of the data {t.get('dcn', math.nan):.4f}; "
                  f"{t.get('examples')} networks from "
                  + (", ".join(f"{n} (DCN {d:.3f})" for n, _, d in t.get("neighbours", [])) or "no dataset")
                  + f"; {t.get('how', '')}.", ""]
    header = ("| arm | runs | mean best val | mean test of best | mean trials to best | "
              f"runs reaching {args.target} | mean trials to {args.target} | mean trial seconds | "
              + " | ".join(f"seed {s} val / test (to best)" for s in args.seeds) + " |")
    lines += [header, "|" + "---|" * (8 + len(args.seeds))]
    for arm in ARMS:
        done = [(s, runs[(arm, s)]) for s in args.seeds if runs[(arm, s)] and runs[(arm, s)]["curve"].trials]
        curves = [r["curve"] for _, r in done]
        reach = [c.trials_to_reach(args.target) for c in curves]
        tests = [r["results"].get("test_accuracy") for _, r in done]
        cells = []
        for s in args.seeds:
            r = runs[(arm, s)]
            if not r or not r["curve"].trials:
                cells.append("not run")
                continue
            c = r["curve"]
            cells.append(f"{_fmt(c.final)} / {_fmt(r['results'].get('test_accuracy'))} "
                         f"({c.trials_to_best()} of {len(c.trials)})")
        lines.append(f"| {arm} | {len(done)} | {_fmt(_mean(c.final for c in curves))} | {_fmt(_mean(tests))} | "
                     f"{_fmt(_mean(c.trials_to_best() for c in curves), '.1f')} | "
                     f"{sum(x is not None for x in reach)}/{len(curves)} | {_fmt(_mean(reach), '.1f')} | "
                     f"{_fmt(_mean(c.seconds[-1] for c in curves), '.0f')} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"![best so far]({os.path.basename(args.plot)})", ""]
    plot(args, runs)
    return "\n".join(lines) + "\n"


def plot(args, runs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm in ARMS:
        curves = [runs[(arm, s)]["curve"] for s in args.seeds if runs[(arm, s)] and runs[(arm, s)]["curve"].trials]
        if not curves:
            continue
        ax.step(range(1, args.trials + 1), mean_by_trial(curves, args.trials), where="post",
                label=f"{arm} ({len(curves)} seeds)")
        for c in curves:
            ax.plot(c.trials, c.best, alpha=0.25, lw=0.8, color=ax.lines[-1].get_color())
    ax.axhline(args.target, ls=":", color="grey", lw=0.8)
    ax.set_xlabel("networks trained")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"{args.data}: random search with and without TAP screening", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=10, help="networks trained per run (both arms)")
    parser.add_argument("--epochs", type=int, default=4, help="train.epochs of every network")
    parser.add_argument("--keep", type=float, default=0.25, help="tapas.keep")
    parser.add_argument("--tau", type=float, default=0.05, help="tapas.tau")
    parser.add_argument("--tap-epochs", type=int, default=200, help="tapas.epochs")
    parser.add_argument("--target", type=float, default=0.8, help="report the trials to reach this val accuracy")
    parser.add_argument("--lde", default=os.path.join(REPO, "runs", "lde_init", "lde.sqlite"))
    parser.add_argument("--extra", nargs="*", default=["data.max_train=3000"])
    parser.add_argument("--nice", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "tap_prefilter"))
    parser.add_argument("--results", default=os.path.join(RESULTS, "tap_prefilter.md"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    args.plot = os.path.splitext(args.results)[0] + ".png"
    if not args.report_only:
        for seed in args.seeds:
            for arm in ARMS:
                print(json.dumps(run(arm, args.data, seed, args), default=str), flush=True)
    text = report(args)
    with open(args.results, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
