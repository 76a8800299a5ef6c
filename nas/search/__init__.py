"""Search: spaces as data, strategies as init/ask/tell, and the loop that trains proposals.

Imports `nas.ir`, `nas.data` and `nas.train`; strategies never train.
"""

from nas.search.driver import Budget, TrialRecord, best_trial, run_random_search
from nas.search.space import Candidate, SearchSpace, sample

__all__ = ["Budget", "Candidate", "SearchSpace", "TrialRecord", "best_trial", "run_random_search", "sample"]
