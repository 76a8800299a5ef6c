"""Search: spaces as data, strategies as init/ask/tell, the evaluator and the resumable engine.

Imports `nas.ir`, `nas.data`, `nas.train`, `nas.morph`, `nas.checkpoint` and
`nas.store`. Strategies (`random_search`, `dnc`, ...) only propose and learn;
`evaluator` only trains; `engine` connects them through the trial store.
"""

from nas.search.engine import Budget, ResumeMismatchError, SearchOutcome, export_artefacts, run_search
from nas.search.evaluator import Evaluation, evaluate_candidates
from nas.search.objective import Objective, error_of, pareto_front
from nas.search.space import SearchSpace, from_unit, sample
from nas.search.strategy import CONTINUE, FRESH, INHERIT, Candidate, Strategy, TrialResult

__all__ = [
    "Budget", "CONTINUE", "Candidate", "Evaluation", "FRESH", "INHERIT", "Objective", "ResumeMismatchError",
    "SearchOutcome", "SearchSpace", "Strategy", "TrialResult", "error_of", "evaluate_candidates",
    "export_artefacts", "from_unit", "pareto_front", "run_search", "sample",
]
