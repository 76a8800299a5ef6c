"""Every search strategy side by side at an equal trial budget, through `nas-search`.

Each strategy runs as a user would run it (a subprocess of nas-search with
resume=true, so an interrupted comparison continues), and the table reports
the best trial's test accuracy, parameters, depth, t_tr and the search's wall
time. Usage:

    .venv/bin/python experiments/compare_strategies.py --data digits --trials 12 --epochs 10
    .venv/bin/python experiments/compare_strategies.py --data fashion_mnist --trials 8 --epochs 3 \
        --extra data.max_train=10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = ("random", "sobol", "dnc", "hyperband", "asha", "ncevolve", "autokeras_greedy")


def dnc_overrides(trials: int) -> list[str]:
    """Deep-n-Cheap's stages scaled to the budget: about half BO, a short grid, the rest BO."""
    stage1 = max(2, trials // 2)
    return [f"search.space.stage1_trials={stage1}", f"search.space.n_initial={max(1, stage1 // 2)}",
            "search.space.mlp_dropout_grid=[0.0,0.3]", f"search.space.stage3_trials={max(1, trials - stage1 - 2)}"]


def run(strategy: str, data: str, trials: int, epochs: int, out: str, extra: list[str]) -> dict:
    run_dir = os.path.join(out, data, strategy)
    overrides = [f"search={strategy}", f"data={data}", f"search.max_trials={trials}", f"train.epochs={epochs}",
                 "logger=console", "progress=false", f"hydra.run.dir={run_dir}", "resume=true", *extra]
    if strategy == "dnc":
        overrides += dnc_overrides(trials)
    proc = subprocess.run([sys.executable, "-m", "nas.cli.search", *overrides], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true"))
    if proc.returncode != 0:
        return {"strategy": strategy, "status": "error: " + proc.stderr.strip().splitlines()[-1][:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"strategy": strategy}


def table(rows: list[dict]) -> str:
    header = ("| strategy | trials | best val acc | test acc | params | depth | best's epochs | t_tr (s) | search (s) |\n"
              "|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for r in rows:
        if r.get("status") != "done":
            lines.append(f"| {r['strategy']} | {r.get('status')} |  |  |  |  |  |  |  |")
            continue
        lines.append(f"| {r['strategy']} | {r['trials']} | {r['val_score']:.4f} | {r['test_accuracy']:.4f} | "
                     f"{r['num_params']:,} | {r['depth']} | {r['epochs']} | {r['t_tr']:.3f} | {r['search_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "compare"))
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    args = parser.parse_args(argv)
    rows = []
    for name in args.strategies:
        rows.append(run(name, args.data, args.trials, args.epochs, args.out, args.extra))
        print(json.dumps({k: rows[-1].get(k) for k in ("strategy", "status", "test_accuracy", "num_params",
                                                         "search_seconds")}), flush=True)
    text = (f"{args.data}, {args.trials} trials each; train.epochs={args.epochs} for the strategies that train each "
            "trial from scratch (random, sobol, dnc); hyperband/asha use their own epoch rungs and the morphism "
            "strategies their own initial/child epochs (a morph child's count is its own training on top of "
            "its inherited weights); search time is summed over invocations\n\n" + table(rows))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.data}.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
