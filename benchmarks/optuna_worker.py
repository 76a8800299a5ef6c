"""Current Optuna's samplers behind a pipe, for benchmarks/sweeper_vs_optuna.py.

hydra-optuna-sweeper pins optuna 2.x, so the current release lives in its own
venv (`make optuna-current`: .venv/optuna-current, with torch for GPSampler),
and this process runs there: it needs optuna only, never nas or JAX, while the
benchmark evaluates the objectives in the project's venv. One JSON object a
line on stdin, one answer a line on stdout:

    {"op": "start", "sampler": "tpe_multivariate" | "gp", "seed": 0,
     "space": {"x1": {"type": "float", "low": -5, "high": 10, "log": false}, ...}}
    {"op": "ask", "n": 4}          -> {"params": [{...}, ...], "seconds": per proposal}
    {"op": "tell", "values": [...]} (the last ask's trials, in order)
"""

from __future__ import annotations

import json
import sys
import time

import optuna


def _distribution(spec: dict) -> optuna.distributions.BaseDistribution:
    if spec["type"] == "float":
        return optuna.distributions.FloatDistribution(spec["low"], spec["high"], log=spec.get("log", False))
    if spec["type"] == "int":
        return optuna.distributions.IntDistribution(spec["low"], spec["high"], log=spec.get("log", False))
    if spec["type"] == "categorical":
        return optuna.distributions.CategoricalDistribution(spec["choices"])
    raise ValueError(f"unknown distribution type {spec['type']!r} in {spec}")


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe_multivariate":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}: tpe_multivariate or gp")


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, space, pending = None, {}, []
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            space = {k: _distribution(v) for k, v in request["space"].items()}
            study = optuna.create_study(sampler=_sampler(request["sampler"], request["seed"]), direction="minimize")
            pending = []
            answer = {"version": optuna.__version__}
        elif request["op"] == "ask":
            tic = time.perf_counter()
            pending = [study.ask(space) for _ in range(request["n"])]  # asked together, told later: a batch
            answer = {"params": [t.params for t in pending], "seconds": (time.perf_counter() - tic) / len(pending)}
        elif request["op"] == "tell":
            for trial, value in zip(pending, request["values"], strict=True):
                study.tell(trial, value)
            pending, answer = [], {}
        else:
            raise ValueError(f"unknown op {request['op']!r}")
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
