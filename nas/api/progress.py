"""What a person watching a search sees: a progress bar and ``search.log``, one line per trial.

The bar shows trials done of the budget with tqdm's ETA, the best
validation score so far (not the last trial's) and, under a time budget,
the elapsed time against it. Bars draw only on a terminal: piped or
redirected output (CI logs, ``> out.txt``) would fill with carriage returns.

``search.log`` goes through the ``nas.trials`` logger. Under Hydra (the CLI)
its lines are written by the file handler Hydra's job logging opened in the
run directory, without reaching the console; from Python a handler of our
own writes the same file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from typing import Any, Iterator

from tqdm import tqdm

LOG_FILE = "search.log"
trial_log = logging.getLogger("nas.trials")


def bars_enabled(progress: bool) -> bool:
    """Bars are drawn when asked for and both stdout and stderr (where tqdm draws) are terminals."""
    return bool(progress) and sys.stdout.isatty() and sys.stderr.isatty()


@contextlib.contextmanager
def logging_trials_to(run_dir: str) -> Iterator[logging.Logger]:
    """`trial_log` writing ``<run_dir>/search.log`` (Hydra's handler when it has one there), not the console."""
    path = os.path.abspath(os.path.join(run_dir, LOG_FILE))
    hydra_handlers = [h for h in logging.getLogger().handlers
                      if isinstance(h, logging.FileHandler) and os.path.abspath(h.baseFilename) == path]
    own = [] if hydra_handlers else [logging.FileHandler(path, encoding="utf-8")]
    for h in own:
        h.setFormatter(logging.Formatter("[%(asctime)s] %(message)s"))
    previous = (trial_log.handlers[:], trial_log.propagate, trial_log.level)
    trial_log.handlers = hydra_handlers + own
    trial_log.propagate = False  # the root logger's console handler would print every line
    trial_log.setLevel(logging.INFO)
    try:
        yield trial_log
    finally:
        trial_log.handlers, trial_log.propagate, trial_log.level = previous
        for h in own:
            h.close()


class SearchProgress:
    """The search bar and the per-trial log line; `on_trial` is the engine's callback."""

    def __init__(self, *, total: int, name: str, max_time: float | None, enabled: bool, done_before: int = 0):
        self.max_time = max_time
        self.start = time.perf_counter()
        self.best: float | None = None
        self.bar = tqdm(total=total, initial=0, desc=f"{name} trials", unit="trial", disable=not enabled)

    def on_trial(self, result: Any, seconds: float | None) -> None:
        """Advances the bar; `seconds` is None for a trial replayed from the store (logged when it ran)."""
        self.bar.update(1)
        if result.ok and (self.best is None or result.score > self.best):
            self.best = float(result.score)
        postfix = {"best": f"{self.best:.4f}" if self.best is not None else "-"}
        if self.max_time is not None:
            postfix["time"] = f"{time.perf_counter() - self.start:.0f}/{self.max_time:.0f}s"
        self.bar.set_postfix(postfix)
        if seconds is None:
            return
        score = f"{result.score:.4f}" if math.isfinite(result.score) else "-"
        t_tr = f"{result.t_tr:.3f}" if math.isfinite(result.t_tr) else "-"
        trial_log.info("trial %d status=%s score=%s params=%d t_tr=%s seconds=%.1f", result.trial, result.status,
                       score, result.num_params, t_tr, seconds)

    def close(self) -> None:
        self.bar.close()
