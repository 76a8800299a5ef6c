"""Leave-one-dataset-out evaluation of TAP against training-free baselines (issue 15).

For every dataset D of the LDE that has a DCN and at least two finished full networks:

1. fit TAP (`nas.tapas.predictor.fit`) on `nas.tapas.examples.examples_from_lde` with D
   excluded, twice: the paper's selection |DCN - DCN(D)| <= tau (``--tau``, 0.05), and every
   other dataset (tau = inf; with few datasets none may lie within 0.05 of D, and those
   datasets are listed as "no neighbour");
2. predict the peak validation accuracy of D's networks: each lineage's full network (its
   largest prefix) and every experiment without a lineage, status done;
3. score the same networks with the baselines of `nas.tapas.proxies`: parameter count,
   FLOPs, NASWOT (on a batch of D's own training images, regenerated with
   experiments/lde_init.py's dataset builder and checked against the LDE's fingerprint),
   SynFlow;
4. Kendall tau (scipy.stats.kendalltau, tau-b) between each score and the actual peak, and the
   mean absolute error of TAP's predictions (the baselines are not accuracies, so only tau).

Writes experiments/results/tap_eval.md (a table per held-out dataset plus a mean row) and
experiments/results/tap_eval.png (predicted vs actual per held-out dataset). Proxy scores are
cached in ``--cache`` (JSON keyed by dataset fingerprint, arch hash, seed and batch size), so a
rerun on a grown LDE only scores the new networks.

    JAX_PLATFORMS=cpu .venv/bin/python experiments/tap_eval.py --lde runs/lde_init/lde.sqlite \
        --tap-epochs 100
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import importlib.util
import json
import logging
import math
import os
import platform
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from nas.ir import Arch  # noqa: E402
from nas.lde import LDE  # noqa: E402
from nas.lde.fingerprint import content_fingerprint  # noqa: E402
from nas.tapas import proxies  # noqa: E402

log = logging.getLogger("tap_eval")

BASELINES = ("params", "flops", "naswot", "synflow")
DONE = "done"


# ---------------------------------------------------------------------------- held-out networks
@dataclasses.dataclass(frozen=True)
class Network:
    """One held-out network: its arch, actual peak validation accuracy and LDE identity."""

    key: str
    arch: Arch
    arch_hash: str
    peak: float



TAP_BATCH = 64  # as conf/tapas/default.yaml: the predictor a search would train

def full_networks(lde: LDE, fingerprint: str) -> list[Network]:
    """D's finished full networks: the largest prefix of each lineage, plus rows without lineage.

    A lineage whose largest prefix did not finish (or has no peak) contributes nothing: its
    smaller prefixes are sub-networks, not the network TAP is asked about.
    """
    groups: dict[str, list] = {}
    for r in lde.experiments(datasets=[fingerprint]):
        groups.setdefault(f"lineage:{r.lineage}" if r.lineage else f"key:{r.key}", []).append(r)
    out = []
    for name in sorted(groups):
        full = max(groups[name], key=lambda r: (r.prefix or 0, r.key))
        peak = full.peak_val
        if full.status != DONE or peak is None or not math.isfinite(peak):
            continue
        out.append(Network(full.key, Arch.from_json(full.arch), full.arch_hash, float(peak)))
    return out


# ---------------------------------------------------------------------------- D's data for NASWOT
def _lde_init_module():
    path = os.path.join(ROOT, "experiments", "lde_init.py")
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location("_lde_init_for_tap_eval", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def dataset_builders(data_seed: int = 0) -> dict[str, Callable[[], Any]]:
    """name -> zero-argument builder of the `nas.data.Dataset` lde_init trains on (may be empty).

    lde_init's ``DATASETS`` maps a name to ``builder(seed)``; its ``--data-seed`` (default 0)
    is the seed, ours `data_seed`. A wrong seed is caught by the fingerprint check.
    """
    module = _lde_init_module()
    if module is None or not hasattr(module, "DATASETS"):
        log.warning("experiments/lde_init.py (or its DATASETS) not found: NASWOT will use standard-normal batches")
        return {}
    return {name: functools.partial(build, data_seed) for name, build in module.DATASETS.items()}


def proxy_batch_for(record, builders, size: int, seed: int) -> tuple[np.ndarray, str]:
    """A batch of D's training inputs and where it came from.

    The dataset is rebuilt with lde_init's builder of the same name and accepted only if its
    content fingerprint equals the LDE's (so it is the data the networks were trained on).
    Otherwise a standard-normal batch of D's input shape (the data are standardised, so
    this matches first and second moments, not content) and the reason.
    """
    build = builders.get(record.name)
    if build is not None:
        dataset = build()
        if content_fingerprint(dataset) == record.fingerprint:
            return proxies.proxy_batch(dataset.x_train, size, seed), "train split (fingerprint matches the LDE)"
        note = "lde_init's builder gives other content (fingerprint differs)"
    else:
        note = "no lde_init builder of that name"
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, *record.input_shape)).astype(np.float32)
    return x, f"standard-normal batch: {note}"


# ---------------------------------------------------------------------------- proxy cache
class ProxyCache:
    """JSON file of proxy scores keyed by dataset, arch hash, seed and batch size."""

    def __init__(self, path: str | None):
        self.path = path
        self.data: dict[str, dict[str, float]] = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    @staticmethod
    def key(fingerprint: str, arch_hash: str, seed: int, batch: int) -> str:
        return f"{fingerprint}:{arch_hash}:{seed}:{batch}"

    def get(self, key: str) -> dict[str, float] | None:
        return self.data.get(key)

    def put(self, key: str, value: dict[str, float]) -> None:
        self.data[key] = value

    def save(self) -> None:
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=0, sort_keys=True, allow_nan=True)
        os.replace(tmp, self.path)


def score_baselines(networks: Sequence[Network], record, x_batch: np.ndarray, *, seed: int,
                    cache: ProxyCache, only: Sequence[str] = BASELINES) -> dict[str, np.ndarray]:
    """{baseline: scores aligned with `networks`}; NaN where a proxy is undefined (e.g. no ReLU)."""
    shape = tuple(record.input_shape)
    out = {name: np.full(len(networks), np.nan) for name in only}
    started = time.perf_counter()
    for i, net in enumerate(networks):
        key = ProxyCache.key(record.fingerprint, net.arch_hash, seed, len(x_batch))
        scores = dict(cache.get(key) or {})
        missing = [n for n in only if n not in scores]
        if "params" in missing:
            scores["params"] = proxies.params_score(net.arch, shape)
        if "flops" in missing:
            scores["flops"] = proxies.flops_score(net.arch, shape)
        if "naswot" in missing:
            scores["naswot"] = proxies.naswot_score(net.arch, x_batch, seed)
        if "synflow" in missing:
            scores["synflow"] = proxies.synflow_score(net.arch, shape, seed)
        if missing:
            cache.put(key, scores)
            if (i + 1) % 10 == 0:
                cache.save()
                log.info("  proxies %d/%d (%.0f s)", i + 1, len(networks), time.perf_counter() - started)
        for name in only:
            out[name][i] = scores[name]
    cache.save()
    return out


# ---------------------------------------------------------------------------- metrics
def kendall(scores: np.ndarray, actual: np.ndarray) -> tuple[float, int]:
    """(Kendall tau-b, pairs' count n) over the networks where the score is defined (NaN dropped).

    -inf (NASWOT of a singular kernel) is kept: it ranks last, as the score means (scipy ranks
    infinities like any other value).
    """
    from scipy.stats import kendalltau

    scores = np.asarray(scores, np.float64)
    ok = ~np.isnan(scores)
    if ok.sum() < 2:
        return math.nan, int(ok.sum())
    tau = kendalltau(scores[ok], actual[ok]).statistic
    return float(tau), int(ok.sum())


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted, np.float64) - actual)))


# ---------------------------------------------------------------------------- one held-out dataset
@dataclasses.dataclass
class HeldOut:
    name: str
    fingerprint: str
    dcn: float
    networks: list[Network]
    actual: np.ndarray
    tap: dict[str, dict[str, Any]]          # variant -> {pred, tau, mae, examples, datasets, note}
    baselines: dict[str, np.ndarray]
    batch_source: str
    proxy_seconds: float


def fit_and_predict(lde: LDE, record, dcn: float, networks: Sequence[Network], *, tau: float, epochs: int,
                    seed: int) -> dict[str, Any]:
    """TAP trained without D (on datasets within `tau` of D's DCN; inf: all), predicting D's networks."""
    from nas.tapas.examples import examples_from_lde, neighbours
    from nas.tapas.predictor import TAPConfig, fit

    finite = math.isfinite(tau)
    examples = examples_from_lde(lde, dcn=dcn if finite else None, tau=tau if finite else 0.0,
                                 exclude=[record.fingerprint])
    used = sorted({e.dataset for e in examples})
    names = [(lde.dataset(fp).name, lde.dcn(fp)) for fp in used]
    if not examples:
        near = [n for n, fp, _ in neighbours(lde, dcn, tau if finite else 1.0) if fp != record.fingerprint]
        note = (f"no other dataset with a DCN within {tau:g} of {dcn:.3f}" if not near else
                f"the dataset(s) within {tau:g} ({', '.join(near)}) have no finished experiment yet")
        return {"pred": None, "examples": 0, "datasets": names, "near": near, "note": note + ": TAP not fitted"}
    started = time.perf_counter()
    tap = fit(examples, TAPConfig(epochs=epochs, batch_size=TAP_BATCH, seed=seed, tau=tau if finite else 1.0),
              lde_count=lde.count())
    fit_s = time.perf_counter() - started
    pred = tap.predict([n.arch for n in networks], tuple(record.input_shape), int(record.num_classes), dcn)
    return {"pred": np.asarray(pred, np.float64), "examples": len(examples), "datasets": names,
            "fit_seconds": fit_s, "final_loss": tap.metadata.get("final_loss"), "note": ""}


def evaluate(lde: LDE, *, tau: float, epochs: int, seed: int, batch: int, cache: ProxyCache,
             builders: dict, only: Sequence[str] | None = None,
             min_networks: int = 2) -> tuple[list[HeldOut], list[str]]:
    """Every eligible held-out dataset, and notes on the datasets that were not."""
    results, skipped = [], []
    for record in lde.datasets():
        if only and record.name not in only and record.fingerprint not in only:
            continue
        dcn = lde.dcn(record.fingerprint)
        if dcn is None:
            skipped.append(f"{record.name}: no DCN")
            continue
        if record.num_classes is None:
            skipped.append(f"{record.name}: regression (TAP predicts classification accuracy)")
            continue
        networks = full_networks(lde, record.fingerprint)
        if len(networks) < min_networks:
            skipped.append(f"{record.name}: {len(networks)} finished full network(s), fewer than {min_networks}")
            continue
        log.info("held out %s (DCN %.3f, %d networks)", record.name, dcn, len(networks))
        actual = np.array([n.peak for n in networks])
        variants = {}
        for label, t in (("tau", tau), ("all", math.inf)):
            variants[label] = fit_and_predict(lde, record, dcn, networks, tau=t, epochs=epochs, seed=seed)
            v = variants[label]
            if v["pred"] is not None:
                v["tau"], _ = kendall(v["pred"], actual)
                v["mae"] = mae(v["pred"], actual)
                log.info("  TAP (%s): %d examples from %s, fit %.1f s, Kendall %.3f, MAE %.3f", label,
                         v["examples"], [n for n, _ in v["datasets"]], v["fit_seconds"], v["tau"], v["mae"])
            else:
                log.info("  TAP (%s): %s", label, v["note"])
        x, source = proxy_batch_for(record, builders, batch, seed)
        started = time.perf_counter()
        base = score_baselines(networks, record, x, seed=seed, cache=cache)
        results.append(HeldOut(record.name, record.fingerprint, float(dcn), networks, actual, variants, base,
                               source, time.perf_counter() - started))
    return results, skipped


# ---------------------------------------------------------------------------- report
def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _mean(values: Sequence[float | None]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def table(results: Sequence[HeldOut], tau: float) -> list[str]:
    head = ["held-out dataset", "DCN", "networks", f"TAP tau<={tau:g}: Kendall", "MAE",
            "TAP all others: Kendall", "MAE", "params", "FLOPs", "NASWOT", "SynFlow"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = []
    for r in results:
        kt = {b: kendall(r.baselines[b], r.actual)[0] for b in BASELINES}
        t, a = r.tap["tau"], r.tap["all"]
        row = [t.get("tau"), t.get("mae"), a.get("tau"), a.get("mae"), *(kt[b] for b in BASELINES)]
        rows.append(row)
        lines.append("| " + " | ".join([r.name, f"{r.dcn:.3f}", str(len(r.networks))] + [_fmt(v) for v in row]) + " |")
    if rows:
        means = [_mean([row[i] for row in rows]) for i in range(len(rows[0]))]
        lines.append("| **mean** | | " + str(sum(len(r.networks) for r in results)) + " | "
                     + " | ".join(f"**{_fmt(v)}**" for v in means) + " |")
        p = pooled(results)
        lines.append("| pooled (every held-out network, ranked together) | | " + str(p["n"]) + " | "
                     + " | ".join(_fmt(p[k]) for k in ("tap_tau", "tap_tau_mae", "tap_all", "tap_all_mae",
                                                       *BASELINES)) + " |")
    return lines


def pooled(results: Sequence[HeldOut]) -> dict[str, float]:
    """Kendall tau over all held-out networks of all datasets at once, each scored by the TAP that
    did not see its dataset. This is the question a user with a new dataset never asks (one
    dataset at a time), but with a handful of networks per dataset it is the statistically
    steadier number, and it rewards a score that also knows how hard each dataset is (TAP,
    through the DCN; the baselines cannot)."""
    out: dict[str, float] = {"n": sum(len(r.networks) for r in results)}
    if not results:
        return out
    actual = np.concatenate([r.actual for r in results])
    for b in BASELINES:
        out[b] = kendall(np.concatenate([r.baselines[b] for r in results]), actual)[0]
    for label in ("tau", "all"):
        fitted = [r for r in results if r.tap[label]["pred"] is not None]
        if fitted:
            a = np.concatenate([r.actual for r in fitted])
            pr = np.concatenate([r.tap[label]["pred"] for r in fitted])
            out[f"tap_{label}"], out[f"tap_{label}_mae"] = kendall(pr, a)[0], mae(pr, a)
        else:
            out[f"tap_{label}"] = out[f"tap_{label}_mae"] = math.nan
    return out


def write_markdown(path: str, results: Sequence[HeldOut], skipped: Sequence[str], *, args, lde: LDE,
                   seconds: float, device: str) -> None:
    lines = ["# TAP vs training-free baselines, leave-one-dataset-out", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} by",
             "", "```", "JAX_PLATFORMS=cpu .venv/bin/python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
             "```", "",
             f"LDE `{args.lde}`: {lde.count()} experiments on {len(lde.datasets())} dataset(s). Device: {device}. "
             f"TAP: `TAPConfig(epochs={args.tap_epochs}, batch_size={TAP_BATCH}, seed={args.seed})` (the batch of "
             "nas-search's tapas.batch_size; the paper's 512 is one step per epoch at this LDE size), the paper's other settings "
             f"(LSTMs 50/100, RMSprop 1e-3, batch 512). Proxies: init seed {args.seed}, NASWOT batch {args.batch}. "
             f"Wall time {seconds:.0f} s.", "",
             "Kendall tau-b between each score and the actual peak validation accuracy of the held-out "
             "dataset's full networks (higher is better; 0 = no better than chance); MAE only for TAP, "
             "whose outputs are accuracies. Baselines read higher score = better network. With n networks "
             "per dataset a per-dataset tau moves in steps of 2/(n(n-1)) (n = 2: only +1 or -1), so read "
             "the per-dataset rows as anecdotes and the pooled row (TAP's tau-variant pooled over the "
             "datasets where it was fitted) as the steadier number.", ""]
    lines += table(results, args.tau)
    lines += ["", "## Per held-out dataset", ""]
    for r in results:
        lines.append(f"- **{r.name}** (DCN {r.dcn:.3f}, {len(r.networks)} networks, actual peak "
                     f"{r.actual.min():.3f}-{r.actual.max():.3f}, NASWOT batch: {r.batch_source}; "
                     f"proxies {r.proxy_seconds:.0f} s)")
        for label, v in r.tap.items():
            what = f"tau <= {args.tau:g}" if label == "tau" else "all other datasets"
            if v["pred"] is None:
                lines.append(f"  - TAP ({what}): {v['note']}")
            else:
                ds = ", ".join(f"{n} ({_fmt(d)})" for n, d in v["datasets"])
                lines.append(f"  - TAP ({what}): {v['examples']} examples from {ds}; fit {v['fit_seconds']:.1f} s, "
                             f"final loss {_fmt(v['final_loss'], 4)}; predicted "
                             f"{v['pred'].min():.3f}-{v['pred'].max():.3f}")
        undefined = int(np.isnan(r.baselines["naswot"]).sum())
        if undefined:
            lines.append(f"  - NASWOT undefined (no ReLU) for {undefined} network(s): left out of its Kendall tau")
    no_neighbour = [r.name for r in results if r.tap["tau"]["pred"] is None and not r.tap["tau"].get("near")]
    empty = [r.name for r in results if r.tap["tau"]["pred"] is None and r.tap["tau"].get("near")]
    lines += ["", f"Datasets with no neighbour within tau = {args.tau:g}: "
              + (", ".join(no_neighbour) if no_neighbour else "none") + "."]
    if empty:
        lines += [f"Datasets whose neighbours within tau = {args.tau:g} have no finished experiment yet: "
                  + ", ".join(empty) + "."]
    if skipped:
        lines += ["", "Not evaluated: " + "; ".join(skipped) + "."]
    lines += ["", "## Paper numbers", "",
              "The NeuNetS paper (shared/seeds/001, section 4.1.2) describes TAP but reports no prediction "
              "quality (no Kendall tau, correlation or error) for it, so there is no paper number to put "
              "beside ours. TAPAS's own paper (Istrate et al., arXiv 1806.00250) is not among the shared "
              "texts; its numbers are not quoted here.", "",
              "![predicted vs actual](tap_eval.png)", ""]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_plot(path: str, results: Sequence[HeldOut], tau: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(results) + (1 if results else 0))
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for ax, r in zip(axes.flat, results):
        for label, marker, colour in (("all", "o", "tab:blue"), ("tau", "x", "tab:orange")):
            v = r.tap[label]
            if v["pred"] is None:
                continue
            what = f"tau<={tau:g}" if label == "tau" else "all others"
            ax.scatter(r.actual, v["pred"], s=14, marker=marker, color=colour, alpha=0.7,
                       label=f"TAP {what}: Kendall {v['tau']:.2f}, MAE {v['mae']:.3f}")
        lo = min(0.0, float(r.actual.min()))
        ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlim(lo, 1)
        ax.set_ylim(lo, 1)
        ax.set_title(f"{r.name} (DCN {r.dcn:.2f}, {len(r.networks)} nets)", fontsize=9)
        ax.set_xlabel("actual peak val accuracy")
        ax.set_ylabel("TAP predicted")
        ax.legend(fontsize=7, loc="upper left")
    if results:  # the pooled panel: every held-out network, coloured by dataset
        ax = list(axes.flat)[len(results)]
        p = pooled(results)
        for r in results:
            if r.tap["all"]["pred"] is not None:
                ax.scatter(r.actual, r.tap["all"]["pred"], s=12, alpha=0.7, label=r.name)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"pooled, TAP all others: Kendall {_fmt(p['tap_all'], 2)}, MAE {_fmt(p['tap_all_mae'])}",
                     fontsize=9)
        ax.set_xlabel("actual peak val accuracy")
        ax.set_ylabel("TAP predicted")
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(results) + 1:]:
        ax.axis("off")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> list[HeldOut]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lde", default="runs/lde_init/lde.sqlite")
    parser.add_argument("--tau", type=float, default=0.05)
    parser.add_argument("--tap-epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=proxies.DEFAULT_BATCH, help="NASWOT minibatch size")
    parser.add_argument("--datasets", nargs="*", help="only these held-out datasets (names or fingerprints)")
    parser.add_argument("--cache", default="runs/tap_eval/proxy_cache.json")
    parser.add_argument("--out-md", default="experiments/results/tap_eval.md")
    parser.add_argument("--out-png", default="experiments/results/tap_eval.png")
    parser.add_argument("--data-seed", type=int, default=0, help="lde_init's --data-seed (rebuilds D's data)")
    parser.add_argument("--no-builders", action="store_true",
                        help="do not import experiments/lde_init.py (NASWOT on standard-normal batches)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not os.path.exists(args.lde):
        parser.error(f"--lde {args.lde}: no such file (run experiments/lde_init.py first)")
    import jax

    device = f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}), {platform.node()}"
    started = time.perf_counter()
    with LDE(args.lde, create=False) as lde:
        builders = {} if args.no_builders else dataset_builders(args.data_seed)
        results, skipped = evaluate(lde, tau=args.tau, epochs=args.tap_epochs, seed=args.seed, batch=args.batch,
                                    cache=ProxyCache(args.cache), builders=builders, only=args.datasets)
        seconds = time.perf_counter() - started
        write_markdown(args.out_md, results, skipped, args=args, lde=lde, seconds=seconds, device=device)
    write_plot(args.out_png, results, args.tau)
    print("\n".join(table(results, args.tau)))
    for s in skipped:
        print("not evaluated:", s)
    print(f"wrote {args.out_md} and {args.out_png} ({seconds:.0f} s)")
    return results


if __name__ == "__main__":
    main()
