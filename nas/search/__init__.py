"""Search: spaces as data, strategies as init/ask/tell, the evaluator and the resumable engine.

`problem` holds what a search solves (`Problem`: input shape, output count,
task) and a strategy's space spec posed on it (`Posed`, what `init` takes).

Imports `nas.ir`, `nas.data`, `nas.train`, `nas.morph`, `nas.checkpoint`,
`nas.store` and `nas.mining` (the zoo `nas.search.manas` starts from). Strategies (`random_search`, `dnc`, ...) only propose and learn;
`evaluator` only trains; `engine` connects them through the trial store;
`reference` measures Deep-n-Cheap's c_0 and `results` scores and summarises the best model.
"""

from nas.search.engine import Budget, ResumeMismatchError, SearchOutcome, export_artefacts, run_search
from nas.search.evaluator import Evaluation, evaluate_candidates
from nas.search.objective import Objective, error_of, pareto_front
from nas.search.problem import Posed, Problem
from nas.search.reference import ReferenceComplexityError, reference_complexity
from nas.search.results import BestModel, best_model, score_on_test, search_summary
from nas.search.space import SearchSpace, from_unit, sample
from nas.search.strategy import CONTINUE, FRESH, INHERIT, Candidate, Strategy, TrialResult
from nas.search.trained import Trained

__all__ = [
    "Budget", "CONTINUE", "Candidate", "Evaluation", "FRESH", "INHERIT", "Objective", "ResumeMismatchError",
    "SearchOutcome", "SearchSpace", "Strategy", "TrialResult", "error_of", "evaluate_candidates",
    "export_artefacts", "from_unit", "pareto_front", "run_search", "sample",
    "BestModel", "ReferenceComplexityError", "best_model", "reference_complexity", "score_on_test",
    "search_summary", "Posed", "Problem", "Trained",
]
