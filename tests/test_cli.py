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


def run_cli_failing(module: str, *overrides: str, timeout: int = 300) -> str:
    """Runs an entry point that must fail; returns its stderr."""
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_SILENT="true")
    proc = subprocess.run([sys.executable, "-m", f"nas.cli.{module}", *overrides], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stderr


@pytest.mark.slow  # a real search and two evaluations: ~35 s on 2 cores
def test_nas_eval_loads_the_best_and_trial_checkpoints_of_nas_search(tmp_path):
    searched = run_cli("search", "search.max_trials=2", "train.epochs=1", "search.space.families=[mlp]",
                       "search.space.mlp_width=[32,64]", "logger=console", "progress=false",
                       f"hydra.run.dir={tmp_path}/search", "runtime.compilation_cache=null")
    best = run_cli("evaluate", f"checkpoint={searched['checkpoint']}", f"hydra.run.dir={tmp_path}/eval-best",
                   "runtime.compilation_cache=null")
    assert not best["data_args_rebuilt"]  # nas-search recorded its data_args
    assert best["test_accuracy"] == searched["test_accuracy"] and best["num_params"] == searched["num_params"]
    trial = searched["best_trial"]
    assert os.path.samefile(searched["pareto_checkpoints"][str(trial)], os.path.join(tmp_path, "search", "trials",
                                                                                      str(trial)))
    evaluated = run_cli("evaluate", f"checkpoint={tmp_path}/search/trials/{trial}",
                        f"hydra.run.dir={tmp_path}/eval-trial", "runtime.compilation_cache=null")
    assert evaluated["test_accuracy"] == searched["test_accuracy"]


def _old_search_checkpoint(directory, described_changes=None, drop_dataset=False):
    """A trials/<i> directory as nas-search wrote it before model.json had data_args."""
    import jax

    from nas.checkpoint import save_model
    from nas.compile.flax_module import init_variables, to_flax
    from nas.data import load_dataset
    from nas.ir import mlp

    data = load_dataset("digits")
    arch = mlp([16], 10, input_shape=data.input_shape)
    variables = init_variables(to_flax(arch), jax.random.PRNGKey(0), data.input_shape)
    described = dict(data.metadata(), **(described_changes or {}))
    metadata = {"trial": 0, "score": 0.1, "num_params": arch.num_params(data.input_shape)}
    if not drop_dataset:
        metadata["dataset"] = described
    save_model(str(directory), arch, variables, metadata)
    return arch, variables, data


def test_nas_eval_rebuilds_the_dataset_of_a_checkpoint_without_data_args(tmp_path):
    from nas.train import evaluate

    arch, variables, data = _old_search_checkpoint(tmp_path / "trials" / "0")
    result = run_cli("evaluate", f"checkpoint={tmp_path}/trials/0", f"hydra.run.dir={tmp_path}/eval",
                     "runtime.compilation_cache=null")
    assert result["data_args_rebuilt"] and result["data_args"]["name"] == "digits"
    assert result["num_examples"] == len(data.y_test) == 270
    expected = evaluate(arch, variables, data.x_test, data.y_test, data.task)
    assert result["test_accuracy"] == expected["accuracy"]  # a count over 270: the same splits give the same


def test_nas_eval_names_model_json_when_the_dataset_cannot_be_rebuilt(tmp_path):
    # Recorded sizes that the config defaults do not reproduce: a different val_fraction was used.
    _old_search_checkpoint(tmp_path / "ambiguous", {"num_val": 300, "num_train": 1227})
    stderr = run_cli_failing("evaluate", f"checkpoint={tmp_path}/ambiguous", f"hydra.run.dir={tmp_path}/eval")
    assert f"{tmp_path}/ambiguous/model.json records no 'data_args'" in stderr
    assert "num_val 300 recorded vs 270 rebuilt" in stderr and "data=digits data.val_fraction=" in stderr


def test_nas_eval_checks_that_the_data_fits_the_model(tmp_path, digits):
    import jax
    import numpy as np

    from nas.cli.evaluate import EvalDataError, check_fits, data_arguments
    from nas.compile.flax_module import init_variables, to_flax
    from nas.data import load_dataset
    from nas.ir import mlp

    # No dataset recorded at all: the error names model.json and the override.
    with pytest.raises(EvalDataError, match=r"/m/model.json records neither 'data_args' nor a dataset name.*data="):
        data_arguments("/m", {"trial": 0}, None, {})
    # The record is used as is; data= wins over it; data_overrides apply last.
    recorded = {"data_args": {"name": "digits", "seed": 0, "image_size": None}}
    assert data_arguments("/m", recorded, None, {"seed": 3}) == ({"name": "digits", "seed": 3, "image_size": None},
                                                                 False)
    chosen = {"name": "image_folder:/x", "seed": 1, "image_size": (4, 4)}
    assert data_arguments("/m", recorded, chosen, {}) == (chosen, False)

    arch = mlp([8], 10)  # no declared input shape: only the variables say what it was trained on
    variables = init_variables(to_flax(arch), jax.random.PRNGKey(0), digits.input_shape)
    check_fits("/m", arch, variables, digits)
    x = np.random.default_rng(0).random((200, 4, 4, 1)).astype(np.float32)
    path = tmp_path / "small.npz"
    np.savez(path, x=x, y=np.arange(200) % 10)
    smaller = load_dataset(f"npz:{path}")
    with pytest.raises(EvalDataError, match=r"variable \['params'\]\['dense1'\]\['kernel'\] should have shape "
                                            r"\[16, 8\] but the checkpoint's is shape \[64, 8\]"):
        check_fits("/m", arch, variables, smaller)
    np.savez(path, x=np.random.default_rng(0).random((200, 8, 8, 1)), y=np.arange(200) % 3)
    with pytest.raises(EvalDataError, match="outputs 10 values per example but the data has 3 classes"):
        check_fits("/m", arch, variables, load_dataset(f"npz:{path}"))


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ('{"format": "nas.arch", "schema_version": 1, "nodes": [', "not an architecture document: not valid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ('{"format": "nas.arch", "schema_version": 99, "nodes": [], "inputs": [], "outputs": []}',
     "not an architecture document: unsupported schema_version 99"),
])
def test_model_file_errors_name_the_file(tmp_path, digits, content, message):
    from omegaconf import OmegaConf

    from nas.api.settings import ModelFileError, arch

    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ModelFileError, match=f"model.path={path}: {message}"):
        arch(OmegaConf.create({"builder": "file", "path": str(path)}), digits)


def test_a_model_file_with_the_wrong_output_width_is_refused(tmp_path, digits):
    from omegaconf import OmegaConf

    from nas.api.settings import ModelFileError, arch
    from nas.ir import mlp

    path = tmp_path / "three.json"
    path.write_text(mlp([8], 3).to_json())
    with pytest.raises(ModelFileError, match=f"model.path={path}: the architecture outputs 3 values per example "
                                             "but dataset 'digits' has 10 classes"):
        arch(OmegaConf.create({"builder": "file", "path": str(path)}), digits)


def test_nas_train_names_the_invalid_model_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({
        "format": "nas.arch", "schema_version": 1, "inputs": ["x"], "outputs": ["y"],
        "nodes": [{"id": "x", "op": "Input"}, {"id": "y", "op": "Dense", "inputs": ["x"], "attrs": {"units": 10,
                                                                                                   "bias": 1}}],
    }))
    stderr = run_cli_failing("train", "model=file", f"model.path={path}", "logger=console",
                             f"hydra.run.dir={tmp_path}/run")
    assert f"nas-train: error: model.path={path}: invalid architecture for dataset 'digits'" in stderr
    assert "node 'y' (Dense)" in stderr


def _unwritable_directory(tmp_path) -> str:
    """A directory in which no file can be created, for root too (root ignores permission bits)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    try:
        (directory / "probe").touch()
    except PermissionError:
        return str(directory)
    (directory / "probe").unlink()
    return "/proc/self"  # procfs takes no new files, whoever asks


def test_an_unwritable_run_directory_is_named_before_hydra_logs_there(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    stderr = run_cli_failing("train", f"hydra.run.dir={blocker}/run", "logger=console")
    assert f"cannot write the run directory {blocker}/run (hydra.run.dir): {blocker} is a file" in stderr
    unwritable = _unwritable_directory(tmp_path)
    for module, extra in (("evaluate", ["checkpoint=unused"]), ("search", [])):
        stderr = run_cli_failing(module, f"hydra.run.dir={unwritable}", *extra)
        assert f"cannot write the run directory {unwritable} (hydra.run.dir): no file can be created" in stderr
        assert "Unable to configure handler" not in stderr
