"""The Python API (`nas.search`, `nas.train`, `nas.load`, `Model`) and the CLIs over saved models."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import nas
from nas.api import Model, NotAClassifierError, SearchResult, load
from nas.checkpoint import METADATA_FILE, save_model
from nas.api.settings import SettingsError
from nas.data import DatasetError, from_arrays, load_dataset
from nas.train import TrainConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small and quick: MLPs only, two trials of one epoch, no W&B, no compilation cache shared with other tests.
QUICK = ["train.epochs=1", "logger=console", "runtime.compilation_cache=null", "search.space.families=[mlp]",
         "search.space.mlp_width=[16,64]"]
SELF_CONTAINED_KEYS = ("input_shape", "task", "num_outputs", "class_names", "data_args", "preprocessing",
                       "provenance")


def digits_uint8():
    """scikit-learn's digits as a user would hold photos: uint8 pixels 0..255, string labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images * 255 / 16).round().astype(np.uint8), np.array([f"digit{t}" for t in bunch.target])


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    x, y = digits_uint8()
    run_dir = str(tmp_path_factory.mktemp("api") / "run")
    result = nas.search(x, y, max_trials=2, run_dir=run_dir, progress=False, overrides=QUICK)
    return x, y, result


def test_search_on_arrays_returns_the_best_model_flat_trials_and_the_run(searched):
    x, y, result = searched
    assert isinstance(result, SearchResult) and isinstance(result.best, Model)
    assert result.summary["trials"] == 2 and result.summary["status"] == "done"
    assert os.path.isfile(os.path.join(result.run_dir, "results.json"))
    assert result.best.path == os.path.join(result.run_dir, "best")
    rows = result.trial_rows
    assert [r["trial"] for r in rows] == [0, 1]
    assert all(not isinstance(v, (dict, list, tuple)) for r in rows for v in r.values())
    assert {"val_score", "num_params", "t_tr", "learning_rate", "status"} <= set(rows[0])
    frame = result.trials
    assert list(frame["trial"]) == [0, 1] and set(rows[0]) <= set(frame.columns)
    assert result.pareto and all(isinstance(m, Model) for m in result.pareto)
    assert result.best.num_params == result.summary["num_params"]


def test_predict_gives_class_names_and_probabilities(searched):
    x, y, result = searched
    model = result.best
    assert model.class_names == tuple(sorted(set(y)))
    predicted = model.predict(x[:50])
    assert predicted.shape == (50,) and set(predicted) <= set(y)
    proba = model.predict_proba(x[:50])
    assert proba.shape == (50, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert list(np.asarray(model.class_names)[proba.argmax(axis=1)]) == list(predicted)
    # HW images get their channel axis; a wrong shape is named.
    np.testing.assert_array_equal(model.predict(x[:5, :, :, None]), predicted[:5])
    with pytest.raises(ValueError, match=r"\(N, 8, 8, 1\)"):
        model.predict(x[:5, :4])


def test_predict_on_raw_uint8_equals_predict_on_the_same_floats_in_unit_range(searched):
    x, _, result = searched
    model = result.best
    # uint8 is divided by 255 exactly as float32 would be: the same float32 inputs reach the network.
    as_floats = x[:200].astype(np.float32) / np.float32(255.0)
    np.testing.assert_array_equal(model.prepare(x[:200]), model.prepare(as_floats))
    np.testing.assert_array_equal(model.outputs(x[:200]), model.outputs(as_floats))
    # and those are the training split's standardisation (mean/std of the model's own training data)
    assert np.allclose(model.prepare(x).mean(), 0, atol=0.05)


def test_every_checkpoint_of_the_run_is_self_contained_and_reloads_to_the_same_predictions(searched, tmp_path):
    x, _, result = searched
    with open(os.path.join(result.run_dir, "best", METADATA_FILE)) as f:
        metadata = json.load(f)
    assert set(SELF_CONTAINED_KEYS) <= set(metadata)
    assert metadata["input_shape"] == [8, 8, 1] and metadata["task"] == "classification"
    assert metadata["num_outputs"] == 10 and metadata["data_args"] is None
    assert {"nas", "jax", "created", "run_dir", "trial", "git_commit"} <= set(metadata["provenance"])
    for trial in os.listdir(os.path.join(result.run_dir, "trials")):
        reloaded = load(os.path.join(result.run_dir, "trials", trial))
        assert reloaded.provenance["trial"] == int(trial)
    copy = result.best.save(str(tmp_path / "copy"))
    again = nas.load(copy)
    np.testing.assert_array_equal(again.outputs(x[:100]), result.best.outputs(x[:100]))
    assert again.class_names == result.best.class_names


def test_search_log_has_one_line_per_trial(searched):
    _, _, result = searched
    with open(os.path.join(result.run_dir, "search.log")) as f:
        lines = f.read().splitlines()
    assert len(lines) == 2
    assert all(f"trial {i} status=done score=" in line and "params=" in line and "seconds=" in line
               for i, line in enumerate(lines))


def test_resume_continues_without_repeating_trials(searched, tmp_path):
    x, y, result = searched
    run_dir = str(tmp_path / "resumed")
    shutil.copytree(result.run_dir, run_dir)
    with pytest.raises(FileExistsError, match="resume"):
        nas.search(x, y, max_trials=3, run_dir=run_dir, progress=False, overrides=QUICK)
    resumed = nas.search(x, y, max_trials=3, run_dir=run_dir, resume=True, progress=False, overrides=QUICK)
    assert resumed.summary["trials"] == 3
    assert resumed.summary["trained_now"] == 1 and resumed.summary["finished_before"] == 2
    assert [r["val_score"] for r in resumed.trial_rows[:2]] == [r["val_score"] for r in result.trial_rows]


@pytest.mark.parametrize("override, key, error", [
    ("train.epochs=0", "train.epochs", TrainConfigError),
    ("train.epoch=3", "train.epoch", SettingsError),
    ("search=no_such_strategy", "search", SettingsError),
    ("search.max_attempts=0", "search.max_attempts", SettingsError),
])
def test_a_bad_setting_is_refused_naming_the_key_before_any_work(tmp_path, override, key, error):
    x, y = digits_uint8()
    run_dir = tmp_path / "never"
    with pytest.raises(error, match=key.replace(".", r"\.")):
        nas.search(x, y, run_dir=str(run_dir), overrides=[override])
    assert not run_dir.exists()


def test_tasks_are_inferred_from_the_targets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    regression = from_arrays(x, x @ rng.normal(size=5))
    assert regression.dataset.task == "regression" and regression.class_names is None
    assert regression.dataset.num_outputs == 1 and regression.dataset.y_train.dtype == np.float32
    labels = from_arrays(x, (x[:, 0] > 0).astype(np.int64))
    assert labels.dataset.task == "classification" and labels.dataset.num_classes == 2
    named = from_arrays(x, np.where(x[:, 0] > 0, "yes", "no"))
    assert named.class_names == ("no", "yes")
    # 70/15/15, as load_dataset splits a pool
    assert [len(named.dataset.x_train), len(named.dataset.x_val), len(named.dataset.x_test)] == [140, 30, 30]


def test_arrays_split_and_normalise_like_an_npz_file(tmp_path):
    x, y = digits_uint8()
    labels = np.array([int(s[-1]) for s in y])
    path = tmp_path / "digits.npz"
    np.savez(path, x=x, y=labels)
    from_file = load_dataset(f"npz:{path}")
    in_memory = from_arrays(x, labels).dataset
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(in_memory, f"x_{split}"), getattr(from_file, f"x_{split}"))
        np.testing.assert_array_equal(getattr(in_memory, f"y_{split}"), getattr(from_file, f"y_{split}"))


def test_bad_arrays_are_named():
    x = np.zeros((20, 3))
    with pytest.raises(DatasetError, match="y_val is missing"):
        from_arrays(x, np.arange(20) % 2, x_val=x)
    with pytest.raises(DatasetError, match="only class 0"):
        from_arrays(x, np.zeros(20, np.int64))
    with pytest.raises(DatasetError, match="NaN"):
        from_arrays(x, np.where(np.arange(20) == 3, np.nan, 1.0))
    with pytest.raises(DatasetError, match="task="):
        from_arrays(x, np.arange(20) % 2, task="ranking")


def test_train_a_regression_model_and_predict_values(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0
    model = nas.train(x, y, arch="mlp", run_dir=str(tmp_path / "run"), progress=False,
                      overrides=["train.epochs=2", "logger=console", "runtime.compilation_cache=null",
                                 "model.hidden=[16]"])
    assert model.task == "regression" and "test_mse" in model.metrics
    predicted = model.predict(x[:10])
    assert predicted.shape == (10,) and predicted.dtype == np.float32
    with pytest.raises(NotAClassifierError):
        model.predict_proba(x[:10])


def test_an_old_checkpoint_without_preprocessing_gets_it_from_its_dataset(tmp_path):
    from nas.compile.flax_module import init_variables, to_flax
    from nas.ir import mlp

    data = load_dataset("digits")
    arch = mlp([8], 10, input_shape=data.input_shape)
    variables = init_variables(to_flax(arch), jax.random.PRNGKey(0), data.input_shape)
    args = {"name": "digits", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.15, "max_train": None,
            "regression": False, "image_size": None, "data_dir": None}
    path = save_model(str(tmp_path / "old"), arch, variables, {"dataset": data.metadata(), "data_args": args})
    with open(os.path.join(path, METADATA_FILE)) as f:  # as written before models recorded preprocessing
        old = {k: v for k, v in json.load(f).items() if k in ("dataset", "data_args")}
    with open(os.path.join(path, METADATA_FILE), "w") as f:
        json.dump(old, f)
    model = load(path)
    np.testing.assert_array_equal(np.asarray(model.preprocessing["mean"], np.float32), data.mean)
    np.testing.assert_array_equal(np.asarray(model.preprocessing["std"], np.float32), data.std)
    assert model.input_shape == data.input_shape and model.task == "classification"


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_nas_eval_on_best_and_on_new_npz_data(searched, tmp_path):
    x, y, result = searched
    best = os.path.join(result.run_dir, "best")
    # arrays in memory record no source, so nas-eval needs the data named: it says how
    refused = run_module("nas.cli.evaluate", f"checkpoint={best}", f"hydra.run.dir={tmp_path}/e0")
    assert refused.returncode == 2 and "data=npz data.path=" in refused.stderr
    new = tmp_path / "new.npz"
    names = np.asarray(result.best.class_names)
    np.savez(new, x=x, y=np.searchsorted(names, y))  # labels as the model's class indices
    proc = run_module("nas.cli.evaluate", f"checkpoint={best}", "data=npz", f"data.path={new}", "split=all",
                      f"hydra.run.dir={tmp_path}/e1", "runtime.compilation_cache=null")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["num_examples"] == len(x) and report["model_statistics"] is True
    # with the model's own statistics, nas-eval scores what Model.predict predicts
    expected = float(np.mean(result.best.predict(x) == y))
    assert report["all_accuracy"] == pytest.approx(expected, abs=1e-6)


def test_nas_predict_writes_labels_and_probabilities(searched, tmp_path):
    x, _, result = searched
    best = os.path.join(result.run_dir, "best")
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=x[:40])
    out_csv, out_npy = tmp_path / "preds.csv", tmp_path / "proba.npy"
    proc = run_module("nas.cli.predict", f"checkpoint={best}", "data=npz", f"data.path={inputs}", f"out={out_csv}",
                      f"hydra.run.dir={tmp_path}/p0", "runtime.compilation_cache=null")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "index,prediction" and len(lines) == 41
    assert [line.split(",")[1] for line in lines[1:]] == list(result.best.predict(x[:40]))
    proc = run_module("nas.cli.predict", f"checkpoint={best}", "data=npz", f"data.path={inputs}", f"out={out_npy}",
                      "proba=true", f"hydra.run.dir={tmp_path}/p1", "runtime.compilation_cache=null")
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(out_npy), result.best.predict_proba(x[:40]), atol=1e-6)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=x[:5, :4])
    proc = run_module("nas.cli.predict", f"checkpoint={best}", "data=npz", f"data.path={wrong}",
                      f"hydra.run.dir={tmp_path}/p2")
    assert proc.returncode == 2 and str(wrong) in proc.stderr and "(N, 8, 8, 1)" in proc.stderr


def test_the_package_names_stay_packages_and_call_the_api():
    import nas.search.engine
    import nas.train

    assert callable(nas.search) and callable(nas.train)
    assert nas.search.engine.run_search.__name__ == "run_search" and nas.train.TrainConfig
    assert nas.load is load and nas.Model is Model


@pytest.mark.slow  # a search, a prediction and an export in a fresh interpreter: ~1 min on 2 cores
def test_the_example_script_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "api_example.py")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.isfile(tmp_path / "digits.stablehlo")
    assert "accuracy" in proc.stdout
