"""The problem a search solves is one value; a config names a strategy, and the strategy its space."""

import os

import pytest
from hydra import compose, initialize_config_dir

from nas.api import settings
from nas.cli.search import _fingerprint_config
from nas.search import Posed, Problem, Trained, TrialResult
from nas.search.autokeras_greedy import AUTOKERAS_GREEDY
from nas.search.dnc import DNC
from nas.search.dream.search import DREAM
from nas.search.hyperband import ASHA, HYPERBAND
from nas.search.manas import MANAS
from nas.search.ncevolve import NCEVOLVE
from nas.search.random_search import RANDOM, SOBOL
from nas.store.fingerprint import fingerprint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(REPO, "conf")
# What every conf/search/<arm>.yaml said as `space_class:` before strategies named their spaces: the
# fingerprints of runs stored then hash these strings, so a resumed run must hash them again.
SPACE_CLASS_BEFORE = {
    "random": "nas.search.space.SearchSpace", "sobol": "nas.search.space.SearchSpace",
    "hyperband": "nas.search.hyperband_space.HyperbandSpace", "asha": "nas.search.hyperband_space.HyperbandSpace",
    "dnc": "nas.search.dnc.DncSpace", "dnc_cnn": "nas.search.dnc.DncSpace",
    "autokeras_greedy": "nas.search.autokeras_greedy.GreedySpace",
    "manas_autokeras": "nas.search.autokeras_greedy.GreedySpace",
    "ncevolve": "nas.search.ncevolve.NcEvolveSpace",
    "manas": "nas.search.manas.ManasSpace", "manas_original": "nas.search.manas.ManasSpace",
    "manas_transformed": "nas.search.manas.ManasSpace",
}
# Strategies added after that: they never had the key.
NEWER_ARMS = ("dream", "tapas")
BUDGETS = ("max_trials", "max_time", "target", "max_attempts")


def _compose(arm, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("search", overrides=[f"search={arm}", *overrides])


def test_a_problem_is_the_datas_shape_outputs_and_task(digits):
    problem = Problem.of(digits)
    assert problem == Problem((8, 8, 1), 10, "classification") and problem.image
    assert Problem([20], 1.0, "regression") == Problem((20,), 1, "regression")
    assert not Problem((20,), 3).image
    for bad in [dict(input_shape=(), num_outputs=3), dict(input_shape=(8, 0), num_outputs=3),
                dict(input_shape=(8,), num_outputs=0), dict(input_shape=(8,), num_outputs=3, task="ranking")]:
        with pytest.raises(ValueError):
            Problem(**bad)


def test_every_search_config_names_one_strategy_and_the_strategy_names_its_space(digits):
    arms = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(CONF, "search")))
    assert arms == sorted([*SPACE_CLASS_BEFORE, *NEWER_ARMS])
    for arm in arms:
        cfg = _compose(arm)
        assert "space_class" not in cfg.search
        strategy = settings.strategy(cfg.search)
        posed = settings.search_space(cfg.search, digits)
        assert isinstance(posed, Posed) and type(posed.space) is strategy.space and posed.problem == Problem.of(digits)
    for strategy in (RANDOM, SOBOL, HYPERBAND, ASHA, DNC, AUTOKERAS_GREEDY, NCEVOLVE, MANAS, DREAM):
        assert strategy.space is not None


def test_a_config_that_still_names_space_class_is_refused_naming_the_strategys_space():
    cfg = _compose("hyperband", "+search.space_class=nas.search.hyperband_space.HyperbandSpace")
    with pytest.raises(settings.SettingsError, match=r"search.space_class is gone: the strategy names its space "
                                                     r"\(nas.search.hyperband.HYPERBAND searches "
                                                     r"nas.search.hyperband_space.HyperbandSpace\)"):
        settings.strategy(cfg.search)


@pytest.mark.parametrize("arm", sorted(SPACE_CLASS_BEFORE))
def test_a_run_stored_before_strategies_named_their_space_keeps_its_fingerprint(arm):
    cfg = _compose(arm)
    strategy = settings.strategy(cfg.search)
    before = {k: v for k, v in settings.plain(cfg.search).items() if k not in BUDGETS}
    before["space_class"] = SPACE_CLASS_BEFORE[arm]  # the key the yaml had
    config = _fingerprint_config(cfg, strategy)
    assert config["search"] == before
    meta = {"name": "digits"}
    assert fingerprint(config, meta, strategy.name, 0) == fingerprint(
        {**config, "search": before}, meta, strategy.name, 0)


def test_a_space_that_cannot_search_the_problem_is_refused_when_posed():
    tabular = Problem((20,), 3)
    for arm, match in [("dnc_cnn", "CNN space needs"), ("ncevolve", "NCEvolve's template needs"),
                       ("manas", "Manas matches image data")]:
        cfg = _compose(arm)
        space = settings._typed(settings.strategy(cfg.search).space, cfg.search.space)
        with pytest.raises(ValueError, match=match):
            Posed(space, tabular)
    greedy = settings._typed(AUTOKERAS_GREEDY.space, {"family": "cnn"})
    with pytest.raises(ValueError, match="CNN default model needs"):
        Posed(greedy, tabular)


def test_strategies_that_build_on_trained_weights_keep_one_record():
    result = TrialResult(3, "done", 0.9, 0.1, 1.0, 10, 2, -2.3, {"params": {}})
    kept = Trained.of(result, arch=None, strategy="NCEvolve")
    assert (kept.trial, kept.objective, kept.variables) == (3, -2.3, {"params": {}})
    with pytest.raises(ValueError, match=r"trial 3: Manas needs the trained weights \(Strategy.needs_weights\)"):
        Trained.of(TrialResult(3, "done", 0.9, 0.1, 1.0, 10, 2, -2.3), None, "Manas")
    with pytest.raises(ImportError, match="moved to nas.search.trained.Trained"):
        from nas.search.ncevolve import Individual  # noqa: F401
    with pytest.raises(ImportError, match="moved to nas.search.trained.Trained"):
        from nas.search.autokeras_greedy import Incumbent  # noqa: F401
