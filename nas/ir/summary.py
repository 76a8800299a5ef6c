"""A readable, fixed-width table of an architecture (Keras's model.summary())."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from nas.ir.arch import Arch


def _human(count: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f}{unit}"
    return str(count)


def format_summary(arch: "Arch", input_shape: Sequence[int] | None = None) -> str:
    """Returns the table as text: one row per node plus totals."""
    rows = arch.layer_table(input_shape)
    header = ("id", "op", "inputs", "output shape", "params", "FLOPs")
    body = [
        (r["id"], r["op"], ",".join(r["inputs"]) or "-", "x".join(map(str, r["shape"])),
         f"{r['params']:,}", _human(r["flops"]))
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    numeric = {4, 5}

    def fmt(line):
        return "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(line, widths))).rstrip()

    rule = "-" * len(fmt(header))
    total_params = sum(r["params"] for r in rows)
    total_flops = sum(r["flops"] for r in rows)
    shapes = {r["id"]: r["shape"] for r in rows}
    title = (f"Architecture {arch.name or '(unnamed)'}: input {shapes[arch.inputs[0]]} "
             f"-> output {shapes[arch.output_id]}")
    footer = (f"params: {total_params:,}   FLOPs/example: {_human(total_flops)}   "
              f"depth: {arch.depth()}   hash: {arch.structural_hash()[:12]}")
    return "\n".join([title, rule, fmt(header), rule, *map(fmt, body), rule, footer])
