"""The Hydra entry points end to end, in subprocesses, as a user runs them."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(module: str, *overrides: str, timeout: int = 600) -> dict:
    """Runs `python -m nas.cli.<module> overrides...`; returns its final JSON line."""
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true")
    proc = subprocess.run(
        [sys.executable, "-m", f"nas.cli.{module}", *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    result["_stdout"] = proc.stdout
    return result


def test_train_then_eval_reports_the_same_accuracy(tmp_path):
    trained = run_cli("train", "model=mlp", "model.hidden=[64]", "train.epochs=5", "logger=console",
                      "progress=false", f"hydra.run.dir={tmp_path}/train", "runtime.compilation_cache=null")
    assert trained["status"] == "done" and trained["test_accuracy"] > 0.85
    with open(os.path.join(tmp_path, "train", "results.json")) as f:
        assert json.load(f)["test_accuracy"] == trained["test_accuracy"]
    assert os.path.exists(os.path.join(trained["checkpoint"], "variables"))
    assert "head" in trained["_stdout"]  # the architecture summary was printed
    evaluated = run_cli("evaluate", f"checkpoint={trained['checkpoint']}", f"hydra.run.dir={tmp_path}/eval",
                        "runtime.compilation_cache=null")
    assert evaluated["test_accuracy"] == trained["test_accuracy"]
    assert evaluated["num_params"] == trained["num_params"]


def test_train_from_an_ir_file_with_wandb_offline(tmp_path):
    from nas.ir import cnn

    path = tmp_path / "arch.json"
    path.write_text(cnn([8, 16], 10, batchnorm=True).to_json())
    result = run_cli("train", "model=file", f"model.path={path}", "train.epochs=2", "progress=false",
                     f"hydra.run.dir={tmp_path}/run", "runtime.compilation_cache=null")
    assert result["status"] == "done"
    assert result["wandb_dir"] and os.path.isdir(result["wandb_dir"])
    assert any(name.startswith("offline-run") for name in os.listdir(os.path.join(tmp_path, "run", "wandb")))
    with open(result["metrics_log"]) as f:
        epochs = [json.loads(line) for line in f if '"epoch"' in line]
    assert [e["epoch"] for e in epochs] == [1, 2]


def test_bad_architecture_file_fails_with_the_node_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({
        "format": "nas.arch", "schema_version": 1, "inputs": ["x"], "outputs": ["y"],
        "nodes": [{"id": "x", "op": "Input"}, {"id": "y", "op": "Dense", "inputs": ["x"], "attrs": {"unit": 3}}],
    }))
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "nas.cli.train", "model=file", f"model.path={path}",
                           "logger=console", f"hydra.run.dir={tmp_path}/run"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "node 'y' (Dense)" in proc.stderr and "did you mean 'units'" in proc.stderr


def test_search_small_budget(tmp_path):
    result = run_cli("search", "search.max_trials=3", "train.epochs=4", "logger=console", "progress=false",
                     f"hydra.run.dir={tmp_path}", "runtime.compilation_cache=null")
    assert result["status"] == "done" and result["trials"] == 3
    with open(result["trials_log"]) as f:
        assert [json.loads(line)["index"] for line in f] == [0, 1, 2]
    assert os.path.isdir(os.path.join(result["checkpoint"], "variables"))
    assert 0 <= result["test_accuracy"] <= 1


@pytest.mark.slow
def test_default_search_meets_the_embedded_default_bar(tmp_path):
    """The README's main command: no arguments, digits, >= 0.95 test accuracy."""
    result = run_cli("search", f"hydra.run.dir={tmp_path}", "progress=false", timeout=900)
    assert result["test_accuracy"] >= 0.95
    assert result["wall_seconds"] < 300


@pytest.mark.fashion
def test_fashion_mnist_mlp_three_epochs_then_eval(tmp_path):
    """The full Fashion-MNIST splits through nas-train and nas-eval (an MLP: seconds on a CPU)."""
    trained = run_cli("train", "data=fashion_mnist", "model=mlp", "model.hidden=[128]", "train.epochs=3",
                      "logger=console", "progress=false", f"hydra.run.dir={tmp_path}/train")
    assert trained["test_accuracy"] >= 0.85, trained
    evaluated = run_cli("evaluate", f"checkpoint={trained['checkpoint']}", f"hydra.run.dir={tmp_path}/eval")
    assert evaluated["test_accuracy"] == trained["test_accuracy"]


@pytest.mark.slow  # minutes of CPU convolution over 60k images
@pytest.mark.fashion
def test_fashion_mnist_small_cnn_three_epochs(tmp_path):
    trained = run_cli("train", "data=fashion_mnist", "model=builtin", "model.name=cnn_small", "train.epochs=3",
                      "logger=console", "progress=false", f"hydra.run.dir={tmp_path}/train")
    assert trained["test_accuracy"] >= 0.85, trained
    evaluated = run_cli("evaluate", f"checkpoint={trained['checkpoint']}", f"hydra.run.dir={tmp_path}/eval")
    assert evaluated["test_accuracy"] == trained["test_accuracy"]
