"""DREAM's paper comparisons (TOSEM'24 s5) at a reduced scale, through `nas-search`.

Three comparisons, each a set of arms run at the SAME trial budget on each
dataset and seed:

  table3   (paper Table 3 / Figure 8): dream (shipped priorities, expanded
           actions) vs autokeras_greedy vs hyperband
  table7   (paper Table 7): dream on the expanded action space vs on the
           original one (AutoKeras's own hyperparameters only)
  figure9  (paper Figure 9): dream with the shipped priority table vs three
           random tables (dream.random_seed=1, 2, 3)

dream and autokeras_greedy get the same `search.space` values (family,
channels, dense, hidden, initial/child epochs, learning rate, batch size), so
both start from the same default model. Hyperband samples its own space
(NeuNetS's Hyperband++ CNN/MLP space); its brackets are cut to fit the budget
by a smaller R and eta (--hb-max-epochs, --hb-eta) and then capped at the same
search.max_trials.

Each arm runs as a user would run it (a `nas-search` subprocess with
resume=true under --out/<data>/seed<k>/<arm>, so an interrupted comparison
continues where it stopped), and each run's trials.csv gives the best
validation score so far against the trial index and against the summed
per-trial seconds (the `seconds` column: a trial's training and evaluation,
so resumes and the strategy's own bookkeeping do not count). The best trial's
test accuracy comes from the run's results.json. The report (markdown tables
and one figure per dataset, mean over seeds) goes to --results.

    .venv/bin/python experiments/dream_compare.py --data digits --seeds 0 1 --trials 10
    .venv/bin/python experiments/dream_compare.py --data fashion_mnist --seeds 0 1 --trials 10 \\
        --extra data.max_train=3000
    .venv/bin/python experiments/dream_compare.py --report-only --data digits fashion_mnist --seeds 0 1
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
from typing import Iterable, Mapping, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "experiments", "results")


# ------------------------------------------------------------------ the arms
@dataclasses.dataclass(frozen=True)
class Arm:
    """One search configuration of a comparison.

    Attributes:
      name: the arm's name (its run directory and its row in the tables).
      search: the nas-search strategy config (`search=`).
      overrides: its own Hydra overrides, on top of the shared ones.
      shares_initial_model: takes the shared `search.space` values (dream and
        autokeras_greedy), so its first trial is the same default model.
    """

    name: str
    search: str
    overrides: tuple[str, ...] = ()
    shares_initial_model: bool = True


def arms(hb_max_epochs: int, hb_eta: int) -> dict[str, Arm]:
    """Every arm by name; hyperband's brackets cut to R=hb_max_epochs, eta=hb_eta, r_min=1."""
    dream = ("dream.priorities=shipped", "dream.action_space=expanded")
    return {
        "dream": Arm("dream", "dream", dream),
        "autokeras_greedy": Arm("autokeras_greedy", "autokeras_greedy"),
        "hyperband": Arm("hyperband", "hyperband", (f"search.space.max_epochs={hb_max_epochs}",
                                                    f"search.space.eta={hb_eta}", "search.space.min_epochs=1"),
                         shares_initial_model=False),
        "dream_original": Arm("dream_original", "dream", ("dream.priorities=shipped", "dream.action_space=original")),
        **{f"dream_random{k}": Arm(f"dream_random{k}", "dream", ("dream.priorities=random", f"dream.random_seed={k}",
                                                                 "dream.action_space=expanded"))
           for k in (1, 2, 3)},
    }


COMPARISONS: dict[str, tuple[str, ...]] = {
    "table3": ("dream", "autokeras_greedy", "hyperband"),
    "table7": ("dream", "dream_original"),
    "figure9": ("dream", "dream_random1", "dream_random2", "dream_random3"),
}
TITLES = {
    "table3": "Table 3 / Figure 8: DREAM vs the AutoKeras-style strategies",
    "table7": "Table 7: expanded vs original action space (DREAM's search in both)",
    "figure9": "Figure 9: shipped vs random priority tables",
}


def shared_space(args) -> list[str]:
    """The `search.space` values dream and autokeras_greedy share: the same default model and training."""
    return [f"search.space.family={args.family}", f"search.space.channels=[{','.join(map(str, args.channels))}]",
            f"search.space.dense=[{','.join(map(str, args.dense))}]",
            f"search.space.hidden=[{','.join(map(str, args.hidden))}]",
            f"search.space.initial_epochs={args.initial_epochs}", f"search.space.epochs={args.child_epochs}",
            f"search.space.learning_rate={args.learning_rate}", f"search.space.batch_size={args.batch_size}"]


def run_dir(out: str, data: str, seed: int, arm: str) -> str:
    return os.path.join(out, data, f"seed{seed}", arm)


def overrides_for(arm: Arm, data: str, seed: int, args) -> list[str]:
    """The whole nas-search command line of one run (resume=true: a rerun continues the run).

    The seed is both search.seed (the strategy's choices) and train.seed (each trial's initialisation and
    batch order are train.seed + trial): with search.seed alone, DREAM's runs of two seeds are the same run.
    """
    return [f"search={arm.search}", f"data={data}", f"search.max_trials={args.trials}", f"search.seed={seed}",
            f"train.seed={seed}", f"train.epochs={args.initial_epochs}", "logger=console", "progress=false",
            f"hydra.run.dir={run_dir(args.out, data, seed, arm.name)}", "resume=true",
            *(shared_space(args) if arm.shares_initial_model else []), *arm.overrides, *args.extra]


def nas_search(overrides: Sequence[str], nice: int, limit: int = 200) -> dict:
    """One nas-search subprocess (niced: the machine is shared); its results.json, or {"status": "error: ..."}."""
    command = ["nice", "-n", str(nice), sys.executable, "-m", "nas.cli.search", *overrides]
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        return {"status": "error: " + lines[-1][:limit]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(arm: Arm, data: str, seed: int, args) -> dict:
    """One arm as a nas-search subprocess; its results.json or an error."""
    return nas_search(overrides_for(arm, data, seed, args), args.nice) | {"arm": arm.name}


# ------------------------------------------------------------------ pure: curves and tables
def read_trials(path: str) -> list[dict]:
    """trials.csv as a list of rows (strings), in trial order."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return sorted(rows, key=lambda r: int(r["trial"]))


def _float(value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


@dataclasses.dataclass(frozen=True)
class Curve:
    """Best validation score so far after each trial of one run.

    Attributes:
      trials: 1, 2, ..., n (the number of trials finished, in trial order).
      seconds: summed per-trial seconds after each trial.
      best: the best validation score among trials 1..i (NaN until a trial
        finishes with a finite score: a diverged or failed trial scores nothing).
    """

    trials: tuple[int, ...]
    seconds: tuple[float, ...]
    best: tuple[float, ...]

    @property
    def final(self) -> float:
        return self.best[-1] if self.best else math.nan

    def trials_to_best(self) -> int | None:
        """The first trial count at which the final best was reached (None if no trial scored)."""
        if not self.best or math.isnan(self.final):
            return None
        return next(t for t, b in zip(self.trials, self.best) if b == self.final)

    def seconds_to_best(self) -> float | None:
        t = self.trials_to_best()
        return None if t is None else self.seconds[t - 1]

    def trials_to_reach(self, target: float) -> int | None:
        """The first trial count whose best so far is >= target (None: never)."""
        return next((t for t, b in zip(self.trials, self.best) if b >= target), None)


def best_so_far(rows: Sequence[Mapping]) -> Curve:
    """The best-so-far curve of a trials table (rows of trials.csv in trial order).

    Every row counts as a trial (a diverged or failed one spent budget too),
    but only a `done` row with a finite val_score can raise the best; its
    `seconds` (empty for a trial that never ran) adds 0.
    """
    best, total = math.nan, 0.0
    trials, seconds, bests = [], [], []
    for i, row in enumerate(rows, start=1):
        score = _float(row.get("val_score"))
        if row.get("status") == "done" and math.isfinite(score) and not (score <= best):
            best = score
        spent = _float(row.get("seconds"))
        total += spent if math.isfinite(spent) else 0.0
        trials.append(i)
        seconds.append(total)
        bests.append(best)
    return Curve(tuple(trials), tuple(seconds), tuple(bests))


def mean_by_trial(curves: Sequence[Curve], n: int) -> list[float]:
    """Mean over runs of the best so far after 1..n trials; a run that stopped early keeps its final best.

    NaN where any run has no score yet (a mean over some seeds only would mix levels).
    """
    means = []
    for i in range(n):
        values = [c.best[min(i, len(c.best) - 1)] if c.best else math.nan for c in curves]
        means.append(math.nan if not values or any(math.isnan(v) for v in values) else sum(values) / len(values))
    return means


def value_at(curve: Curve, seconds: float) -> float:
    """The best so far once `seconds` of trials had been spent (step function; NaN before the first trial ends)."""
    value = math.nan
    for s, b in zip(curve.seconds, curve.best):
        if s > seconds:
            break
        value = b
    return value


def mean_by_seconds(curves: Sequence[Curve], grid: Sequence[float]) -> list[float]:
    """Mean over runs of the best so far at each time of the grid (NaN until every run has a score)."""
    out = []
    for t in grid:
        values = [value_at(c, t) for c in curves]
        out.append(math.nan if not values or any(math.isnan(v) for v in values) else sum(values) / len(values))
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One finished (or partly finished) run: its curve and what results.json says of its best trial."""

    arm: str
    seed: int
    curve: Curve
    test_accuracy: float | None
    status: str


def common_seeds(results: Sequence[RunResult], arm_names: Sequence[str]) -> set[int]:
    """The seeds every arm of a comparison that ran at all has run: curves averaged over other seed sets
    would compare different seeds (arms that never ran are left out so they do not empty the set)."""
    ran = [{r.seed for r in results if r.arm == name and r.curve.trials} for name in arm_names]
    ran = [seeds for seeds in ran if seeds]
    return set.intersection(*ran) if ran else set()


def comparison_table(results: Sequence[RunResult], arm_names: Sequence[str], seeds: Sequence[int],
                     target: float | None = None) -> str:
    """Markdown: one row per arm; mean over seeds of the first trial's val (dream's and autokeras_greedy's initial
    model), the final best val and its test accuracy, trials and seconds to the best, then val/test per seed."""
    by_key = {(r.arm, r.seed): r for r in results}
    per_seed = " | ".join(f"seed {s} val / test (trials to best)" for s in seeds)
    extra = f" | mean trials to val >= {target:g}" if target is not None else ""
    header = (f"| arm | runs | mean trial-1 val | mean best val | mean test of best | mean trials to best | mean seconds to best "
              f"| mean seconds (all trials){extra} | {per_seed} |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in arm_names:
        runs = [by_key[(name, s)] for s in seeds if (name, s) in by_key]
        cells = []
        for s in seeds:
            r = by_key.get((name, s))
            if r is None or not r.curve.trials:
                cells.append("not run" if r is None else r.status)
                continue
            note = "" if r.status == "done" else f", {r.status}"
            cells.append(f"{_fmt(r.curve.final)} / {_fmt(r.test_accuracy)} "
                         f"({r.curve.trials_to_best()} of {len(r.curve.trials)}{note})")
        finished = [r for r in runs if r.curve.trials]
        row = [name, str(len(finished)), _fmt(_mean(r.curve.best[0] for r in finished)),
               _fmt(_mean(r.curve.final for r in finished)),
               _fmt(_mean(r.test_accuracy for r in finished)),
               _fmt(_mean(r.curve.trials_to_best() for r in finished), ".1f"),
               _fmt(_mean(r.curve.seconds_to_best() for r in finished), ".0f"),
               _fmt(_mean(r.curve.seconds[-1] for r in finished), ".0f")]
        if target is not None:
            reached = [r.curve.trials_to_reach(target) for r in finished]
            row.append(_fmt(_mean(reached), ".1f") + f" ({sum(t is not None for t in reached)}/{len(finished)} reach)")
        lines.append("| " + " | ".join(row + cells) + " |")
    ran = {name: {r.seed for r in results if r.arm == name and r.curve.trials} for name in arm_names}
    if len({frozenset(v) for v in ran.values() if v}) > 1:
        lines.append(f"\nThe arms ran different seeds, so their means are over different seeds: compare the "
                     f"per-seed columns (seeds every arm ran: {sorted(common_seeds(results, arm_names)) or 'none'}; "
                     f"the plot uses those only).")
    return "\n".join(lines)


# ------------------------------------------------------------------ reading runs, plotting, the report
def load_run(out: str, data: str, seed: int, arm: str) -> RunResult | None:
    """A run directory's curve and best test accuracy, or None if it has no trials.csv yet."""
    directory = run_dir(out, data, seed, arm)
    path = os.path.join(directory, "trials.csv")
    if not os.path.exists(path):
        return None
    curve = best_so_far(read_trials(path))
    test, status = None, "partial (no results.json)"
    results_path = os.path.join(directory, "results.json")
    if os.path.exists(results_path):
        with open(results_path) as f:
            summary = json.load(f)
        test, status = summary.get("test_accuracy"), summary.get("status", "done")
    return RunResult(arm, seed, curve, test, status)


def plot(data: str, results: Sequence[RunResult], seeds: Sequence[int], trials: int, path: str) -> None:
    """One figure per dataset: a row per comparison, best-so-far vs trials (left) and vs seconds (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(COMPARISONS), 2, figsize=(11, 3.2 * len(COMPARISONS)), squeeze=False)
    for row, (comparison, names) in enumerate(COMPARISONS.items()):
        ax_t, ax_s = axes[row]
        common = common_seeds(results, names)
        for name in names:
            curves = [r.curve for r in results if r.arm == name and r.curve.trials and r.seed in common]
            if not curves:
                continue
            label = f"{name} (seed{'s' if len(curves) != 1 else ''} {', '.join(map(str, sorted(common)))})"
            ax_t.step(range(1, trials + 1), mean_by_trial(curves, trials), where="post", label=label)
            end = max(c.seconds[-1] for c in curves)
            grid = [end * i / 400 for i in range(401)]
            ax_s.step(grid, mean_by_seconds(curves, grid), where="post", label=label)
        ax_t.set_title(f"{data}: {TITLES[comparison].split(':')[0]}", fontsize=10)
        ax_t.set_xlabel("trials")
        ax_s.set_xlabel("summed trial seconds (CPU, shared)")
        for ax in (ax_t, ax_s):
            ax.set_ylabel("best val accuracy so far")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{data}: best validation accuracy so far, mean over seeds {list(seeds)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PAPER = """Paper numbers (DREAM, TOSEM'24, s5; GPU, AutoKeras 1.0.12 initial models, 25 trials on image data;
scores are validation accuracy in %):

- Table 3 (4 image datasets x 5 searches): best score in the whole search, average: AutoKeras Greedy 52.70,
  Bayesian 55.02, Hyperband 65.73, DREAM 82.99; within the same 25 trials: 52.70, 55.02, 50.79 vs 82.99.
  The average initial model scored 6.79. DREAM reached the 70% target in all 20 searches, the AutoKeras
  strategies in 20 of 60.
- Table 7 (search space expansion, CIFAR-100 and TinyImageNet, the three AutoKeras strategies): best score
  48.88 on the original space vs 81.27 on the expanded one (average); note the paper's ablation runs the
  AutoKeras strategies on both spaces, ours runs DREAM's own search on both (`dream.action_space`).
- Figure 9 (built-in vs three random priority tables, 25 trials, four datasets): the text gives no averages;
  the random tables "often fail to achieve 60%"; in Figure 9(d) (TinyImageNet) DREAM reaches 83.60% at
  trial 18, the best random table 56.54%."""

FINDINGS_START, FINDINGS_END = "<!-- findings: kept when the report is rewritten -->", "<!-- end findings -->"


def kept_findings(path: str) -> str:
    """The hand-written findings of an earlier report at `path` (between the markers), or a placeholder."""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if FINDINGS_START in text and FINDINGS_END in text:
            return text.split(FINDINGS_START, 1)[1].split(FINDINGS_END, 1)[0].strip("\n")
    return "(none written yet)"


def fashion_train(overrides: Sequence[str]) -> str:
    """How many Fashion-MNIST training images the overrides keep (the last data.max_train wins)."""
    kept = [o.split("=", 1)[1] for o in overrides if o.startswith("data.max_train=")]
    return f"{int(kept[-1]):,}" if kept and kept[-1] not in ("null", "None") else "all 54,000"


def report(args, datasets: Sequence[str]) -> str:
    """The markdown report of every dataset's runs under args.out (plots written beside it)."""
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, "dream_compare.md")
    hb = arms(args.hb_max_epochs, args.hb_eta)["hyperband"]
    budget = (f"{args.trials} trials per run (search.max_trials, the same for every arm); seeds {list(args.seeds)} "
              f"(search.seed and train.seed; the data split is data.seed=0 throughout); dream and autokeras_greedy start from the "
              f"same default model: `{' '.join(shared_space(args))}` (first trial {args.initial_epochs} epochs, "
              f"each later trial {args.child_epochs}); hyperband samples its own Hyperband++ space, brackets cut "
              f"to `{' '.join(hb.overrides)}` and capped at the same max_trials (a promotion continues its "
              f"parent's training and counts as a trial); extra overrides for every run: "
              f"`{' '.join(args.extra) or 'none'}` (fashion_mnist: `{' '.join(args.fashion_extra) or 'none'}`)")
    parts = [
        "# DREAM's comparisons at reduced scale",
        "",
        f"Written by `experiments/dream_compare.py` on {datetime.date.today().isoformat()}. Device: CPU only "
        f"({platform.machine()}, {os.cpu_count()} cores shared with other jobs; runs niced), so seconds are noisy "
        "and only comparable within this file.",
        "",
        f"Budget: {budget}.",
        "",
        "Data: digits = scikit-learn's 1,797 8x8 images split 70/15/15 (1,257 train, 270 val, 270 test); "
        f"fashion_mnist = {fashion_train(args.fashion_extra + args.extra)} training images (a stratified subset "
        "of the 54,000 left after the 10% validation split), 6,000 validation, the official 10,000 test.",
        "",
        "Columns: `trial-1 val` is the first trial's validation accuracy (for dream and autokeras_greedy the "
        "shared initial model, the paper's 'initial score'; for hyperband a random configuration at 1 epoch); "
        "`best val` is the best validation accuracy over the run's trials; `test of best` is that "
        "trial's test accuracy from results.json; `trials to best` is the trial count at which the final best "
        "was first reached; seconds are the summed per-trial seconds of trials.csv (training and evaluation, "
        "not process start-up). Per-seed cells: val / test (trials to best of trials run).",
        "",
        PAPER,
        "",
        "## Findings",
        "",
        FINDINGS_START,
        kept_findings(path),
        FINDINGS_END,
    ]
    every_arm = sorted({a for names in COMPARISONS.values() for a in names})
    for data in datasets:
        results = [r for s in args.seeds for a in every_arm if (r := load_run(args.out, data, s, a)) is not None]
        png = f"dream_compare_{data}.png"
        if results:
            plot(data, results, args.seeds, args.trials, os.path.join(args.results, png))
        parts += ["", f"## {data}", ""]
        for comparison, names in COMPARISONS.items():
            parts += [f"### {TITLES[comparison]}", "",
                      comparison_table(results, names, args.seeds, target_for(args.target, data)), ""]
        if results:
            parts += [f"![{data}]({png})", ""]
    text = "\n".join(parts).rstrip() + "\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def target_for(targets: Sequence[str], data: str) -> float | None:
    """The --target value for `data`: its DATA=VALUE entry, else a bare VALUE, else None."""
    bare = None
    for item in targets:
        name, sep, value = item.rpartition("=")
        if not sep:
            bare = float(value)
        elif name == data:
            return float(value)
    return bare


def reported_datasets(out: str, asked: Sequence[str]) -> list[str]:
    """The datasets asked for plus any other with runs under `out` (an earlier invocation's), digits first."""
    present = sorted(os.listdir(out)) if os.path.isdir(out) else []
    names = list(dict.fromkeys([*asked, *present]))
    order = {"digits": 0, "fashion_mnist": 1}
    return sorted(names, key=lambda n: (order.get(n, 2), n))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["digits"], help="datasets (data=...): digits, fashion_mnist")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="search.seed values")
    parser.add_argument("--trials", type=int, default=10, help="search.max_trials for every arm")
    parser.add_argument("--comparisons", nargs="+", default=list(COMPARISONS), choices=list(COMPARISONS))
    parser.add_argument("--arms", nargs="*", default=None,
                        help="run only these arms (default: every arm of the chosen comparisons)")
    parser.add_argument("--family", default="auto", help="search.space.family of the shared default model")
    parser.add_argument("--channels", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--dense", nargs="+", type=int, default=[32])
    parser.add_argument("--hidden", nargs="+", type=int, default=[64])
    parser.add_argument("--initial-epochs", type=int, default=4, help="the first (default) model's epochs")
    parser.add_argument("--child-epochs", type=int, default=2, help="each later trial's epochs")
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hb-max-epochs", type=int, default=4, help="hyperband's R (search.space.max_epochs)")
    parser.add_argument("--hb-eta", type=int, default=2, help="hyperband's eta")
    parser.add_argument("--target", nargs="*", default=[],
                        help="also report the trials to reach a validation accuracy (the paper's 70%% target): "
                             "VALUE for every dataset or DATA=VALUE, e.g. digits=0.9 fashion_mnist=0.75")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    parser.add_argument("--fashion-extra", nargs="*", default=["data.max_train=3000"],
                        help="overrides added for data=fashion_mnist only (its reduced size)")
    parser.add_argument("--nice", type=int, default=5, help="niceness of each nas-search process")
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "dream_compare"), help="run directories")
    parser.add_argument("--results", default=RESULTS, help="where dream_compare.md and the plots go")
    parser.add_argument("--report-only", action="store_true", help="only (re)write the report from --out")
    args = parser.parse_args(argv)
    table = arms(args.hb_max_epochs, args.hb_eta)
    wanted = args.arms if args.arms is not None else list(dict.fromkeys(a for c in args.comparisons
                                                                        for a in COMPARISONS[c]))
    unknown = sorted(set(wanted) - set(table))
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; known: {sorted(table)}")
    if not args.report_only:
        base_extra = list(args.extra)
        for data in args.data:
            args.extra = base_extra + (args.fashion_extra if data == "fashion_mnist" else [])
            for seed in args.seeds:
                for name in wanted:
                    result = run(table[name], data, seed, args)
                    print(json.dumps({"data": data, "seed": seed, "arm": name} |
                                     {k: result.get(k) for k in ("status", "trials", "val_score", "test_accuracy",
                                                                 "search_seconds")}), flush=True)
        args.extra = base_extra
    print(report(args, reported_datasets(args.out, args.data)), flush=True)


if __name__ == "__main__":
    main()
