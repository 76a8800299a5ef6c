"""DREAM (TOSEM'24): feedback-driven search and repair.

`conditions` names a trial's A-C-G-W condition from the feedback the trainer
records (thresholds in `conf/dream/`); `actions` is the action space, each
action a pure ``object=value`` function of (arch, training settings);
`priorities` is the measured table P(action | condition); `planner` picks the
next action for the best model; `search` is ``search=dream`` (Algorithm 1) and
`repair` the wrapper behind ``search.repair=dream``; `random_models` draws the
models `experiments/dream_priorities.py` measures the table on.
"""

from nas.search.dream.actions import ACTIONS, Action, ActionError, applicable_actions, get_action
from nas.search.dream.conditions import (
    Condition, Evidence, FeedbackError, Thresholds, classify, format_condition, load_thresholds, parse_condition,
)

__all__ = [
    "ACTIONS", "Action", "ActionError", "Condition", "Evidence", "FeedbackError", "Thresholds",
    "applicable_actions", "classify", "format_condition", "get_action", "load_thresholds", "parse_condition",
]
