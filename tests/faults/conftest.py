"""The fault suite's fixtures and its closing table.

Every fault test adds a row with `fault_row(category, case)` before it
injects anything and fills it in as it goes, so a test that fails half way
still shows what it injected. At the end of the session
`pytest_terminal_summary` prints the table (injected / survived / trials
lost / repeated / message named the problem / verdict) and writes it to
``runs/faults/fault_table.md`` (or ``$NAS_FAULT_TABLE``), printing the path.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

import faultlib

ROWS = pytest.StashKey[list]()
FAILED = pytest.StashKey[set]()
TABLE_PATH = os.environ.get("NAS_FAULT_TABLE", os.path.join(faultlib.REPO, "runs", "faults", "fault_table.md"))


@dataclasses.dataclass
class FaultRow:
    """One kind of fault and what became of it.

    Attributes:
      category, case: what was injected (e.g. "bad setting", "train.epochs=0").
      injected: faults injected.
      survived: of those, the ones handled as specified (the run resumed to
        the reference's trials, or the error was clean and changed nothing).
      lost: trials lost (None: no trials at stake, e.g. a refused setting).
      repeated: trials trained to completion twice (None: not applicable).
      named: whether every message named its file or key (None: no message
        is expected, e.g. after a SIGKILL).
      note: a few words on what was checked or what went wrong.
    """

    category: str
    case: str
    nodeid: str
    injected: int = 0
    survived: int = 0
    lost: int | None = None
    repeated: int | None = None
    named: bool | None = None
    note: str = ""


@pytest.fixture
def fault_row(request):
    """`fault_row(category, case)`: a new row of the closing table for this test."""
    rows = request.config.stash.setdefault(ROWS, [])

    def make(category: str, case: str) -> FaultRow:
        row = FaultRow(category, case, request.node.nodeid)
        rows.append(row)
        return row

    return make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.config.stash.setdefault(FAILED, set()).add(item.nodeid)
    return report


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return str(value)


def render(rows: list[FaultRow], failed: set[str]) -> list[str]:
    """The table as Markdown lines, totals last."""
    head = ("fault", "case", "injected", "survived", "trials lost", "repeated", "message named the problem",
            "verdict", "note")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        verdict = "FAIL" if r.nodeid in failed else ("ok" if r.injected else "not run")
        lines.append("| " + " | ".join((r.category, r.case, _cell(r.injected), _cell(r.survived), _cell(r.lost),
                                        _cell(r.repeated), _cell(r.named), verdict,
                                        r.note.replace("|", "/").replace("\n", " ")[:160])) + " |")
    lost = sum(r.lost or 0 for r in rows)
    named = [r.named for r in rows if r.named is not None]
    lines.append("| **total** | | " + " | ".join((
        str(sum(r.injected for r in rows)), str(sum(r.survived for r in rows)), str(lost),
        str(sum(r.repeated or 0 for r in rows)), f"{sum(named)}/{len(named)}",
        f"{sum(r.nodeid in failed for r in rows)} rows FAIL", "")) + " |")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    failed = config.stash.get(FAILED, set())
    lines = render(rows, failed)
    terminalreporter.write_sep("=", "fault injection table")
    for line in lines:
        terminalreporter.write_line(line)
    os.makedirs(os.path.dirname(TABLE_PATH), exist_ok=True)
    with open(TABLE_PATH, "w") as f:
        selection = config.getoption("markexpr") or "all"
        f.write(f"# Fault injection table ({time.strftime('%Y-%m-%d %H:%M:%S')}, -m {selection!r})\n\n"
                + "\n".join(lines) + "\n")
    terminalreporter.write_line(f"fault table written to {TABLE_PATH}")


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> faultlib.Reference:
    """The tiny search run once, uninterrupted: what every faulted run is compared with."""
    run_dir = str(tmp_path_factory.mktemp("faults") / "reference")
    proc = faultlib.search(run_dir)
    assert proc.rc == 0, "the uninterrupted reference search failed: " + proc.tail()
    report = proc.report()
    assert report["trials"] == faultlib.TRIALS and report["counts"]["done"] == faultlib.TRIALS, report
    return faultlib.Reference(run_dir, faultlib.kill_resume.store_view(run_dir), report)


@pytest.fixture(scope="session")
def half_run(tmp_path_factory) -> str:
    """The tiny search stopped by its budget after 2 of its 4 trials (search.max_trials=2; resumable to 4)."""
    run_dir = str(tmp_path_factory.mktemp("faults") / "half")
    proc = faultlib.search(run_dir, "search.max_trials=2")
    assert proc.rc == 0, "the 2-trial search failed: " + proc.tail()
    return run_dir
