"""NCEvolve's mutation set (NeuNetS s4.1.2) as one random, function-preserving step."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

from nas.ir import Arch
from nas.morph.errors import MorphError
from nas.morph.graph import is_upstream, shapes_of
from nas.morph.insert import add_skip, branch, deepen, tensor_activation, widen_kernel
from nas.morph.widen import widen

MUTATIONS = ("insert_conv", "branch_insert", "insert_skip", "widen_filters", "widen_dense", "grow_kernel")
_MAX_ATTEMPTS = 8  # candidate sites tried per mutation before moving to the next mutation


def _relu_sites(arch: Arch, shapes, rank: int) -> list[str]:
    sites = []
    for n in arch.topological_order():
        if n.id in arch.outputs or len(shapes[n.id]) != rank:
            continue
        try:
            if tensor_activation(arch, n.id) == "relu":
                sites.append(n.id)
        except MorphError:
            pass
    return sites


def _hidden(arch: Arch, ops: Sequence[str]) -> list[str]:
    return [n.id for n in arch.topological_order() if n.op in ops and n.id not in arch.outputs]


def _candidates(name: str, arch: Arch, shapes, rng: np.random.Generator) -> list[tuple[Callable, dict]]:
    """(apply, record) pairs for every site where mutation `name` could apply."""
    if name == "insert_conv":
        return [(lambda a, v, k, s=s, kind=kind: deepen(a, v, s, k, kind=kind),
                 {"node": s, "kind": kind})
                for s in _relu_sites(arch, shapes, 3) for kind in [str(rng.choice(["conv", "separable"]))]]
    if name == "branch_insert":
        def apply(a, v, k, s):
            k1, k2 = jax.random.split(k)
            child, cv = branch(a, v, s, k1)
            side = child.node(s).inputs[int(rng.integers(2))]
            return deepen(child, cv, side, k2, kind="conv")
        return [(lambda a, v, k, s=s: apply(a, v, k, s), {"node": s})
                for s in _hidden(arch, ("Conv2D",)) if arch.node(s).normalized_attrs()["filters"] >= 2]
    if name == "insert_skip":
        spatial = _relu_sites(arch, shapes, 3)
        pairs = [(f, t) for t in spatial for f in spatial if is_upstream(arch, f, t)]
        return [(lambda a, v, k, f=f, t=t: add_skip(a, v, f, t, k), {"from": f, "to": t}) for f, t in pairs]
    if name in ("widen_filters", "widen_dense"):
        ops = ("Conv2D", "SeparableConv2D", "Conv1D") if name == "widen_filters" else ("Dense",)
        out = []
        for s in _hidden(arch, ops):
            old = arch.node(s).attrs["units" if ops == ("Dense",) else "filters"]
            factor = float(rng.uniform(1.2, 2.0))
            new = max(old + 1, int(round(old * factor)))
            out.append((lambda a, v, k, s=s, new=new: widen(a, v, s, new, k), {"node": s, "factor": factor, "width": new}))
        return out
    if name == "grow_kernel":
        out = []
        for s in _hidden(arch, ("Conv2D", "Conv1D", "SeparableConv2D", "DepthwiseConv2D")):
            new = max(arch.node(s).normalized_attrs()["kernel_size"]) + 2
            out.append((lambda a, v, k, s=s, new=new: widen_kernel(a, v, s, new), {"node": s, "kernel_size": new}))
        return out
    raise MorphError(f"unknown mutation {name!r}; choose from {MUTATIONS}")


def random_morph(arch: Arch, variables: dict, key: jax.Array,
                 allowed: Sequence[str] = MUTATIONS) -> tuple[Arch, dict, dict]:
    """Applies one randomly chosen, applicable NCEvolve mutation.

    Mutations are tried in a random order, and sites within a mutation too,
    until one applies (a site can refuse, e.g. a skip whose shapes cannot meet).

    Returns:
      (child, child variables, record) where record is
      ``{"op": <mutation>, ...its arguments}``.
    Raises:
      MorphError: no allowed mutation applies anywhere in `arch`.
    """
    unknown = set(allowed) - set(MUTATIONS)
    if unknown:
        raise MorphError(f"unknown mutation(s) {sorted(unknown)}; choose from {MUTATIONS}")
    shapes = shapes_of(arch, None)
    order_key, site_key, apply_key = jax.random.split(key, 3)
    rng = np.random.default_rng(np.asarray(jax.random.randint(site_key, (4,), 0, 2**31 - 1)).tolist())
    names = [allowed[i] for i in np.asarray(jax.random.permutation(order_key, len(allowed)))]
    refusals = []
    for name in names:
        candidates = _candidates(name, arch, shapes, rng)
        for index in rng.permutation(len(candidates))[:_MAX_ATTEMPTS]:
            apply, record = candidates[index]
            try:
                child, child_vars = apply(arch, variables, apply_key)
            except MorphError as exc:
                refusals.append(f"{name} at {record}: {exc}")
                continue
            return child, child_vars, {"op": name, **record}
    detail = "; ".join(refusals[-3:]) or "no site qualifies"
    raise MorphError(f"no mutation of {list(allowed)} applies to {arch.name or 'this architecture'} ({detail})")
