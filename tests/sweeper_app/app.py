"""A tiny Hydra app whose job is a test function: Branin, Hartmann-6, or Branin with a categorical input.

It can also fail on purpose (`mode=raise`, `mode=nonfinite`), sleep, return a dict,
and append what it did to a JSON-lines file, so the sweeper's tests can check
failures, parallel launchers and resumption from outside the sweep.

    python tests/sweeper_app/app.py --multirun x1='interval(-5,10)' x2='interval(0,15)' \
        hydra.sweeper.n_trials=20 hydra.sweep.dir=/tmp/branin
"""

import json
import math
import os
import time

import hydra
from hydra.core.hydra_config import HydraConfig

# Optimum 0.397887 at (-pi, 12.275), (pi, 2.275), (9.42478, 2.475) on [-5, 10] x [0, 15].
BRANIN_OPTIMUM = 0.397887
# Optimum -3.32237 on [0, 1]^6.
HARTMANN6_OPTIMUM = -3.32237
# mixed_branin: branin + this per optimizer; the optimum is branin's, with sgd.
OPTIMIZER_PENALTY = {"sgd": 0.0, "adam": 4.0, "rmsprop": 10.0}

_H_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_H_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
_H_ALPHA = [1.0, 1.2, 3.0, 3.2]


def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(x) -> float:
    return -sum(alpha * math.exp(-sum(a * (xi - p) ** 2 for a, xi, p in zip(A, x, P)))
                for alpha, A, P in zip(_H_ALPHA, _H_A, _H_P))


def evaluate(cfg) -> float:
    if cfg.function == "branin":
        return branin(cfg.x1, cfg.x2)
    if cfg.function == "hartmann6":
        return hartmann6([float(v) for v in cfg.x])
    if cfg.function == "mixed_branin":
        return branin(cfg.x1, cfg.x2) + OPTIMIZER_PENALTY[cfg.optimizer]
    raise ValueError(f"unknown function {cfg.function!r}")


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    start = time.time()
    if cfg.sleep:
        time.sleep(cfg.sleep)
    if cfg.mode == "raise":
        raise RuntimeError("this job fails on purpose (mode=raise)")
    value = float("nan") if cfg.mode == "nonfinite" else evaluate(cfg)
    if cfg.record:
        job = HydraConfig.get().job.num if HydraConfig.initialized() else None
        with open(cfg.record, "a") as f:
            f.write(json.dumps({"job": job, "pid": os.getpid(), "start": start, "end": time.time(),
                                "value": value}) + "\n")
    if cfg.returns == "dict":
        return {"value": value, "score": -value, "pid": os.getpid()}
    return value


if __name__ == "__main__":
    main()
