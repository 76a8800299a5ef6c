"""Cost of one morphism on a ~1M-parameter CNN: NCEvolve applies one per child, so each should be cheap.

Builds ``cnn([64, 128, 256, 256], 10, dense=[256], batchnorm=True)`` on 32x32x3
inputs (about 1.0M parameters), initialises its variables, then times every
operator of `nas.morph`: one warm-up call, then the median of ``--runs`` calls,
each blocked until every leaf of the child's variables is ready. Prints one row
per operator with its median, the target and pass/fail, then the total.

    python benchmarks/morph_cost.py
    python benchmarks/morph_cost.py --runs 20 --target-ms 50 --host   # numpy variables, as TrainResult holds them
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import numpy as np

from nas import morph
from nas.compile import init_variables, to_flax
from nas.ir import cnn

INPUT_SHAPE = (32, 32, 3)


def _operators(key: jax.Array) -> dict:
    """Operator name -> call(arch, variables, run index) -> (child, variables)."""
    return {
        "widen conv (conv2 128->192)": lambda a, v, i: morph.widen(a, v, "conv2", 192, key),
        "widen dense (dense1 256->384)": lambda a, v, i: morph.widen(a, v, "dense1", 384, key),
        "deepen conv (after act2)": lambda a, v, i: morph.deepen(a, v, "act2", key),
        "deepen separable (after act2)": lambda a, v, i: morph.deepen(a, v, "act2", key, kind="separable"),
        "deepen dense (after act5)": lambda a, v, i: morph.deepen(a, v, "act5", key, kind="dense"),
        "widen_kernel (conv2 3->5)": lambda a, v, i: morph.widen_kernel(a, v, "conv2", 5),
        "add_skip (act2 -> act3)": lambda a, v, i: morph.add_skip(a, v, "act2", "act3", key),
        "branch (conv3)": lambda a, v, i: morph.branch(a, v, "conv3", key),
        # A different key per run, so the median is over a mix of mutations.
        "random_morph": lambda a, v, i: morph.random_morph(a, v, jax.random.fold_in(key, i))[:2],
    }


def _time(call, arch, variables, runs: int) -> tuple[float, int]:
    """Median milliseconds of `runs` calls after one warm-up, and the child's parameter count."""
    child, child_vars = call(arch, variables, 0)
    jax.block_until_ready(jax.tree.leaves(child_vars))
    seconds = []
    for i in range(runs):
        start = time.perf_counter()
        child, child_vars = call(arch, variables, i + 1)
        jax.block_until_ready(jax.tree.leaves(child_vars))
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds), child.num_params()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="timed calls per operator (median reported)")
    parser.add_argument("--target-ms", type=float, default=100.0, help="per-operator budget in milliseconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", action="store_true", help="pass numpy variables instead of device arrays")
    args = parser.parse_args()

    arch = cnn([64, 128, 256, 256], 10, input_shape=INPUT_SHAPE, dense=[256], batchnorm=True, name="bench-cnn")
    key = jax.random.key(args.seed)
    variables = init_variables(to_flax(arch), key, INPUT_SHAPE)
    if args.host:
        variables = jax.tree.map(np.asarray, jax.device_get(variables))
    jax.block_until_ready(jax.tree.leaves(variables))

    print(f"# device: {jax.devices()[0].device_kind} x{jax.device_count()}  cores: {os.cpu_count()}")
    print(f"# arch: {arch.name}, input {INPUT_SHAPE}, {arch.num_params():,} params, {len(arch.nodes)} nodes; "
          f"variables on {'host (numpy)' if args.host else 'device'}; median of {args.runs} runs after a warm-up")
    target = f"< {args.target_ms:g} ms"
    header = f"{'operator':<32}{'median ms':>11}{'child params':>15}  {'target':<10}{'result':>7}"
    print(header)
    print("-" * len(header))
    total, failed = 0.0, 0
    for name, call in _operators(key).items():
        try:
            ms, params = _time(call, arch, variables, args.runs)
        except morph.MorphError as exc:
            print(f"{name:<32}{'refused':>11}{'':>15}  {target:<10}{'FAIL':>7}  ({exc})")
            failed += 1
            continue
        ok = ms < args.target_ms
        failed += not ok
        total += ms
        print(f"{name:<32}{ms:>11.2f}{params:>15,}  {target:<10}{'pass' if ok else 'FAIL':>7}")
    print("-" * len(header))
    print(f"{'total':<32}{total:>11.2f}{'':>15}  {'':<10}{f'{failed} failed' if failed else 'all pass':>7}")


if __name__ == "__main__":
    main()
