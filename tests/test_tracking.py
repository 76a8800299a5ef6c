"""W&B through `nas.tracking.RunLogger`, with real wandb in offline mode (issue 17).

Quiet: W&B's banner, history and summary go to the run's log file, not the
terminal, and JAX's TPU probe line is gone. Grouped: the runs of one Hydra
sweep share a W&B group. The saved model is logged as a W&B artifact of type
``model``. W&B 0.31 reads its offline ``.wandb`` files only in its Go core, so
`_records` decodes them here: a LevelDB-style log of ``Record`` protobufs.
"""

import glob
import os
import struct
import subprocess
import sys

import pytest

from nas.tracking import LoggerConfig, RunLogger, default_group

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = 32768  # the log's block size; a record header never straddles a block


def _records(path: str):
    from wandb.proto import wandb_internal_pb2

    raw = open(path, "rb").read()
    assert raw[:4] == b":W&B"
    pos, pending = 7, b""  # magic, 2-byte identifier, version
    while pos + 7 <= len(raw):
        if BLOCK - pos % BLOCK < 7:  # block trailer padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending = data if kind in (1, 2) else pending + data  # full/first start a record; middle/last extend it
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _wandb_run(run_dir: str) -> dict:
    (path,) = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb"))
    found = {"artifacts": []}
    for record in _records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found.update(group=record.run.run_group, job_type=record.run.job_type, id=record.run.run_id)
        elif kind == "artifact":
            found["artifacts"].append((record.artifact.name, record.artifact.type,
                                       sorted(c.path for c in record.artifact.manifest.contents)))
    return found


def _cli(module, *overrides, cwd):
    env = dict(os.environ, PYTHONPATH=REPO, WANDB_MODE="offline")
    for name in ("WANDB_SILENT", "WANDB_QUIET", "HYDRA_FULL_ERROR"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", f"nas.cli.{module}", *overrides, "logger=wandb", "progress=false",
                           "runtime.compilation_cache=null", "train.epochs=1"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _assert_quiet(proc):
    screen = proc.stdout + proc.stderr
    assert not [line for line in screen.splitlines() if line.startswith("wandb:")], screen[-3000:]
    assert "Unable to initialize backend" not in screen


def test_nas_train_with_wandb_prints_no_wandb_lines_and_logs_its_model(tmp_path):
    run_dir = tmp_path / "train"
    proc = _cli("train", "model.hidden=[8]", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    _assert_quiet(proc)
    assert proc.stdout.strip().splitlines()[-1].startswith('{"job": "train"')  # the results line is still last
    found = _wandb_run(str(run_dir))
    assert found["job_type"] == "train" and found["group"] == default_group(str(run_dir))
    (model,) = [a for a in found["artifacts"] if a[1] == "model"]
    assert model[0] == "train-model" and {"arch.json", "model.json"} <= set(model[2])
    log = (run_dir / "train.log").read_text()
    assert "wandb: " in log and "wandb sync" in log  # W&B's own summary, kept in the log file


@pytest.mark.slow  # two trainings in one sweep: about 40 s on 2 busy cores
def test_a_sweep_is_quiet_grouped_and_logs_each_model(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _cli("train", "--multirun", "train.seed=0,1", "model.hidden=[8]", f"hydra.sweep.dir={sweep}",
                cwd=tmp_path)
    _assert_quiet(proc)
    runs = [_wandb_run(str(sweep / str(job))) for job in (0, 1)]
    assert runs[0]["group"] == runs[1]["group"] == default_group(str(sweep)) == "/".join(str(sweep).split(os.sep)[-3:])
    assert runs[0]["id"] != runs[1]["id"] and {r["job_type"] for r in runs} == {"train"}
    for job, found in enumerate(runs):
        (model,) = [a for a in found["artifacts"] if a[1] == "model"]
        assert model[0] == "train-model" and {"arch.json", "model.json"} <= set(model[2])
        log = (sweep / str(job) / "train.log").read_text()
        assert "wandb: " in log and "wandb sync" in log  # W&B's own summary, kept in the log file


@pytest.mark.slow  # a search of one trial: about 35 s on 2 busy cores
def test_a_search_logs_its_best_model_as_an_artifact(tmp_path):
    run_dir = tmp_path / "search"
    proc = _cli("search", "search.max_trials=1", "search.space.families=[mlp]", "search.space.mlp_width=[8,16]",
                f"hydra.run.dir={run_dir}", cwd=tmp_path)
    _assert_quiet(proc)
    found = _wandb_run(str(run_dir))
    assert found["job_type"] == "search" and found["group"] == default_group(str(run_dir))
    (best,) = [a for a in found["artifacts"] if a[1] == "model"]
    expected = sorted(os.path.relpath(os.path.join(d, f), run_dir / "best")
                      for d, _, files in os.walk(run_dir / "best") for f in files)
    assert best[0] == "search-best" and best[2] == expected


def test_outside_hydra_the_group_is_the_run_directory_and_console_logs_no_wandb(tmp_path):
    assert default_group(str(tmp_path / "a" / "b" / "c")) == "a/b/c"
    logger = RunLogger(LoggerConfig(kind="console"), str(tmp_path), {}, job="train")
    logger.log_metrics({"loss": 1.0}, step=1)
    assert logger.wandb_dir is None and logger.log_model(str(tmp_path)) is None
    logger.finish({"checkpoint": str(tmp_path)})
    assert not os.path.exists(tmp_path / "wandb")
    with pytest.raises(ValueError, match="logger.kind"):
        RunLogger(LoggerConfig(kind="tensorboard"), str(tmp_path), {}, job="train")


def test_outside_hydra_wandb_output_goes_to_wandb_log_in_the_run_directory(tmp_path, capfd, monkeypatch):
    """The Python API has no Hydra log file: W&B's output lands in <run dir>/wandb.log, not on the screen."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    logger = RunLogger(LoggerConfig(), str(tmp_path), {"x": 1}, job="train")
    logger.log_metrics({"loss": 0.5}, step=1)
    logger.finish({"checkpoint": str(tmp_path / "model"), "loss": 0.5})
    out, err = capfd.readouterr()
    assert not [line for line in (out + err).splitlines() if line.startswith("wandb:")], out + err
    assert "wandb sync" in (tmp_path / "wandb.log").read_text()
    found = _wandb_run(str(tmp_path))
    assert found["group"] == default_group(str(tmp_path)) and found["job_type"] == "train"
    assert ("train-model", "model", ["model.json"]) in found["artifacts"]
