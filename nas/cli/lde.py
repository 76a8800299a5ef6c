"""nas-lde: the lifelong database of experiments (`nas.lde`) from the command line.

  nas-lde import RUN_DIR...          add old nas-search runs (their store.sqlite); idempotent
  nas-lde stats                      experiments per dataset (fingerprint, DCN, networks)
  nas-lde dcn data=fashion_mnist     the dataset's DCN (computed once per dataset, cached in the LDE)

Every command takes ``--lde PATH`` (default: ``lde.path`` of conf/lde/default.yaml,
i.e. ``$NAS_LDE_PATH`` or ``~/.cache/nas/lde.sqlite``). ``import`` reloads each
run's data from its recorded ``data_args`` so its experiments share the
content fingerprint of live runs on the same data (``--no-reload``: use a
``meta:`` fingerprint of the recorded description instead; also the fallback
when the data cannot be rebuilt). Exit status 2 on bad input (a damaged or
foreign LDE, a directory that is not a run), after the other runs imported.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from nas.config_dir import CONFIG_DIR
from nas.data import DatasetError
from nas.lde import LDE, LDEError
from nas.lde.ingest import META_PREFIX, IngestError, experiments_of_run


def default_path() -> str:
    """``lde.path`` as conf/lde/default.yaml resolves it (the same file nas-search and nas-train write)."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(os.path.join(CONFIG_DIR, "lde", "default.yaml"))
    return os.path.abspath(os.path.expanduser(str(node.path)))


def _import(lde: LDE, run_dirs: Sequence[str], reload_data: bool) -> int:
    failed = 0
    cache: dict = {}
    for run_dir in run_dirs:
        try:
            runs = experiments_of_run(run_dir, reload_data=reload_data, data_cache=cache)
        except IngestError as exc:
            print(f"nas-lde: error: {exc}", file=sys.stderr, flush=True)
            failed += 1
            continue
        for dataset, experiments in runs:
            added = lde.append(experiments, dataset=dataset)
            origin = "metadata" if dataset.fingerprint.startswith(META_PREFIX) else "content"
            print(f"{os.path.abspath(run_dir)}: {added} added, {len(experiments) - added} already there "
                  f"(dataset {dataset.name} {dataset.fingerprint[:12]}, fingerprint from its {origin})", flush=True)
    return failed


def stats_table(rows: Sequence[dict]) -> str:
    """`LDE.stats` as the table `nas-lde stats` prints."""
    columns = ("dataset", "fingerprint", "dcn", "experiments", "done", "networks")
    cells = [[str(r["name"]), r["fingerprint"][:12], "-" if r["dcn"] is None else f"{r['dcn']:.4f}",
              str(r["experiments"]), str(r["done"]), str(r["networks"])] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths)))]
    lines += ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths)))
              for line in cells]
    return "\n".join(lines)


def _stats(lde: LDE) -> None:
    try:
        from nas.tapas.dcn import PROBE_ID
    except ImportError:  # the DCN probe not installed: the latest DCN of any probe
        PROBE_ID = None
    rows = lde.stats(probe=PROBE_ID)
    print(stats_table(rows))
    print(f"{lde.count()} experiments on {len(rows)} datasets in {lde.path}")


def _dcn(lde: LDE, overrides: Sequence[str]) -> None:
    from nas.api import config as api_config
    from nas.api.datasource import from_data_config
    from nas.lde import dataset_record
    from nas.tapas.dcn import dataset_dcn

    bad = [o for o in overrides if not o.lstrip("+~").startswith("data")]
    if bad:
        raise ValueError(f"nas-lde dcn takes data overrides only (data=fashion_mnist data.max_train=3000), got {bad}")
    cfg = api_config.compose("train", list(overrides))
    api_config.configure_jax(cfg.runtime)
    data = from_data_config(cfg.data).dataset
    value = dataset_dcn(lde, data)
    record = dataset_record(data)
    print(f"DCN of {record.name} ({record.fingerprint[:12]}, {record.num_train} train / {record.num_val} val): "
          f"{value:.4f}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="nas-lde", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    commands = top.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lde", metavar="PATH", help="the LDE file (default: lde.path, $NAS_LDE_PATH or "
                                                      "~/.cache/nas/lde.sqlite)")
    imports = commands.add_parser("import", parents=[common], help="add nas-search run directories")
    imports.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    imports.add_argument("--no-reload", action="store_true",
                         help="do not reload the data to fingerprint it: use its recorded metadata")
    commands.add_parser("stats", parents=[common], help="experiments per dataset")
    dcn = commands.add_parser("dcn", parents=[common], help="a dataset's DCN (data=... overrides)")
    dcn.add_argument("overrides", nargs="*", metavar="data=...")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = os.path.abspath(os.path.expanduser(args.lde)) if args.lde else default_path()
    try:
        # stats reads only: a missing LDE is reported, not created.
        with LDE(path, create=args.command != "stats") as lde:
            if args.command == "import":
                return 2 if _import(lde, args.run_dirs, reload_data=not args.no_reload) else 0
            if args.command == "stats":
                _stats(lde)
            else:
                _dcn(lde, args.overrides)
    except (LDEError, ValueError, DatasetError) as exc:
        print(f"nas-lde: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
