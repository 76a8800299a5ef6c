"""DREAM's priority-table experiment: random models, the resumable measurement run, and the table file.

Covers `nas.search.dream.random_models`, `experiments/dream_priorities.py`
(killed with SIGKILL part-way and resumed over a torn last line: no row lost
or repeated, the table loads) and `nas.search.dream.priorities.load`'s errors.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from nas.ir import ACTIVATIONS, INITIALIZERS
from nas.search.dream import priorities
from nas.search.dream.actions import ACTIONS
from nas.search.dream.conditions import FAMILIES, architecture_family, load_thresholds
from nas.search.dream.random_models import LEARNING_RATE_RANGE, model_seed, random_model
from nas.search.problem import Problem

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "dream_priorities.py"
IMAGE = Problem((14, 14, 1), 8)
FLAT = Problem((24,), 6)


def _experiment():
    spec = importlib.util.spec_from_file_location("dream_priorities", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ random models
def test_random_models_are_valid_for_image_and_flat_problems():
    for problem in (IMAGE, FLAT):
        for seed in range(25):
            arch, settings = random_model(seed, problem, epochs=3, batch_size=16)
            arch.validate(problem.input_shape)
            assert arch.output_shape(problem.input_shape) == (problem.num_outputs,)
            assert arch.input_node.normalized_attrs()["shape"] == problem.input_shape
            assert (settings.epochs, settings.batch_size, settings.seed) == (3, 16, seed)
            low, high = LEARNING_RATE_RANGE
            assert low <= settings.optimizer.learning_rate <= high
            for node in arch.nodes:
                if node.op == "Activation":
                    assert node.attrs["fn"] in ACTIVATIONS
                if "kernel_init" in node.attrs:
                    assert node.attrs["kernel_init"] in INITIALIZERS


def test_random_models_are_deterministic_in_the_seed():
    for seed in (0, 7, 2**40 + 3):
        assert random_model(seed, IMAGE) == random_model(seed, IMAGE)
    drawn = {random_model(seed, IMAGE)[0].to_json(indent=None) for seed in range(10)}
    assert len(drawn) == 10  # different seeds, different models
    assert model_seed(0, 5) == model_seed(0, 5) != model_seed(1, 5)
    assert 0 <= model_seed(3, 10**6) < 2**32


def test_random_models_spread_over_families_and_learning_rates():
    image = [random_model(seed, IMAGE) for seed in range(60)]
    assert {architecture_family(a) for a, _ in image} == set(FAMILIES)  # MA OA RA XA EA all drawn
    assert {architecture_family(random_model(seed, FLAT)[0]) for seed in range(20)} == {"MA"}
    rates = [s.optimizer.learning_rate for _, s in image]
    # Log-uniform over six decades: both ends are reached, not only "normal" rates.
    assert min(rates) < 1e-5 and max(rates) > 0.1
    assert len({s.optimizer.name for _, s in image}) >= 6
    assert len({n.attrs["fn"] for a, _ in image for n in a.nodes if n.op == "Activation"}) >= 5


# ------------------------------------------------------------------ the experiment, killed and resumed
TINY = ["--models", "2", "--epochs", "1", "--batch-size", "16", "--train-size", "80", "--datasets", "tabular",
        "--actions", "learning_rate"]


def _rows(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Slow set (28 CPU-s, 35-55 s on 2 shared cores): keeps the default set inside its 20 minutes.
@pytest.mark.slow
def test_experiment_killed_part_way_resumes_without_losing_or_repeating_rows(tmp_path):
    out = tmp_path / "run"
    table = tmp_path / "table.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--table", str(table), *TINY]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    measurements = out / "measurements.jsonl"
    deadline = time.monotonic() + 120
    # SIGKILL as soon as the first model's rows are durable (the second model is then in flight).
    while proc.poll() is None and time.monotonic() < deadline:
        if measurements.exists() and measurements.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    before = _rows(measurements)
    assert before and not table.exists()
    # A kill mid-write leaves a torn last line: the resume ignores it instead of crashing.
    with open(measurements, "a") as f:
        f.write('{"model": 1, "action": "learning_rate=0.1", "del')

    experiment = _experiment()
    args = cmd[2:]
    assert experiment.main(args) == 0  # the resume, in-process (saves a JAX start-up)
    rows = _rows(measurements)  # every line parses: the torn one was cut off
    keys = [(r["model"], r["action"]) for r in rows]
    assert len(keys) == len(set(keys))  # nothing repeated
    assert rows[:len(before)] == before  # nothing recorded was lost or rewritten
    dataset = experiment.build_dataset("tabular", 80, 0)
    expected = set()
    for index in range(2):
        arch, settings = random_model(model_seed(0, index), Problem.of(dataset), epochs=1, batch_size=16)
        expected |= {(index, a.name) for a in experiment.select_actions(arch, settings, ("learning_rate",))}
    assert set(keys) == expected and len(expected) == 8  # every (model, action), exactly once
    parents = _rows(out / "parents.jsonl")
    assert sorted(p["model"] for p in parents) == [0, 1]
    for r in rows:
        assert set(r) >= {"model", "dataset", "seed", "condition", "action", "parent_acc", "child_acc", "delta",
                          "seconds"}
        assert math.isclose(r["delta"], r["child_acc"] - r["parent_acc"])
        assert 0.0 <= r["child_acc"] <= 1.0
        if r["status"] != "done":
            assert r["child_acc"] == 0.0  # diverged/failed children count as 0, kept
    loaded = priorities.load(str(table), load_thresholds())
    assert sum(loaded.models.values()) == 2
    assert sum(c.count for cells in loaded.cells.values() for c in cells.values()) == 8
    provenance = loaded.provenance
    assert provenance["epochs"] == 1 and provenance["batch_size"] == 16 and provenance["train_size"] == 80
    assert "tabular" in provenance["datasets"] and provenance["machine"]["cpus"] >= 1
    assert len(provenance["commands"]) == 1  # the killed chunk logged nothing; the resume did
    # --table-only rewrites the same table from the file, training nothing.
    table.unlink()
    assert experiment.main(args + ["--table-only"]) == 0
    assert priorities.load(str(table), load_thresholds()).cells == loaded.cells


def test_read_jsonl_tolerates_only_a_torn_last_line(tmp_path):
    experiment = _experiment()
    path = tmp_path / "m.jsonl"
    experiment.append_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as f:
        f.write('{"a": 3, "b')
    assert experiment.read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert experiment.read_jsonl(path, repair=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'  # cut back to the last whole line
    experiment.append_jsonl(path, [{"a": 4}])
    assert experiment.read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 4}]
    # A complete last object without its newline is kept and ended.
    with open(path, "a") as f:
        f.write('{"a": 5}')
    assert experiment.read_jsonl(path, repair=True)[-1] == {"a": 5}
    assert path.read_text().endswith('{"a": 5}\n')
    # Corruption before the last line is not a kill: refused, naming the line.
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(experiment.ExperimentError, match=r"m\.jsonl:2"):
        experiment.read_jsonl(path)


def test_a_run_directory_refuses_other_settings(tmp_path):
    experiment = _experiment()
    args = experiment.parser().parse_args(["--out", str(tmp_path), "--epochs", "2"])
    experiment._check_run_file(tmp_path, args)
    experiment._check_run_file(tmp_path, args)  # the same settings resume
    other = experiment.parser().parse_args(["--out", str(tmp_path), "--epochs", "3"])
    with pytest.raises(experiment.ExperimentError, match="epochs: directory 2, given 3"):
        experiment._check_run_file(tmp_path, other)


def test_command_line_checks_and_help():
    experiment = _experiment()
    text = experiment.parser().format_help()
    for option in ("--models", "--max-seconds", "--epochs", "--batch-size", "--train-size", "--seed",
                   "--table", "--table-only", "--actions"):
        assert option in text
    with pytest.raises(SystemExit):
        experiment.parser().parse_args(["--actions", "learning_rate,frobnicate=1"])
    with pytest.raises(SystemExit):
        experiment.parser().parse_args(["--shard", "2/2"])
    assert experiment.parser().parse_args(["--shard", "1/3"]).shard == (1, 3)


def test_datasets_are_generated_deterministically_and_disjoint_from_the_evaluation_ones():
    experiment = _experiment()
    assert not {"digits", "fashion_mnist"} & set(experiment.DATASETS)
    a, b = experiment.build_dataset("shapes14", 100, 3), experiment.build_dataset("shapes14", 100, 3)
    assert a.input_shape == (14, 14, 1) and a.num_classes == 8
    assert (a.x_train == b.x_train).all() and (a.y_train == b.y_train).all()
    tab = experiment.build_dataset("tabular", 100, 3)
    assert tab.input_shape == (24,) and tab.num_classes == 6
    assert 95 <= len(tab.x_train) <= 105


# ------------------------------------------------------------------ priorities.load's errors
def _table_doc(**changes) -> dict:
    doc = {"format": priorities.FORMAT, "thresholds": load_thresholds().to_dict(), "provenance": {},
           "conditions": {"OA-SC-DG-NW": {"models": 2, "actions": {"activation=selu": {"mean": 0.2, "count": 2}}}}}
    doc.update(changes)
    return doc


def _write(tmp_path, doc) -> str:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_priorities_load_accepts_a_good_file(tmp_path):
    table = priorities.load(_write(tmp_path, _table_doc()), load_thresholds())
    assert table.cells["OA-SC-DG-NW"]["activation=selu"] == priorities.Cell(0.2, 2)
    assert table.models == {"OA-SC-DG-NW": 2}


def test_priorities_load_names_an_unknown_action(tmp_path):
    doc = _table_doc(conditions={"OA-SC-DG-NW": {"models": 1, "actions": {"activation=seluu": {"mean": 0.1,
                                                                                                "count": 1}}}})
    path = _write(tmp_path, doc)
    with pytest.raises(priorities.PriorityTableError, match=r"p\.json.*OA-SC-DG-NW.*activation=seluu") as err:
        priorities.load(path, load_thresholds())
    assert "activation=selu" in str(err.value)  # the close match is suggested


def test_priorities_load_names_an_unknown_condition(tmp_path):
    for bad in ("ZA-SC-DG-NW", "OA-XX-DG-NW", "SC-DG-NW"):  # unknown family, unknown C, no family at all
        doc = _table_doc(conditions={bad: {"models": 1, "actions": {}}})
        with pytest.raises(priorities.PriorityTableError, match=rf"p\.json.*{bad}"):
            priorities.load(_write(tmp_path, doc), load_thresholds())


def test_priorities_load_refuses_a_table_measured_with_other_thresholds(tmp_path):
    other = dict(load_thresholds().to_dict(), dying_relu_fraction=0.5)
    path = _write(tmp_path, _table_doc(thresholds=other))
    with pytest.raises(priorities.PriorityTableError, match=r"p\.json.*other thresholds.*dying_relu_fraction"):
        priorities.load(path, load_thresholds())
    assert priorities.load(path).thresholds.dying_relu_fraction == 0.5  # no thresholds given: not checked


def test_priorities_load_refuses_malformed_files(tmp_path):
    for doc, match in ((_table_doc(format="other/1"), "not a DREAM priority table"),
                       (_table_doc(conditions={"OA-SC-DG-NW": {"models": 1, "actions": {
                           "activation=selu": {"mean": float("nan"), "count": 1}}}}), "finite number"),
                       (_table_doc(conditions={"OA-SC-DG-NW": {"models": 1, "actions": {
                           "activation=selu": {"mean": 0.1, "count": 0}}}}), "integer >= 1")):
        with pytest.raises(priorities.PriorityTableError, match=match):
            priorities.load(_write(tmp_path, doc), load_thresholds())
    (tmp_path / "torn.json").write_text("{")
    with pytest.raises(priorities.PriorityTableError, match="not valid JSON"):
        priorities.load(str(tmp_path / "torn.json"))
    with pytest.raises(priorities.PriorityTableError, match="cannot read"):
        priorities.load(str(tmp_path / "missing.json"))


def test_from_measurements_averages_per_condition_and_refuses_a_non_finite_delta():
    rows = [{"model": 0, "condition": "OA-SC-DG-NW", "action": "activation=selu", "delta": 0.3},
            {"model": 1, "condition": "OA-SC-DG-NW", "action": "activation=selu", "delta": 0.1},
            {"model": 1, "condition": "OA-SC-DG-NW", "action": "learning_rate=0.01", "delta": -0.2}]
    table = priorities.from_measurements(rows, load_thresholds(), {})
    assert table.cells["OA-SC-DG-NW"]["activation=selu"].count == 2
    assert math.isclose(table.cells["OA-SC-DG-NW"]["activation=selu"].mean, 0.2)
    assert table.models == {"OA-SC-DG-NW": 2}
    with pytest.raises(priorities.PriorityTableError, match="not finite"):
        priorities.from_measurements([dict(rows[0], delta=float("nan"))], load_thresholds(), {})


def test_shipped_table_loads_with_the_default_thresholds():
    table = priorities.load(priorities.shipped_path(), load_thresholds())  # shipped: conf/dream/priorities/
    assert table.cells and all(name in ACTIONS for cells in table.cells.values() for name in cells)
    assert table.provenance["models"] == sum(table.models.values())
