"""The one vocabulary of a trial's status, shared by the trainer, the search and the store.

A trial is ``queued`` until a process claims it, ``running`` while it trains,
and ends ``done`` (trained, with a finite validation score), ``diverged``
(training produced a non-finite loss or score: the trainer's verdict) or
``failed`` (training raised, or the engine gave up on it). The trainer only
ever returns ``done`` or ``diverged``; the store holds all five. Standard
library only: every layer may import it.
"""

QUEUED, RUNNING, DONE, DIVERGED, FAILED = "queued", "running", "done", "diverged", "failed"
STATUSES = (QUEUED, RUNNING, DONE, DIVERGED, FAILED)
FINAL_STATUSES = (DONE, DIVERGED, FAILED)
# The start of a failed trial's error when the engine gave up retrying it (its
# process died in each of its attempts); results count these trials.
GAVE_UP = "gave up:"

# "No score": a trial that is not done has score -inf and error/objective +inf in
# memory (they sort last without special cases); the store writes them as NULL.
NO_SCORE = float("-inf")

__all__ = ["DIVERGED", "DONE", "FAILED", "FINAL_STATUSES", "GAVE_UP", "NO_SCORE", "QUEUED", "RUNNING", "STATUSES"]
