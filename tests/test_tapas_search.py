"""TAP in a search: ``search.prefilter=tap`` and ``search=tapas``, through `nas.search` on digits.

The LDE is a real SQLite file in tmp_path holding MetaQNN-like networks of
another dataset ("neighbour", DCN 0.90) whose accuracies are a known
function of the architecture (more parameters, higher accuracy): the test
checks the plumbing (DCN neighbourhood, a real TAP trained and frozen in the
run directory, screening, replay), not TAP's quality, which
experiments/tap_eval.py measures on trained networks. digits' own DCN is
written to the LDE's cache as the default probe's so no probe trains here.
"""

import csv
import json
import math

import numpy as np
import pytest

import nas
from nas.lde import LDE, DatasetRecord, ExperimentRecord, LDEError, dataset_record
from nas.tapas import metaqnn
from nas.tapas.dcn import PROBE_ID

SHAPE, CLASSES = (8, 8, 1), 10
FAST = ["search.space.families=[mlp]", "search.space.mlp_layers=[1,1]", "train.epochs=1", "logger=console",
        "tapas.epochs=20", "tapas.min_examples=5"]


def _synthetic_accuracy(arch) -> float:
    return float(0.3 + 0.6 * (1 - math.exp(-arch.num_params(SHAPE) / 20000)))


@pytest.fixture(scope="module")
def lde_path(tmp_path_factory, digits):
    path = str(tmp_path_factory.mktemp("lde") / "lde.sqlite")
    other = DatasetRecord("neighbour-fp", "neighbour", SHAPE, CLASSES, 1000, 200)
    rng = np.random.default_rng(0)
    records = []
    for i in range(40):
        arch = metaqnn.arch_of(metaqnn.sample(rng, SHAPE, CLASSES), SHAPE, CLASSES)
        acc = _synthetic_accuracy(arch)
        records.append(ExperimentRecord(
            key=f"synthetic#{i}", dataset=other.fingerprint, arch=arch.to_json(), arch_hash=arch.structural_hash(),
            settings={"epochs": 4}, history=({"epoch": 1, "val_accuracy": acc},), status="done", peak_val=acc,
            final_val=acc, epochs=4, t_tr=0.1, num_params=arch.num_params(SHAPE), flops=arch.flops(SHAPE),
            source={"kind": "test"}))
    with LDE(path) as lde:
        lde.append(records, dataset=other)
        lde.set_dcn(other.fingerprint, 0.90, probe=PROBE_ID, seconds=0.0)
        lde.add_dataset(dataset_record(digits))
        lde.set_dcn(dataset_record(digits).fingerprint, 0.97, probe=PROBE_ID, seconds=0.0)
    return path


def _rows(run_dir, name):
    with open(run_dir / name, newline="") as f:
        return list(csv.DictReader(f))


def _trials(run_dir):
    with open(run_dir / "trials.jsonl") as f:
        return [json.loads(line) for line in f]


def test_the_prefilter_trains_the_predicted_best_and_a_resumed_run_screens_the_same(tmp_path, lde_path):
    args = dict(data="digits", strategy="random", progress=False,
                overrides=FAST + ["search.prefilter=tap", f"lde.path={lde_path}", "lde.enabled=false", "tapas.tau=0.1",
                                  "tapas.keep=0.5", f"tapas.cache={tmp_path / 'cache'}"])
    whole = nas.search(max_trials=3, run_dir=str(tmp_path / "whole"), **args)
    assert whole.summary["trials"] == 3
    task = json.loads((tmp_path / "whole" / "tap" / "task.json").read_text())
    assert task["dcn"] == pytest.approx(0.97) and [n[0] for n in task["neighbours"]] == ["neighbour"]
    screened = _rows(tmp_path / "whole", "screened.csv")
    trials = _trials(tmp_path / "whole")
    assert len(screened) == 3  # 2 proposals per trained network, one of each pair screened
    predicted = [t["hyperparameters"]["choices"]["tap_predicted"] for t in trials]
    assert all(0.0 <= p <= 1.0 for p in predicted)
    # each screened proposal scored no higher than the lowest trained one of its batch
    assert all(float(s["predicted"]) <= float(s["cutoff"]) for s in screened)
    # the cache was filled and a second run reuses it
    assert any((tmp_path / "cache").iterdir())
    nas.search(max_trials=2, run_dir=str(tmp_path / "split"), **args)
    split = nas.search(max_trials=3, run_dir=str(tmp_path / "split"), resume=True, **args)
    assert split.summary["trained_now"] == 1
    assert "cached" in json.loads((tmp_path / "split" / "tap" / "task.json").read_text())["how"]
    assert [t["arch_hash"] for t in _trials(tmp_path / "split")] == [t["arch_hash"] for t in trials]
    assert _rows(tmp_path / "split", "screened.csv") == screened


@pytest.mark.slow  # real training or a search; the default set stays inside 20 minutes on 2 cores
def test_with_no_dataset_within_tau_the_prefilter_steps_aside(tmp_path, lde_path, caplog):
    result = nas.search(data="digits", strategy="random", max_trials=2, run_dir=str(tmp_path / "run"), progress=False,
                        overrides=FAST + ["search.prefilter=tap", f"lde.path={lde_path}", "lde.enabled=false",
                                          "tapas.tau=0.05", "tapas.cache=null"])
    assert result.summary["trials"] == 2
    assert not (tmp_path / "run" / "screened.csv").exists()
    assert "steps aside" in caplog.text and "nearest is neighbour at 0.900" in caplog.text
    task = json.loads((tmp_path / "run" / "tap" / "task.json").read_text())
    assert task["predictor"] is False  # frozen: a resumed run does not start screening halfway
    with pytest.raises(ValueError, match="search=tapas has no predictor.*tapas.tau=0.05"):
        nas.search(data="digits", strategy="tapas", max_trials=1, run_dir=str(tmp_path / "tapas"), progress=False,
                   overrides=FAST[2:] + [f"lde.path={lde_path}", "lde.enabled=false", "tapas.cache=null"])


@pytest.mark.slow  # real training or a search; the default set stays inside 20 minutes on 2 cores
def test_search_tapas_trains_the_top_of_thousands_ranked_without_training(tmp_path, lde_path):
    result = nas.search(data="digits", strategy="tapas", max_trials=2, run_dir=str(tmp_path / "run"), progress=False,
                        overrides=["train.epochs=1", "logger=console", "tapas.epochs=20", "tapas.min_examples=5",
                                   f"lde.path={lde_path}", "lde.enabled=false", "tapas.tau=0.1", "tapas.cache=null",
                                   "search.space.samples=500"])
    trials = _trials(tmp_path / "run")
    choices = [t["hyperparameters"]["choices"] for t in trials]
    assert [c["rank"] for c in choices] == [0, 1]
    assert choices[0]["tap_predicted"] >= choices[1]["tap_predicted"]
    assert result.summary["trials"] == 2


def test_a_foreign_lde_file_is_refused_naming_it_before_anything_trains(tmp_path):
    bad = tmp_path / "not-an-lde.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LDEError, match="not-an-lde.sqlite"):
        nas.search(data="digits", strategy="random", max_trials=1, run_dir=str(tmp_path / "run"), progress=False,
                   overrides=FAST + ["search.prefilter=tap", f"lde.path={bad}", "lde.enabled=false"])
    assert not (tmp_path / "run" / "trials.jsonl").exists()


def test_a_cached_predictor_is_reused_until_its_neighbourhood_grows_by_retrain_growth(tmp_path, lde_path, digits):
    import shutil

    from nas.tapas.service import TapasSettings, prepare

    path = str(tmp_path / "lde.sqlite")
    shutil.copy(lde_path, path)
    settings = TapasSettings(tau=0.1, min_examples=5, epochs=3, retrain_growth=0.2, cache=str(tmp_path / "cache"))
    first = prepare(path, digits, str(tmp_path / "a"), settings)
    assert first.examples == 40 and "trained on 40" in first.note
    assert "cached" in prepare(path, digits, str(tmp_path / "b"), settings).note
    rng = np.random.default_rng(1)
    more = []
    for i in range(9):  # 40 -> 49 networks: more than 20% growth
        arch = metaqnn.arch_of(metaqnn.sample(rng, SHAPE, CLASSES), SHAPE, CLASSES)
        acc = _synthetic_accuracy(arch)
        more.append(ExperimentRecord(
            key=f"more#{i}", dataset="neighbour-fp", arch=arch.to_json(), arch_hash=arch.structural_hash(),
            settings={}, history=(), status="done", peak_val=acc, final_val=acc, epochs=4, t_tr=0.1,
            num_params=arch.num_params(SHAPE), flops=arch.flops(SHAPE), source={"kind": "test"}))
    with LDE(path) as lde:
        assert lde.append(more) == 9
    grown = prepare(path, digits, str(tmp_path / "c"), settings)
    assert grown.examples == 49 and "trained on 49" in grown.note
    # a run directory keeps the predictor it started with, however the LDE grows
    assert "frozen" in prepare(path, digits, str(tmp_path / "a"), settings).note
