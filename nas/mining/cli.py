"""nas-mine: mine Keras models from directories of Python files into a SQLite zoo.

    nas-mine DIR... [--db zoo.sqlite] [--jsonl zoo.jsonl] [--meta funnel.json] [--repo-root]

Prints Manas's funnel (files, Keras files, models, complete models,
supported-layer models, unique models) and the per-file outcomes, and adds
the unique complete models to the zoo (`nas.mining.zoo`).
"""

from __future__ import annotations

import argparse
import json
import sys

from nas.mining.corpus import MANIFEST, SourceFile, python_files
from nas.mining.errors import MiningError
from nas.mining.funnel import CorpusReport, mine_corpus
from nas.mining.zoo import export_jsonl, read_zoo, write_zoo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-mine", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="directories to walk for *.py files")
    parser.add_argument("--db", default="zoo.sqlite", help="the SQLite zoo to add unique models to")
    parser.add_argument("--jsonl", help="also write this run's unique models to a JSONL file")
    parser.add_argument("--meta", help="also write this run's funnel, file outcomes and repositories (JSON)")
    parser.add_argument("--repo-root", action="store_true",
                        help=f"each DIR is one repository (default: each subdirectory is one); "
                             f"a {MANIFEST} in DIR names repositories and commits")
    return parser


def _write_meta(path: str, files: list[SourceFile], report: CorpusReport) -> None:
    repos = sorted({(f.repo or "", f.commit or "") for f in files})
    doc = {
        "funnel": dict(zip(("files", "keras_files", "models", "complete", "supported", "unique"),
                           (count for _, count in report.funnel.rows()))),
        "statuses": dict(report.statuses),
        "repositories": [{"repo": repo, "commit": commit or None} for repo, commit in repos],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


def main(argv: list[str] | None = None) -> int:
    """Runs nas-mine; returns the process exit status (0 on success, 2 on bad arguments)."""
    args = _parser().parse_args(argv)
    try:
        files = [f for root in args.dirs for f in python_files(root, repo_root=args.repo_root)]
        report = mine_corpus(files)
        added = write_zoo(args.db, report.entries)
        total = len(read_zoo(args.db))
        if args.jsonl:
            export_jsonl(report.entries, args.jsonl)
        if args.meta:
            _write_meta(args.meta, files, report)
    except (MiningError, OSError) as exc:
        print(f"nas-mine: {exc}", file=sys.stderr)
        return 2
    print(report.funnel.format())
    print("file outcomes: " + ", ".join(f"{status} {count}" for status, count in report.statuses.items()))
    print(f"zoo {args.db}: {added} new model(s), {total} in all")
    if args.jsonl:
        print(f"jsonl {args.jsonl}: {len(report.entries)} model(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
