"""Moved: the conversions between search and store records live in `nas.search.trial_records`."""

raise ImportError("nas.store.adapters moved to nas.search.trial_records (the store no longer imports the search); "
                  "import plan_from_candidate, candidate_from_trial and outcome_from_result from there")
