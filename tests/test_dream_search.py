"""``search=dream`` (Algorithm 1) and ``search.repair=dream``, trained for real on digits.

Each search uses a hand-made priority table written to tmp_path, so which
action must come next is known; conditions are read from the trials' real
feedback. The SIGKILL test of both runs in the slow set (tests/test_resume.py).
"""

import json
import math
import pickle

import pytest

import nas
from nas.ir import Arch
from nas.api.settings import SettingsError
from nas.search.dream import load_thresholds
from nas.search.dream.conditions import classify, parse_condition
from nas.search.dream.planner import NO_CHECKPOINT
from nas.search.dream.priorities import (
    EXACT, PATTERN, POOLED, UNMEASURED, PriorityTableError, from_measurements, random_table, save,
)

# digits as an MLP problem: trials take about a second on 2 cores.
SMALL = ["search.space.family=mlp", "search.space.hidden=[32]", "search.space.initial_epochs=4",
         "search.space.epochs=2", "logger=console"]


def _table(path, rows, thresholds=None):
    save(from_measurements(rows, thresholds or load_thresholds(), {"command": "tests/test_dream_search.py"}), path)
    return str(path)


def _rows():
    # learning_rate=0.01 first under every condition (pooled), then width=x2, then activation=tanh.
    return [{"model": 0, "condition": "MA-NC-NG-NW", "action": "learning_rate=0.01", "delta": 0.30},
            {"model": 1, "condition": "MA-SC-NG-NW", "action": "width=x2", "delta": 0.20},
            {"model": 1, "condition": "MA-SC-NG-NW", "action": "activation=tanh", "delta": 0.10},
            {"model": 2, "condition": "OA-NC-DG-NW", "action": "activation=tanh", "delta": 0.05}]


def _trials(run_dir):
    with open(run_dir / "trials.jsonl") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------ the table
def test_rank_reads_each_action_at_the_most_specific_level_that_measured_it(tmp_path):
    table = from_measurements(_rows(), load_thresholds(), {})
    ranked = {r.action: r for r in table.rank(parse_condition("MA-SC-NG-NW"),
                                              ["activation=tanh", "width=x2", "learning_rate=0.01", "depth=+1"])}
    assert (ranked["width=x2"].level, ranked["width=x2"].priority) == (EXACT, 0.20)
    assert ranked["activation=tanh"].level == EXACT and ranked["activation=tanh"].priority == pytest.approx(0.10)
    assert ranked["learning_rate=0.01"].level == POOLED  # measured only under MA-NC-NG-NW
    assert ranked["depth=+1"].level == UNMEASURED and ranked["depth=+1"].priority == -math.inf
    # another family with the same C-G-W: the pattern pooled over families
    assert table.rank(parse_condition("OA-SC-NG-NW"), ["width=x2"])[0].level == PATTERN
    order = [r.action for r in table.rank(parse_condition("OA-SC-NG-NW"),
                                          ["depth=+1", "activation=tanh", "width=x2", "learning_rate=0.01"])]
    assert order == ["learning_rate=0.01", "width=x2", "activation=tanh", "depth=+1"]


def test_random_tables_are_fixed_by_their_seed():
    actions = ["width=x2", "depth=+1", "activation=tanh", "dropout=0.5", "learning_rate=0.01"]
    condition = parse_condition("OA-SC-DG-NW")
    first = [r.action for r in random_table(1).rank(condition, actions)]
    assert first == [r.action for r in random_table(1).rank(condition, actions)]
    orders = {tuple(r.action for r in random_table(seed).rank(condition, actions)) for seed in range(6)}
    assert len(orders) > 1


def test_bad_priority_files_are_refused_before_training_naming_the_file(tmp_path):
    other = load_thresholds().to_dict() | {"vanishing_ratio": 1e-4}
    from nas.search.dream.conditions import Thresholds

    path = _table(tmp_path / "other.json", _rows(), Thresholds.from_config(other))
    with pytest.raises(PriorityTableError, match=r"other\.json.*other thresholds.*vanishing_ratio"):
        nas.search(data="digits", strategy="dream", max_trials=1, run_dir=str(tmp_path / "a"), progress=False,
                   overrides=SMALL + [f"dream.priorities={path}"])
    doc = json.loads(open(_table(tmp_path / "t.json", _rows())).read())
    doc["conditions"]["MA-NC-NG-NW"]["actions"]["width=x3"] = {"mean": 0.1, "count": 1}
    (tmp_path / "typo.json").write_text(json.dumps(doc))
    with pytest.raises(PriorityTableError, match=r"typo\.json.*unknown DREAM action 'width=x3'.*width=x2"):
        nas.search(data="digits", strategy="dream", max_trials=1, run_dir=str(tmp_path / "b"), progress=False,
                   overrides=SMALL + [f"dream.priorities={tmp_path / 'typo.json'}"])
    with pytest.raises(PriorityTableError, match="does not exist"):
        nas.search(data="digits", strategy="dream", max_trials=1, run_dir=str(tmp_path / "c"), progress=False,
                   overrides=SMALL + [f"dream.priorities={tmp_path / 'missing.json'}"])
    with pytest.raises(ValueError, match="dream.action_space must be one of"):
        nas.search(data="digits", strategy="dream", max_trials=1, run_dir=str(tmp_path / "d"), progress=False,
                   overrides=SMALL + [f"dream.priorities={tmp_path / 't.json'}", "dream.action_space=big"])
    with pytest.raises(SettingsError, match="search.repair must be null or dream"):
        nas.search(data="digits", strategy="random", max_trials=1, run_dir=str(tmp_path / "e"), progress=False,
                   overrides=["search.repair=autotrainer"])
    assert not any((tmp_path / d / "store.sqlite").exists() for d in "abcde")


# ------------------------------------------------------------------ search=dream
def test_dream_takes_the_top_untried_action_for_the_best_models_condition(tmp_path, digits):
    table = _table(tmp_path / "t.json", _rows())
    result = nas.search(data="digits", strategy="dream", max_trials=3, run_dir=str(tmp_path / "run"),
                        progress=False, overrides=SMALL + [f"dream.priorities={table}"])
    trials = _trials(tmp_path / "run")
    assert [t["index"] for t in trials] == [0, 1, 2]
    choices = [t["hyperparameters"]["choices"] for t in trials]
    assert choices[0] == {"model": "initial"}
    # trial 1: the initial model's condition, read from its own feedback, and the table's first action
    expected = classify(Arch.from_json(trials[0]["arch"]), trials[0]["history"], trials[0]["feedback"],
                        load_thresholds(), digits.input_shape).name
    assert choices[1]["condition"] == expected
    assert choices[1]["action"] == "learning_rate=0.01" and choices[1]["from_trial"] == 0
    # trial 2 builds on the better of 0 and 1; learning_rate=0.01 is taken (from 0) or in effect (in 1)
    best = max((0, 1), key=lambda i: trials[i]["best_score"])
    assert choices[2]["from_trial"] == best and choices[2]["action"] == "width=x2"
    assert result.summary["trials"] == 3


def test_a_dream_search_continued_in_a_second_call_equals_one_uninterrupted_search(tmp_path):
    table = _table(tmp_path / "t.json", _rows())
    args = dict(data="digits", strategy="dream", progress=False, overrides=SMALL + [f"dream.priorities={table}"])
    whole = nas.search(max_trials=4, run_dir=str(tmp_path / "whole"), **args)
    nas.search(max_trials=2, run_dir=str(tmp_path / "split"), **args)
    split = nas.search(max_trials=4, run_dir=str(tmp_path / "split"), resume=True, **args)
    assert split.summary["trained_now"] == 2 and split.summary["finished_before"] == 2
    a, b = _trials(tmp_path / "whole"), _trials(tmp_path / "split")
    assert [(t["arch_hash"], t["hyperparameters"]) for t in a] == [(t["arch_hash"], t["hyperparameters"]) for t in b]
    assert [t["best_score"] for t in a] == pytest.approx([t["best_score"] for t in b], abs=1e-6)
    assert whole.summary["best_trial"] == split.summary["best_trial"]


def test_the_dream_state_pickles(tmp_path):
    from nas.search import Posed, Problem
    from nas.search.dream.search import DREAM, DreamSpace

    space = DreamSpace(family="mlp", hidden=(8,), priorities=_table(tmp_path / "t.json", _rows()))
    state = DREAM.init(Posed(space, Problem((64,), 10)), 0)
    state, (candidate,) = DREAM.ask(state, 3)
    assert candidate.trial == 0 and candidate.epochs == space.initial_epochs
    assert pickle.loads(pickle.dumps(state)) == state


# ------------------------------------------------------------------ search.repair=dream
def test_repair_inserts_dreams_action_when_the_best_trial_converges_slowly(tmp_path, digits):
    # A learning rate of 1e-7 leaves every random trial slowly converging (SC): DREAM repairs the best.
    table = _table(tmp_path / "t.json", _rows())
    frozen = ["search.space.families=[mlp]", "search.space.mlp_width=[16,32]", "search.space.learning_rate=[1e-7,1e-7]",
              "train.epochs=4", "train.patience=null", "logger=console"]
    nas.search(data="digits", strategy="random", max_trials=4, run_dir=str(tmp_path / "plain"), progress=False,
               overrides=frozen)
    nas.search(data="digits", strategy="random", max_trials=4, run_dir=str(tmp_path / "repaired"), progress=False,
               overrides=frozen + ["search.repair=dream", f"dream.priorities={table}"])
    plain, repaired = _trials(tmp_path / "plain"), _trials(tmp_path / "repaired")
    repairs = [t for t in repaired if t["hyperparameters"]["choices"].get("repair") == "dream"]
    # after the first trial; the repaired model then leads and trains normally, so nothing more to repair
    assert [t["index"] for t in repairs] == [1]
    best = Arch.from_json(repairs[0]["arch"])
    assert classify(best, repairs[0]["history"], repairs[0]["feedback"], load_thresholds(), digits.input_shape).normal
    first = repairs[0]["hyperparameters"]["choices"]
    assert first["from_trial"] == 0 and parse_condition(first["condition"]).C == "SC"
    assert first["action"] == "learning_rate=0.01"
    assert repairs[0]["best_score"] > repaired[0]["best_score"] + 0.2  # the repair lifted the stalled model
    # the wrapped search's own proposals are untouched, only renumbered around the repairs
    own = [t for t in repaired if "repair" not in t["hyperparameters"]["choices"]]
    assert [(t["arch_hash"], t["hyperparameters"]["choices"]) for t in own] == \
        [(t["arch_hash"], t["hyperparameters"]["choices"]) for t in plain[:len(own)]]


# ------------------------------------------------------------------ fine-tuning actions
@pytest.mark.slow  # three CNN searches (about 40 s): the default set stays inside its 20 minutes
def test_fine_tuning_actions_start_from_the_checkpoint_or_are_skipped_with_the_reason(tmp_path):
    rows = [{"model": 0, "condition": "OA-NC-NG-NW", "action": "pretrained=True", "delta": 0.5},
            {"model": 0, "condition": "OA-NC-NG-NW", "action": "freeze=all", "delta": 0.4},
            {"model": 0, "condition": "OA-NC-NG-NW", "action": "width=x2", "delta": 0.3}]
    table = _table(tmp_path / "t.json", rows)
    cnn = ["search.space.family=cnn", "search.space.initial_epochs=3", "search.space.epochs=1", "logger=console",
           f"dream.priorities={table}"]
    # A model of this framework: the search's best, standing in for one trained on another dataset.
    nas.search(data="digits", strategy="dream", max_trials=1, run_dir=str(tmp_path / "source"), progress=False,
               overrides=cnn)
    without = nas.search(data="digits", strategy="dream", max_trials=2, run_dir=str(tmp_path / "without"),
                         progress=False, overrides=cnn)
    choice = _trials(tmp_path / "without")[1]["hyperparameters"]["choices"]
    assert choice["action"] == "width=x2"  # freeze=all applies only to a transferred model
    assert choice["skipped"] == [{"action": "pretrained=True", "reason": NO_CHECKPOINT}]
    assert without.summary["trials"] == 2

    nas.search(data="digits", strategy="dream", max_trials=3, run_dir=str(tmp_path / "with"), progress=False,
               overrides=cnn + [f"dream.pretrained={tmp_path / 'source' / 'best'}"])
    trials = _trials(tmp_path / "with")
    first = trials[1]["hyperparameters"]
    assert first["choices"]["action"] == "pretrained=True" and first["start"] == "inherit"
    assert first["finetune"]["body"] and first["epochs"] == 3  # a full training from the checkpoint's weights
    best = max((0, 1), key=lambda i: trials[i]["best_score"])
    second = trials[2]["hyperparameters"]
    assert second["choices"]["from_trial"] == best
    if best == 1:  # the transferred model leads: fine-tune it with its body frozen, from the checkpoint again
        assert second["choices"]["action"] == "freeze=all" and second["finetune"]["freeze"] == "all"
        assert second["start"] == "inherit"
    else:
        assert second["choices"]["action"] == "width=x2"
    with pytest.raises(ValueError, match="dream.pretrained: .*nowhere is not a checkpoint directory"):
        nas.search(data="digits", strategy="dream", max_trials=1, run_dir=str(tmp_path / "bad"), progress=False,
                   overrides=cnn + [f"dream.pretrained={tmp_path / 'nowhere'}"])
