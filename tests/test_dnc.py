"""Deep-n-Cheap's three stages on the strategy contract (no training: a synthetic f)."""

import math
import pickle

import pytest

from nas.search import Posed, Problem, TrialResult
from nas.search.dnc import DNC, DncSpace, most_complex, preset_weight_decay
from nas.search.dnc_arch import CnnConfig, build_cnn, downsampling_sites, spread

FMNIST = Problem((28, 28, 1), 10)
MLP = Posed(DncSpace(stage1_trials=6, stage3_trials=5, n_initial=3, n_candidates=200), FMNIST)
CNN = Posed(DncSpace(family="cnn", cnn_layers=(3, 6), stage1_trials=5, stage3_trials=3, n_initial=2, n_candidates=200,
                     dropout_fractions=(0.0, 0.5), input_dropouts=(0.1,), dropout_rates=(0.15, 0.3),
                     wd_threshold=1e6, wd_scale=1e11), FMNIST)


def _f(c) -> float:
    """A synthetic objective with a known optimum: about 300 hidden units, dropout 0.1, lr 1e-2."""
    ch = c.choices
    width = sum(ch.get("hidden", ch.get("channels", [])))
    return (abs(width - 300) / 300 + abs(ch.get("dropout", 0.0) - 0.1) + abs(math.log10(c.learning_rate) + 2)
            + 0.1 * (ch.get("bn_fraction", 1.0) != 0.5) + 0.1 * (ch.get("shortcuts", "none") != "every2"))


def _run(space, batch=1, seed=0):
    state, log = DNC.init(space, seed), []
    while not DNC.done(state):
        state, cands = DNC.ask(state, batch)
        assert cands, "a synchronous caller always gets proposals until the strategy is done"
        log += cands
        state = DNC.tell(state, [TrialResult(c.trial, "done", 0.0, 0.0, 0.0, 0, 1, _f(c)) for c in cands])
    return state, log


def test_mlp_stages_run_in_order_with_the_paper_presets():
    state, log = _run(MLP)
    stages = [c.choices["stage"] for c in log]
    assert stages == ["1"] * 6 + ["2:dropout"] * 5 + ["3"] * 5
    assert [c.trial for c in log] == list(range(16))
    for c in log[:11]:  # stages 1-2: lr 1e-3, batch 256, lambda = I(N_p >= 1e4) N_p / 1e9
        n_p = c.arch.num_params((28, 28, 1))
        assert (c.learning_rate, c.batch_size) == (1e-3, 256)
        assert c.weight_decay == pytest.approx(n_p / 1e9 if n_p >= 1e4 else 0.0)
        assert len(c.choices["hidden"]) <= 2 and all(20 <= w <= 400 for w in c.choices["hidden"])
    stage1_best = min(log[:6], key=_f)
    assert all(c.choices["hidden"] == stage1_best.choices["hidden"] for c in log[6:])
    assert [c.choices["dropout"] for c in log[6:11]] == [0.0, 0.1, 0.3, 0.4, 0.5]
    stage2_best = min([stage1_best] + log[6:11], key=_f)
    for c in log[11:]:
        assert c.arch == stage2_best.arch
        assert 1e-5 <= c.learning_rate <= 1e-1 and 32 <= c.batch_size <= 512
        assert c.weight_decay == 0.0 or 1e-5 <= c.weight_decay <= 1e-3
    assert state.stage == "done"


def test_cnn_stage_two_walks_its_sub_stages_greedily():
    state, log = _run(CNN)
    stages = [c.choices["stage"] for c in log]
    order = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert order == ["1", "2:downsampling", "2:bn", "2:dropout", "2:shortcuts", "3"]
    for c in log:
        c.arch.validate((28, 28, 1))
    bn = [c for c in log if c.choices["stage"] == "2:bn"]
    assert {c.choices["bn_fraction"] for c in bn} == {0.0, 0.25, 0.5, 0.75}
    shortcut = [c for c in log if c.choices["stage"] == "2:shortcuts"]
    assert all(c.choices["bn_fraction"] == 0.5 for c in shortcut)  # the bn sub-stage's winner carried on


def test_replay_is_deterministic_and_independent_of_batching():
    _, one = _run(MLP, batch=1)
    _, again = _run(MLP, batch=1)
    assert [(c.arch, c.learning_rate, c.batch_size) for c in one] == [(c.arch, c.learning_rate, c.batch_size) for c in again]
    _, batched = _run(MLP, batch=3)
    assert [c.choices["stage"] for c in batched] == [c.choices["stage"] for c in one]
    assert batched[:3] == one[:3]  # Sobol points are the same however they are asked


def test_state_pickles_mid_search():
    state = DNC.init(MLP, 1)
    state, cands = DNC.ask(state, 4)
    state = DNC.tell(state, [TrialResult(c.trial, "done", 0.0, 0.0, 0.0, 0, 1, _f(c)) for c in cands])
    restored = pickle.loads(pickle.dumps(state))
    assert DNC.ask(restored, 2)[1] == DNC.ask(state, 2)[1]


def test_failed_trials_do_not_become_incumbents():
    state, log = DNC.init(MLP, 0), []
    while not DNC.done(state):
        state, cands = DNC.ask(state, 2)
        log += cands
        state = DNC.tell(state, [TrialResult(c.trial, "diverged", -math.inf, math.inf, 0.0, 0, 1,
                                             math.inf if c.trial % 2 else _f(c)) for c in cands])
    assert state.entry(state.incumbent).value < math.inf


def test_cnn_builder_follows_the_paper():
    assert spread(0.5, 7) == (2, 4, 6, 7) and spread(0.0, 5) == () and spread(1.0, 3) == (1, 2, 3)
    assert downsampling_sites((16, 32, 64, 100, 130, 260), (64, 128, 256), (32, 32, 3)) == (2, 4, 5)
    arch = build_cnn(CnnConfig((16, 32, 70, 130), downsampling=("stride", "maxpool"), bn_fraction=0.5,
                               shortcuts="every2"), 10, (28, 28, 1), (64, 128, 256))
    arch.validate((28, 28, 1))
    ops = [n.op for n in arch.nodes]
    assert ops.count("BatchNorm") == 2 and ops.count("Add") == 2 and ops.count("MaxPool2D") == 1
    assert arch.node("conv3").attrs["strides"] == 2
    assert arch.output_shape((28, 28, 1)) == (10,)


def test_reference_complexity_and_weight_decay_rule():
    space, problem = MLP
    biggest = most_complex(space, problem)
    assert [n.attrs.get("units") for n in biggest.nodes if n.op == "Dense"] == [400, 400, 10]
    assert preset_weight_decay(space, 9_999) == 0.0 and preset_weight_decay(space, 20_000) == pytest.approx(2e-5)
