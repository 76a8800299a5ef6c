"""experiments/dream_compare.py's pure parts: best-so-far curves, means over seeds, the tables, the command lines."""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load():
    spec = importlib.util.spec_from_file_location("dream_compare", os.path.join(REPO, "experiments",
                                                                                "dream_compare.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


dc = _load()


def rows(*trials):
    """Hand-made trials.csv rows: (status, val_score, seconds) per trial, as the CSV's strings."""
    return [{"trial": str(i), "status": status, "val_score": "" if score is None else str(score),
             "seconds": "" if seconds is None else str(seconds)} for i, (status, score, seconds) in enumerate(trials)]


def test_best_so_far_keeps_the_running_maximum_and_sums_seconds():
    curve = dc.best_so_far(rows(("done", 0.5, 10.0), ("done", 0.7, 3.0), ("done", 0.6, 2.0), ("done", 0.9, 4.0)))
    assert curve.trials == (1, 2, 3, 4)
    assert curve.best == (0.5, 0.7, 0.7, 0.9)
    assert curve.seconds == (10.0, 13.0, 15.0, 19.0)
    assert curve.final == 0.9
    assert curve.trials_to_best() == 4
    assert curve.seconds_to_best() == 19.0
    assert curve.trials_to_reach(0.7) == 2
    assert curve.trials_to_reach(0.95) is None


def test_diverged_and_failed_trials_spend_budget_but_score_nothing():
    curve = dc.best_so_far(rows(("diverged", None, 5.0), ("failed", 0.99, None), ("done", "nan", 1.0),
                                ("done", 0.4, 2.0)))
    assert curve.trials == (1, 2, 3, 4)
    assert all(math.isnan(b) for b in curve.best[:3])  # the failed trial's 0.99 does not count
    assert curve.best[3] == 0.4
    assert curve.seconds == (5.0, 5.0, 6.0, 8.0)
    assert curve.trials_to_best() == 4


def test_trials_to_best_is_the_first_trial_that_reached_the_final_best():
    curve = dc.best_so_far(rows(("done", 0.8, 1.0), ("done", 0.8, 1.0), ("done", 0.7, 1.0)))
    assert curve.trials_to_best() == 1


def test_a_run_with_no_scored_trial_has_no_best():
    curve = dc.best_so_far(rows(("diverged", None, 1.0)))
    assert math.isnan(curve.final) and curve.trials_to_best() is None and curve.seconds_to_best() is None


def test_read_trials_sorts_by_trial_number(tmp_path):
    path = tmp_path / "trials.csv"
    path.write_text("trial,status,val_score,seconds\n10,done,0.9,1\n2,done,0.5,1\n1,done,0.4,1\n")
    assert [r["trial"] for r in dc.read_trials(str(path))] == ["1", "2", "10"]


def test_mean_by_trial_carries_a_short_runs_final_best_and_waits_for_every_seed():
    a = dc.best_so_far(rows(("done", 0.5, 1.0), ("done", 0.7, 1.0), ("done", 0.9, 1.0)))
    b = dc.best_so_far(rows(("diverged", None, 1.0), ("done", 0.3, 1.0)))  # stopped after 2 trials
    means = dc.mean_by_trial([a, b], 4)
    assert math.isnan(means[0])  # b has no score yet
    assert means[1:] == pytest.approx([0.5, 0.6, 0.6])


def test_mean_by_seconds_is_a_step_function_of_each_runs_spent_time():
    a = dc.best_so_far(rows(("done", 0.5, 2.0), ("done", 0.9, 2.0)))  # 0.5 at 2 s, 0.9 at 4 s
    b = dc.best_so_far(rows(("done", 0.7, 1.0)))  # 0.7 at 1 s
    assert math.isnan(dc.value_at(a, 1.0)) and dc.value_at(a, 2.0) == 0.5 and dc.value_at(a, 10.0) == 0.9
    means = dc.mean_by_seconds([a, b], [0.5, 1.0, 2.0, 3.9, 4.0])
    assert math.isnan(means[0]) and math.isnan(means[1])
    assert means[2:] == pytest.approx([0.6, 0.6, 0.8])


def _result(arm, seed, scores, test):
    return dc.RunResult(arm, seed, dc.best_so_far(rows(*[("done", s, 1.0) for s in scores])), test, "done")


def test_comparison_table_reports_means_and_every_seed():
    results = [_result("dream", 0, [0.5, 0.8, 0.7], 0.75), _result("dream", 1, [0.6, 0.6, 0.9], 0.85),
               _result("hyperband", 0, [0.4, 0.6], 0.55)]
    text = dc.comparison_table(results, ["dream", "hyperband", "autokeras_greedy"], [0, 1], target=0.6)
    lines = text.splitlines()
    assert lines[0].startswith("| arm | runs | mean trial-1 val | mean best val | mean test of best")
    table = [line for line in lines if line.startswith("|")]
    assert all(line.count("|") == lines[0].count("|") for line in table)  # a well-formed markdown table
    assert "seeds every arm ran: [0]" in text  # hyperband ran seed 0 only
    dream = next(line for line in lines if line.startswith("| dream |")).split(" | ")
    assert dream[1] == "2"
    assert dream[2] == "0.5500"  # first trials 0.5 and 0.6
    assert dream[3] == "0.8500" and dream[4] == "0.8000"  # (0.8 + 0.9) / 2, (0.75 + 0.85) / 2
    assert dream[5] == "2.5"  # trials to best: 2 and 3
    assert "0.8000 / 0.7500 (2 of 3)" in text and "0.9000 / 0.8500 (3 of 3)" in text
    assert "1.5 (2/2 reach)" in text  # seed 0 reached 0.6 at trial 2, seed 1 at trial 1
    hyperband = next(line for line in lines if line.startswith("| hyperband |"))
    assert "not run" in hyperband and "0.6000 / 0.5500 (2 of 2)" in hyperband
    assert next(line for line in lines if line.startswith("| autokeras_greedy |")).count("not run") == 2


def test_common_seeds_leave_out_arms_that_never_ran_and_the_table_says_when_seeds_differ():
    results = [_result("dream", 0, [0.5], 0.5), _result("dream", 1, [0.6], 0.6), _result("hyperband", 0, [0.4], 0.4)]
    assert dc.common_seeds(results, ["dream", "hyperband", "autokeras_greedy"]) == {0}
    assert dc.common_seeds(results, ["dream"]) == {0, 1}
    assert "seeds every arm ran: [0]" in dc.comparison_table(results, ["dream", "hyperband"], [0, 1])
    assert "different seeds" not in dc.comparison_table(results, ["dream"], [0, 1])


def test_dream_and_autokeras_greedy_get_the_same_space_and_hyperband_its_own():
    import argparse

    args = argparse.Namespace(trials=10, initial_epochs=4, child_epochs=2, family="auto", channels=[8, 16],
                              dense=[32], hidden=[64], learning_rate=0.003, batch_size=64, out="/tmp/o", extra=[])
    table = dc.arms(hb_max_epochs=4, hb_eta=2)
    dream = dc.overrides_for(table["dream"], "digits", 1, args)
    greedy = dc.overrides_for(table["autokeras_greedy"], "digits", 1, args)
    hyperband = dc.overrides_for(table["hyperband"], "digits", 1, args)
    space = [o for o in dream if o.startswith("search.space.")]
    assert space and space == [o for o in greedy if o.startswith("search.space.")]
    assert "search.space.channels=[8,16]" in space
    assert [o for o in hyperband if o.startswith("search.space.")] == [
        "search.space.max_epochs=4", "search.space.eta=2", "search.space.min_epochs=1"]
    for line in (dream, greedy, hyperband):
        assert "search.max_trials=10" in line and "resume=true" in line
        assert "search.seed=1" in line and "train.seed=1" in line  # train.seed: a DREAM seed changes its training
    assert "hydra.run.dir=/tmp/o/digits/seed1/dream" in dream
    random2 = dc.overrides_for(table["dream_random2"], "digits", 1, args)
    assert "dream.priorities=random" in random2 and "dream.random_seed=2" in random2
    assert "dream.action_space=original" in dc.overrides_for(table["dream_original"], "digits", 1, args)
    assert set(a for names in dc.COMPARISONS.values() for a in names) == set(table)


def test_targets_per_dataset_or_for_all():
    assert dc.target_for([], "digits") is None
    assert dc.target_for(["0.7"], "digits") == 0.7
    assert dc.target_for(["digits=0.9", "fashion_mnist=0.75"], "fashion_mnist") == 0.75
    assert dc.target_for(["0.7", "digits=0.9"], "digits") == 0.9 and dc.target_for(["0.7", "digits=0.9"], "x") == 0.7


def test_fashion_train_size_comes_from_the_last_max_train_override():
    assert dc.fashion_train(["data.max_train=3000"]) == "3,000"
    assert dc.fashion_train(["data.max_train=3000", "data.max_train=null"]) == "all 54,000"
    assert dc.fashion_train([]) == "all 54,000"


def test_findings_survive_a_rewrite(tmp_path):
    path = tmp_path / "report.md"
    assert dc.kept_findings(str(path)) == "(none written yet)"
    path.write_text(f"# x\n{dc.FINDINGS_START}\nDREAM won on digits.\n{dc.FINDINGS_END}\n| table |\n")
    assert dc.kept_findings(str(path)) == "DREAM won on digits."


def test_help_runs():
    with pytest.raises(SystemExit) as exit_info:
        dc.main(["--help"])
    assert exit_info.value.code == 0
