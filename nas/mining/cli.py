"""nas-mine: mine Keras models from directories of Python files into a SQLite zoo.

    nas-mine DIR... [--db zoo.sqlite] [--jsonl zoo.jsonl] [--meta funnel.json] [--repo-root]

Prints Manas's funnel (files, Keras files, models, complete models,
supported-layer models, unique models) and the per-file outcomes, and adds
the unique complete models to the zoo (`nas.mining.zoo`). The output paths
are checked before anything is mined: a folder that does not exist or cannot
be written, or a ``--db`` that is not a zoo, ends the run at once (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys

from nas.mining.corpus import MANIFEST, SourceFile, python_files
from nas.mining.errors import MiningError, OutputPathError
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


def _check_output_path(path: str, option: str) -> None:
    """Checks that an output file can be written, before hours of mining depend on it.

    Args:
      path: the file ``option`` names.
      option: the command-line option, for the message (``"--db"``).
    Raises:
      OutputPathError: its folder does not exist or is not writable, or the
        path exists and is not a writable regular file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputPathError(f"{option} {path}: the folder {folder} does not exist; create it or pass another path")
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise OutputPathError(f"{option} {path}: exists and is not a regular file; pass a file path")
        if not os.access(path, os.W_OK):
            raise OutputPathError(f"{option} {path}: the file is not writable")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path}: the folder {folder} is not writable; pass another path")


def _check_outputs(args: argparse.Namespace) -> None:
    for option, path in (("--db", args.db), ("--jsonl", args.jsonl), ("--meta", args.meta)):
        if path is not None:
            _check_output_path(path, option)
    if os.path.exists(args.db):
        read_zoo(args.db)  # an existing --db must be a zoo of this version (ZooFormatError names it)


def main(argv: list[str] | None = None) -> int:
    """Runs nas-mine; returns the process exit status (0 on success, 2 on bad arguments or unwritable outputs)."""
    args = _parser().parse_args(argv)
    try:
        _check_outputs(args)
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
    except sqlite3.Error as exc:  # the checks above make this rare (a disk filling up, a locked zoo)
        print(f"nas-mine: {args.db}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(report.funnel.format())
    print("file outcomes: " + ", ".join(f"{status} {count}" for status, count in report.statuses.items()))
    print(f"zoo {args.db}: {added} new model(s), {total} in all")
    if args.jsonl:
        print(f"jsonl {args.jsonl}: {len(report.entries)} model(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
