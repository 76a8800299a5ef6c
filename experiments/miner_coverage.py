"""How much of a directory of Keras source files the static miner reads: per file and per failure reason.

Mines every ``*.py`` file under a directory (recursively) with
`nas.mining.mine_file` and prints, as Markdown:

* one row per file: its status, the models found, the models with an IR
  architecture and a concrete input shape (``arch``: what `nas` can train,
  MLPs included), the models mined completely (``complete``: Manas's test,
  which asks for a conv layer, plus nothing unresolved), the models that are
  zoo-ready (complete, every layer supported, an IR arch), and the failure
  reasons of the models that are not zoo-ready;
* the totals: the share of models complete and zoo-ready, and the share of
  files with at least one model and with at least one zoo-ready model;
* a table of failure reasons: how many models (or, for files without a
  model, files) each reason stops.

A reason is a coarse category of `MinedModel.issues` (an unsupported Keras
layer is named by its class, an unresolved value by its argument), so the
counts say which gap costs the most models.

DIR is read as `nas-mine` reads a corpus (`nas.mining.python_files`): files
directly in DIR form one repository, each subdirectory another, so a file
can import constants from the modules of its own repository
(`nas.mining.sibling_modules`). ``--only LIST`` reports only the files LIST
names (one path relative to DIR a line); the others are context. Usage:

    .venv/bin/python experiments/miner_coverage.py DIR [--only LIST] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

from nas.mining import MinedModel, mine_file, python_files
from nas.mining.keras_layers import ACTIVATION, CONV, LINEAR


def model_reasons(model: MinedModel) -> list[str]:
    """Why a model is not zoo-ready (empty when it is), one coarse category per gap."""
    reasons: list[str] = []
    for layer in model.layers:
        # An unknown callable is named by its source text; its head names it well enough to count.
        keras = layer.keras.split("(")[0].strip()
        if layer.op is None:
            reasons.append(f"unsupported layer {keras}" + (f" ({layer.note})" if "axis" in layer.note else ""))
        elif layer.shares is not None:
            reasons.append("shared weights")
        for arg, _ in layer.unresolved:
            if arg == "repeat":
                reasons.append("loop of unknown trip count")
            elif layer.op == "Input" and arg == "input_shape":
                reasons.append("input shape unresolved")
            else:
                reasons.append(f"unresolved {keras}.{arg}")
    kinds = {layer.kind for layer in model.layers}
    if CONV not in kinds:
        reasons.append("no conv layer (Manas's completeness test)")
    if not {ACTIVATION, LINEAR} <= kinds:
        reasons.append("no activation or no Dense layer")
    first_input = next((layer for layer in model.layers if layer.op == "Input"), None)
    if first_input is None:
        reasons.append("no Input layer")
    elif first_input.attrs.get("shape") is None and not any(a == "input_shape" for a, _ in first_input.unresolved):
        reasons.append("input shape not given")
    for issue in model.issues:
        if issue.startswith("invalid IR"):
            reasons.append("invalid IR (shape inference)")
        elif issue.startswith("the IR holds one Input") or issue == "the model has no output":
            reasons.append("graph shape (several inputs / no output)")
    if not reasons and (model.arch is None or not model.complete or not model.supported):
        reasons.append("other: " + "; ".join(model.issues)[:80])
    return list(dict.fromkeys(reasons))


def has_arch(model: MinedModel) -> bool:
    """An IR architecture whose Input carries a shape: a model `nas` can build and train as mined."""
    return model.arch is not None and all(node.attrs.get("shape") is not None
                                          for node in model.arch.nodes if node.op == "Input")


def zoo_ready(model: MinedModel) -> bool:
    return model.complete and model.supported and model.arch is not None


def coverage(root: str, only: set[str] | None = None) -> dict:
    """Mines the .py files under ``root`` (those in ``only``, when given); returns rows, totals and reasons."""
    files = [f for f in python_files(root) if only is None or os.path.relpath(f.path, root) in only]
    if not files:
        raise SystemExit(f"miner_coverage: no .py files to report under {root}")
    rows, reasons = [], collections.Counter()
    for source in files:
        rel = os.path.relpath(source.path, root)
        result = mine_file(source)
        per_model = [model_reasons(m) for m in result.models]
        for rs in per_model:
            reasons.update(rs)
        if not result.models:
            reasons[f"file: {result.reason.split(':')[0] if result.status != 'no_model' else 'no model built'}"] += 1
        rows.append({
            "file": rel, "status": result.status, "models": len(result.models),
            "arch": sum(has_arch(m) for m in result.models),
            "complete": sum(m.complete for m in result.models),
            "zoo_ready": sum(zoo_ready(m) for m in result.models),
            "reasons": sorted({r for rs in per_model for r in rs}) or ([result.reason] if result.reason else []),
        })
    models = sum(r["models"] for r in rows)
    totals = {
        "files": len(rows), "files_with_model": sum(r["models"] > 0 for r in rows),
        "files_with_zoo_ready": sum(r["zoo_ready"] > 0 for r in rows), "models": models,
        "arch": sum(r["arch"] for r in rows),
        "complete": sum(r["complete"] for r in rows), "zoo_ready": sum(r["zoo_ready"] for r in rows),
    }
    return {"rows": rows, "totals": totals, "reasons": dict(reasons.most_common())}


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else f"{part}/0"


def format_markdown(report: dict) -> str:
    t = report["totals"]
    lines = ["| file | status | models | arch | complete | zoo-ready | reasons |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['file']} | {r['status']} | {r['models']} | {r['arch']} | {r['complete']} | "
                     f"{r['zoo_ready']} | "
                     f"{'; '.join(r['reasons']).replace('|', '/')} |")
    lines += ["", f"files: {t['files']}; with a model: {_share(t['files_with_model'], t['files'])}; "
                  f"with a zoo-ready model: {_share(t['files_with_zoo_ready'], t['files'])}",
              f"models: {t['models']}; with an IR arch and input shape: {_share(t['arch'], t['models'])}; "
              f"complete: {_share(t['complete'], t['models'])}; "
              f"zoo-ready: {_share(t['zoo_ready'], t['models'])}",
              "", "| reason | models (files, for `file:` rows) |", "|---|---|"]
    lines += [f"| {reason} | {count} |" for reason, count in report["reasons"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="a directory of .py files (walked recursively)")
    parser.add_argument("--only", help="a file listing the paths (relative to DIR) to report, one a line")
    parser.add_argument("--json", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dir):
        print(f"miner_coverage: {args.dir} is not a directory", file=sys.stderr)
        return 2
    only = None
    if args.only:
        with open(args.only, encoding="utf-8") as f:
            only = {os.path.normpath(line.strip()) for line in f if line.strip()}
    report = coverage(args.dir, only)
    print(format_markdown(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
