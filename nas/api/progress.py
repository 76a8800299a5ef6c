"""What a person watching a search sees: a progress bar and ``search.log``, one line per trial.

The bar shows trials done of the budget with tqdm's ETA, the best
validation score so far (not the last trial's) and, under a time budget,
the elapsed time against it; a second bar under it counts the epochs of the
training in flight. Bars draw only on a terminal: piped or
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
        self.enabled = enabled
        self.epochs: tqdm | None = None  # the bar inside the training in flight
        self.epoch_trials: tuple[int, ...] = ()

    def on_epoch(self, trials: tuple[int, ...], epoch: int, total: int) -> None:
        """Advances the epoch bar of the training in flight (one bar per training, under the search bar)."""
        if not self.enabled:
            return
        if self.epochs is None or trials != self.epoch_trials:
            self._close_epochs()
            label = f"trial {trials[0]}" if len(trials) == 1 else f"trials {trials[0]}-{trials[-1]}"
            self.epochs = tqdm(total=total, desc=label, unit="epoch", leave=False, position=1)
            self.epoch_trials = trials
        self.epochs.update(epoch - self.epochs.n)

    def _close_epochs(self) -> None:
        if self.epochs is not None:
            self.epochs.close()
            self.epochs, self.epoch_trials = None, ()

    def on_trial(self, result: Any, seconds: float | None) -> None:
        """Advances the bar; `seconds` is None for a trial replayed from the store (logged when it ran)."""
        self._close_epochs()
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
        self._close_epochs()
        self.bar.close()
