"""``search.prefilter``: a predictor screens any strategy's proposals (nas.search.prefilter).

The wrapper's bookkeeping is checked on the strategy contract with a scorer
that is a real, deterministic function of the architecture (its parameter
count); TAP itself as the scorer is exercised in tests/test_tapas_search.py.
"""

import math
import pickle

import numpy as np
import pytest

from nas.search import Posed, Problem, TrialResult
from nas.search.prefilter import PrefilterState, screened_rows, with_prefilter
from nas.search.random_search import RANDOM
from nas.search.space import SearchSpace
from nas.status import DONE, FAILED

PROBLEM = Problem((8, 8, 1), 10)


def _fewer_params_first(archs):
    return np.array([-float(a.num_params(PROBLEM.input_shape)) for a in archs])


def _done(trial, score):
    return TrialResult(trial=trial, status=DONE, score=score, error=1 - score, t_tr=0.1, num_params=100, epochs=1,
                       objective=math.log(1 - score))


class _Recording:
    """RANDOM, remembering what it was told (a real strategy; only the record is added)."""

    def __init__(self):
        self.told = []
        self.strategy = RANDOM._replace(tell=self._tell)

    def _tell(self, state, results):
        self.told.extend(results)
        return RANDOM.tell(state, results)


def test_the_top_fraction_trains_and_the_rest_is_told_as_screened():
    inner = _Recording()
    wrapped = with_prefilter(inner.strategy, _fewer_params_first, keep=0.25)
    state = wrapped.init(Posed(SearchSpace(), PROBLEM), 3)
    state, batch = wrapped.ask(state, 2)
    # the inner strategy proposed 8 (= 2 / 0.25); the two with the fewest parameters train, as run trials 0, 1
    _, proposals = RANDOM.ask(RANDOM.init(Posed(SearchSpace(), PROBLEM), 3), 8)
    params = [p.arch.num_params(PROBLEM.input_shape) for p in proposals]
    best_two = sorted(range(8), key=lambda i: (params[i], i))[:2]
    assert [c.trial for c in batch] == [0, 1]
    assert [c.arch.structural_hash() for c in batch] == [proposals[i].arch.structural_hash() for i in sorted(best_two)]
    assert all(c.choices["tap_predicted"] >= s.predicted for c in batch for s in state.screened)
    assert len(state.screened) == 6 and state.pending == tuple(s.inner_trial for s in state.screened)
    assert {s.inner_trial for s in state.screened} | set(best_two) == set(range(8))
    state = wrapped.tell(state, [_done(0, 0.8), _done(1, 0.7)])
    # the inner strategy hears of all 8, in its own numbering: the 2 trained with their scores, 6 as failed
    assert sorted(r.trial for r in inner.told) == list(range(8))
    by_trial = {r.trial: r for r in inner.told}
    assert [by_trial[i].score for i in sorted(best_two)] == [0.8, 0.7]
    assert all(by_trial[s.inner_trial].status == FAILED and by_trial[s.inner_trial].score == -math.inf
               for s in state.screened)
    assert state.pending == ()
    # the next ask goes on numbering run trials consecutively
    state, batch = wrapped.ask(state, 1)
    assert [c.trial for c in batch] == [2] and len(state.screened) == 9
    rows = screened_rows(state)
    assert len(rows) == 9 and {"inner_trial", "arch_hash", "predicted", "cutoff"} <= set(rows[0])
    assert screened_rows(object()) == []


def test_the_same_seed_screens_the_same_proposals_and_the_state_pickles():
    wrapped = with_prefilter(RANDOM, _fewer_params_first, keep=0.5)

    def run():
        state = wrapped.init(Posed(SearchSpace(), PROBLEM), 7)
        hashes = []
        for t in range(3):
            state, (c,) = wrapped.ask(state, 1)
            hashes.append(c.arch.structural_hash())
            state = wrapped.tell(state, [_done(c.trial, 0.5)])
        return state, hashes

    (a, ha), (b, hb) = run(), run()
    assert ha == hb and a.screened == b.screened
    assert pickle.loads(pickle.dumps(a)) == a and isinstance(a, PrefilterState)
    assert wrapped.name == "random+tap"


def test_unscoreable_proposals_rank_last_and_a_bad_keep_is_refused():
    def nan_for_odd(archs):
        return np.array([math.nan if i % 2 else 1.0 for i in range(len(archs))])

    wrapped = with_prefilter(RANDOM, nan_for_odd, keep=0.5)
    state, batch = wrapped.ask(wrapped.init(Posed(SearchSpace(), PROBLEM), 0), 2)
    assert [c.choices["tap_predicted"] for c in batch] == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"keep fraction must be in \(0, 1\]"):
        with_prefilter(RANDOM, nan_for_odd, keep=0)
    with pytest.raises(ValueError, match="scored 1 of 4"):
        bad = with_prefilter(RANDOM, lambda archs: np.ones(1), keep=0.5)
        bad.ask(bad.init(Posed(SearchSpace(), PROBLEM), 0), 2)
