"""The tinygp Hydra sweeper: discovery, override grammar, job returns, and real multiruns.

End-to-end runs start `tests/sweeper_app/app.py --multirun` in a subprocess,
as a user would, and read the sweep's JSON record: GP + EI gets Branin below
0.5 in 30 trials (regret 0.1; 8 of 10 seeds do, random search with 30 trials
about 6% of the time), a second invocation continues the job numbering and the
observations instead of restarting, failed and non-finite jobs are penalised
without stopping the sweep (a launcher that fails a batch costs that batch;
two in a row stop it), the joblib launcher runs a batch of 4 in 4
processes at once, submitit's local executor runs a sweep, the SLURM example
config (conf/hydra/launcher/slurm.yaml) makes a valid sbatch array script, a
local Ray cluster runs a sweep (slow), `nas-train --multirun` tunes a tiny
digits MLP's learning rate and resumes (slow), and Hydra's own Optuna sweeper
runs nas-train with `+sweep.metric`, its trials in SQLite storage (slow).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.tinygp_sweeper import _impl
from hydra_plugins.tinygp_sweeper._impl import (MetricError, ResumeError, SearchSpaceError, SweepError,
                                                SweepSettings, outcome, parse_search_space)

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "sweeper_app" / "app.py"
BRANIN_OPTIMUM = 0.397887


def multirun(cwd: Path, sweep_dir: Path, *overrides: str, config_name: str = "config",
             timeout: int = 300) -> tuple[dict, str]:
    """Runs the toy app's multirun; returns the sweep record and the output."""
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    proc = subprocess.run([sys.executable, str(APP), "--config-name", config_name, "--multirun",
                           f"hydra.sweep.dir={sweep_dir}", *overrides],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return json.loads((sweep_dir / "tinygp_sweeper.json").read_text()), output


def job_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------
# Discovery

def test_hydra_discovers_the_plugin_without_importing_jax():
    assert not (REPO / "hydra_plugins" / "__init__.py").exists()  # a namespace package shared with other plugins
    code = """if True:
        import json, sys
        from hydra.core.config_store import ConfigStore
        from hydra.core.plugins import Plugins
        from hydra.plugins.sweeper import Sweeper
        names = [c.__module__ + "." + c.__name__ for c in Plugins.instance().discover(Sweeper)]
        node = ConfigStore.instance().load("hydra/sweeper/tinygp.yaml").node
        print(json.dumps({"names": names, "target": node._target_, "jax": "jax" in sys.modules}))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert "hydra_plugins.tinygp_sweeper.tinygp_sweeper.TinygpSweeper" in found["names"]
    assert found["target"] == "hydra_plugins.tinygp_sweeper.tinygp_sweeper.TinygpSweeper"
    assert found["jax"] is False  # Hydra's start-up scan stays light; JAX loads with _impl


# ---------------------------------------------------------------------------
# The override grammar -> search space

def _parsed_back(overrides: list[str]) -> dict:
    return {o.get_key_element(): o.value() for o in OverridesParser.create().parse_overrides(overrides)}


def test_grammar_maps_to_the_right_dimensions():
    search = parse_search_space([
        "lr=tag(log, interval(1e-5, 1e-1))", "dropout=interval(0, 0.5)", "layers=int(interval(1, 8))",
        "batch=tag(log, int(interval(16, 512)))", "width=range(32, 257, 32)", "momentum=range(0.5, 1.0, 0.25)",
        "act=choice(relu, gelu, tanh)", "model=mlp,cnn", "+extra=interval(-1, 1)", "epochs=3", "seed=choice(7)",
    ])
    p = {d.key: d.hyperparameter for d in search.dimensions}
    assert list(p) == ["lr", "dropout", "layers", "batch", "width", "momentum", "act", "model", "+extra"]
    assert p["lr"].log and not p["lr"].integer and (p["lr"].lower, p["lr"].upper) == (1e-5, 1e-1)
    assert not p["dropout"].log and not p["dropout"].integer and (p["dropout"].lower, p["dropout"].upper) == (0, 0.5)
    assert p["layers"].integer and not p["layers"].log and (p["layers"].lower, p["layers"].upper) == (1, 8)
    assert p["batch"].integer and p["batch"].log
    # range(): an ordered integer index into the grid (Python's range: the stop is excluded).
    assert p["width"].integer and (p["width"].lower, p["width"].upper) == (0, 7)
    assert search.dimensions[4].grid == tuple(str(w) for w in range(32, 257, 32))
    assert search.dimensions[5].grid == ("0.5", "0.75")
    assert p["act"].kind == "categorical" and p["act"].choices == ("relu", "gelu", "tanh")
    assert p["model"].kind == "categorical" and p["model"].choices == ("mlp", "cnn")
    assert search.fixed == ("epochs=3", "seed=7")  # a one-value sweep is a fixed value
    assert search.space.unit_dim == 9 and search.space.dim == 9 - 2 + 3 + 2  # one-hot choices


def test_proposals_become_overrides_hydra_parses_to_the_proposed_values():
    from nas.search import bo

    search = parse_search_space(["lr=tag(log, interval(1e-5, 1e-1))", "layers=int(interval(1, 8))",
                                 "width=range(32, 257, 32)", "act=choice(relu, 'gelu')", "epochs=3"])
    state = bo.init(search.space, 0, n_initial=16)
    state, configs = bo.ask(state, 16)
    for config in configs:
        values = _parsed_back(search.overrides(config))
        assert values["epochs"] == 3
        assert 1e-5 <= values["lr"] <= 1e-1 and math.isclose(values["lr"], config["lr"], rel_tol=1e-15)
        assert isinstance(values["layers"], int) and 1 <= values["layers"] <= 8
        assert values["width"] in range(32, 257, 32) and values["width"] == 32 * (config["width"] + 1)
        assert values["act"] in ("relu", "gelu")
    assert {_parsed_back(search.overrides(c))["act"] for c in configs} == {"relu", "gelu"}
    assert len({c["layers"] for c in configs}) >= 6  # the integer dimension is explored, not rounded to one value


def test_sweeper_params_come_first_and_the_command_line_wins():
    search = parse_search_space(["x=interval(0, 1)", "y=interval(0, 1)", "x=interval(2, 3)", "y=0.5"])
    assert [(d.key, d.hyperparameter.lower, d.hyperparameter.upper) for d in search.dimensions] == [("x", 2, 3)]
    assert search.fixed == ("y=0.5",)


@pytest.mark.parametrize("overrides, message", [
    (["x=tag(log, interval(0, 1))"], "log scale needs a numeric kind and lower > 0"),
    (["x=tag(log, choice(1, 10, 100))"], r"tag\(log, ...\) applies to interval\(\) only"),
    (["x=int(interval(5, 1))"], "upper 1.0 is below lower 5.0"),
    (["x=3", "y=abc"], "nothing to search"),
])
def test_unsearchable_overrides_name_the_override(overrides, message):
    with pytest.raises(SearchSpaceError, match=message) as info:
        parse_search_space(overrides)
    if len(overrides) == 1:
        assert overrides[0] in str(info.value)


def test_choices_need_a_stationary_kernel():
    with pytest.raises(SearchSpaceError, match="ramp kernel has no distance for categorical"):
        parse_search_space(["act=choice(relu, gelu)", "lr=interval(0, 1)"], kernel="ramp")
    assert parse_search_space(["lr=interval(1, 2)"], kernel="ramp").space.kernel == "ramp"


def test_settings_are_checked():
    assert SweepSettings.create(direction="maximize").direction == "maximize"
    for bad in ({"direction": "up"}, {"n_trials": 0}, {"batch_size": 0}, {"kernel": "linear"}, {"n_initial": 0}):
        with pytest.raises(SweepError):
            SweepSettings.create(**bad)
    space = parse_search_space([f"x{i}=interval(0, 1)" for i in range(6)]).space
    assert SweepSettings.create().initial_trials(space) == 14 and SweepSettings.create(n_initial=3).initial_trials(space) == 3


# ---------------------------------------------------------------------------
# Job returns -> observations

def _job(value, status=JobStatus.COMPLETED) -> JobReturn:
    ret = JobReturn()
    ret.status, ret.return_value = status, value
    return ret


def test_job_returns_become_observations_or_penalised_failures():
    assert outcome(_job(1.5), None) == ("completed", 1.5, None)
    assert outcome(_job({"val_accuracy": 0.9, "status": "done"}), "val_accuracy") == ("completed", 0.9, None)
    assert outcome(_job(RuntimeError("boom"), JobStatus.FAILED), None)[:2] == ("failed", None)
    assert "RuntimeError: boom" in outcome(_job(RuntimeError("boom"), JobStatus.FAILED), None).error
    assert outcome(_job(float("nan")), None).status == "non-finite"
    assert outcome(_job(float("-inf")), None).status == "non-finite"
    assert outcome(_job("text"), None).status == "not-a-number"
    missing = outcome(_job({"val_loss": 0.3}), "val_accuracy")  # nas-train's dict after a diverged run
    assert missing.status == "no-metric" and "val_loss" in missing.error
    with pytest.raises(MetricError, match="set hydra.sweeper.metric"):
        outcome(_job({"val_accuracy": 0.9}), None)


def test_failures_are_told_as_nan_and_the_record_refuses_another_space(tmp_path):
    search = parse_search_space(["x=interval(0, 1)"])
    record = _impl.SweepRecord(_impl._space_json(search.space), [], trials=[
        {"job": 0, "config": {"x": 0.2}, "status": "completed", "value": 0.7},
        {"job": 1, "config": {"x": 0.9}, "status": "failed", "value": None},
        {"job": 2, "config": {"x": 0.5}, "status": "non-finite", "value": "nan"}], next_job=4)
    history = record.history(search.space, "maximize")
    assert history[0] == ({"x": 0.2}, -0.7) and all(math.isnan(v) for _, v in history[1:])
    path = tmp_path / "record.json"
    record.save(path, SweepSettings.create(direction="maximize"))
    again = _impl.SweepRecord.load(path, search)
    assert again.trials == record.trials and again.next_job == 4
    assert json.loads(path.read_text())["best"]["job"] == 0
    with pytest.raises(ResumeError, match="different search space"):
        _impl.SweepRecord.load(path, parse_search_space(["x=interval(0, 2)"]))


# ---------------------------------------------------------------------------
# Real multiruns

def test_branin_sweep_from_a_config_file_reaches_the_optimum_and_resumes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    jobs = tmp_path / "jobs.jsonl"
    # The space comes from conf/branin_sweep.yaml (hydra.sweeper.params).
    record, output = multirun(tmp_path, sweep_dir, "hydra.sweeper.n_trials=20", f"record={jobs}",
                              config_name="branin_sweep")
    assert [t["job"] for t in record["trials"]] == list(range(20)) and record["next_job"] == 20
    assert all(t["status"] == "completed" for t in record["trials"])
    assert sorted(line["job"] for line in job_lines(jobs)) == list(range(20))
    first = record["trials"]

    # The same multirun again, with a larger budget: it resumes, it does not restart.
    record, output = multirun(tmp_path, sweep_dir, "hydra.sweeper.n_trials=30", f"record={jobs}",
                              config_name="branin_sweep")
    assert "Resuming" in output and "20 trials done" in output
    assert record["trials"][:20] == first
    assert [t["job"] for t in record["trials"]] == list(range(30))
    assert sorted(line["job"] for line in job_lines(jobs)) == list(range(30))  # jobs 0-19 did not run again
    assert sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) == sorted(map(str, range(30)))
    best = record["best"]["value"]
    print(f"\nBranin through `--multirun`, seed 0: best {best:.4f} after 30 trials (optimum {BRANIN_OPTIMUM})")
    assert BRANIN_OPTIMUM - 1e-6 <= best < 0.5

    # A sweep killed after launching job 30, before recording it: the record says
    # next_job 31 with 30 trials. Resuming proposes again and numbers the job 31.
    data = json.loads((sweep_dir / "tinygp_sweeper.json").read_text())
    data["trials"], data["next_job"] = data["trials"][:29], 31
    (sweep_dir / "tinygp_sweeper.json").write_text(json.dumps(data))
    record, _ = multirun(tmp_path, sweep_dir, "hydra.sweeper.n_trials=30", f"record={jobs}",
                         config_name="branin_sweep")
    assert [t["job"] for t in record["trials"]] == list(range(29)) + [31]


def test_failed_and_nan_jobs_are_penalised_and_the_sweep_goes_on(tmp_path):
    record, output = multirun(tmp_path, tmp_path / "sweep", "x1=interval(-5,10)", "x2=interval(0,15)",
                              "mode=choice(ok,raise,nonfinite)", "hydra.sweeper.n_trials=10", "hydra.sweeper.batch_size=5")
    statuses = {t["job"]: t["status"] for t in record["trials"]}
    assert len(statuses) == 10  # 8 Sobol trials (every mode among them), then 2 GP + EI trials on penalised data
    by_mode = {m: {t["status"] for t in record["trials"] if t["params"]["mode"] == m} for m in ("ok", "raise", "nonfinite")}
    assert by_mode == {"ok": {"completed"}, "raise": {"failed"}, "nonfinite": {"non-finite"}}
    failed = next(t for t in record["trials"] if t["status"] == "failed")
    assert "this job fails on purpose" in failed["error"] and "counts as the worst value seen" in output
    assert record["best"]["params"]["mode"] == "ok"


# The basic launcher, made to raise on some batches (a fault, as when a SLURM
# array is cancelled); everything else is the real app and sweeper.
FLAKY_LAUNCHER = """if True:
    import runpy, sys
    from hydra.core.plugins import Plugins
    # Hydra's plugin scan re-executes the launcher's module: patch the class it found.
    BasicLauncher = Plugins.instance().class_name_to_class[
        "hydra._internal.core_plugins.basic_launcher.BasicLauncher"]
    fail, calls, launch = set({fail!r}), [], BasicLauncher.launch
    def flaky(self, job_overrides, initial_job_idx):
        calls.append(initial_job_idx)
        if len(calls) in fail:
            raise RuntimeError(f"batch {{len(calls)}} was cancelled")
        return launch(self, job_overrides, initial_job_idx)
    BasicLauncher.launch = flaky
    sys.argv = [{app!r}] + {argv!r}
    runpy.run_path({app!r}, run_name="__main__")
"""


@pytest.mark.parametrize("fail, ok", [([2], True), ([2, 3], False)])
def test_a_failed_launch_costs_its_batch_and_two_in_a_row_stop_the_sweep(tmp_path, fail, ok):
    sweep_dir = tmp_path / "sweep"
    argv = ["--multirun", f"hydra.sweep.dir={sweep_dir}", "x1=interval(-5,10)", "x2=interval(0,15)",
            "hydra.sweeper.n_trials=8", "hydra.sweeper.batch_size=2"]
    code = FLAKY_LAUNCHER.format(app=str(APP), fail=fail, argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert (sweep_dir / "tinygp_sweeper.json").exists(), output[-4000:]
    record = json.loads((sweep_dir / "tinygp_sweeper.json").read_text())
    statuses = [t["status"] for t in record["trials"]]
    if ok:
        assert proc.returncode == 0, output[-4000:]
        assert statuses == ["completed"] * 2 + ["failed"] * 2 + ["completed"] * 4
        assert record["trials"][2]["error"] == "launcher: RuntimeError: batch 2 was cancelled"
    else:
        assert proc.returncode != 0 and "the launcher failed on two batches in a row" in output
        assert statuses == ["completed"] * 2 + ["failed"] * 2  # the second failed batch is not a result
        assert record["next_job"] == 6  # ... but its job numbers are never reused on resume


def test_maximise_a_dict_metric_with_a_categorical_until_the_target(tmp_path):
    # mixed_branin = branin + {sgd: 0, adam: 4, rmsprop: 10}; score = -mixed_branin.
    record, _ = multirun(tmp_path, tmp_path / "sweep", "function=mixed_branin", "returns=dict",
                         "x1=interval(-5,10)", "x2=interval(0,15)", "optimizer=choice(sgd,adam,rmsprop)",
                         "hydra.sweeper.metric=score", "hydra.sweeper.direction=maximize", "hydra.sweeper.target=-3",
                         "hydra.sweeper.n_trials=60", "hydra.sweeper.batch_size=2")
    values = [t["value"] for t in record["trials"]]
    assert len(values) < 60 and max(values) >= -3  # stopped at the target, before the budget
    assert max(values[:-2]) < -3  # ... in the first batch that reached it
    assert record["best"]["value"] == max(values) and record["best"]["params"]["optimizer"] == "sgd"
    assert {t["params"]["optimizer"] for t in record["trials"]} <= {"sgd", "adam", "rmsprop"}


def test_joblib_launcher_runs_a_batch_of_four_in_parallel_processes(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, str(APP), "--multirun", f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=joblib",
         "hydra.launcher.n_jobs=4", "hydra.sweeper.batch_size=4", "hydra.sweeper.n_trials=4",
         "x1=interval(-5,10)", "x2=interval(0,15)", "sleep=4", f"record={jobs}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-4000:]
    lines = job_lines(jobs)
    pids = {line["pid"] for line in lines}
    assert len(lines) == 4 and len(pids) == 4 and proc.pid not in pids
    # Sleeping jobs overlap only if they ran at the same time: some instant lies in all four.
    assert max(line["start"] for line in lines) < min(line["end"] for line in lines)
    assert "Joblib.Parallel(n_jobs=4" in output
    record = json.loads((sweep_dir / "tinygp_sweeper.json").read_text())
    assert [t["status"] for t in record["trials"]] == ["completed"] * 4


def test_submitit_local_executor_runs_the_sweep(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    sweep_dir = tmp_path / "sweep"
    record, output = multirun(tmp_path, sweep_dir, "hydra/launcher=submitit_local", "hydra.sweeper.batch_size=2",
                              "hydra.sweeper.n_trials=4", "x1=interval(-5,10)", "x2=interval(0,15)",
                              "mode=choice(ok,raise)", f"record={jobs}")
    assert [t["job"] for t in record["trials"]] == [0, 1, 2, 3]
    assert {t["status"] for t in record["trials"]} == {"completed", "failed"}  # a raising job is an observation here too
    assert len({line["pid"] for line in job_lines(jobs)}) == sum(t["status"] == "completed" for t in record["trials"])
    assert (sweep_dir / ".submitit").is_dir()
    assert "Submitit 'local' sweep output dir" in output


def test_slurm_launcher_example_composes_into_a_valid_sbatch_script(tmp_path):
    # conf/hydra/launcher/slurm.yaml, composed as nas-train composes it and
    # instantiated as Hydra does; every parameter must be one submitit's SLURM
    # executor accepts, and a batch of 100 trials must become one array job
    # with at most array_parallelism tasks running at once. (No sbatch
    # here: the jobs themselves are run by the submitit_local test above.)
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from submitit import SlurmExecutor
    from submitit.slurm import slurm

    from nas.cli import run

    with initialize_config_dir(config_dir=run.CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra/sweeper=tinygp",
                                          f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("TinygpSweeper")
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    params = dict(launcher.params)
    assert params.pop("submitit_folder") == f"{tmp_path}/.submitit/%j"
    assert params.pop("max_num_timeout") == 0  # a timed-out trial is a failed trial, not requeued
    renamed = {SlurmExecutor._equivalence_dict().get(k, k): v for k, v in params.items()}
    assert set(renamed) <= SlurmExecutor._valid_parameters()
    renamed["mem"] = slurm._convert_mem(renamed["mem"])
    script = slurm._make_sbatch_string(command="python -m nas.cli.train", folder=tmp_path, map_count=100, **renamed)
    for line in ("#SBATCH --cpus-per-task=8", "#SBATCH --gpus-per-node=1", "#SBATCH --mem=32GB",
                 "#SBATCH --time=120", "#SBATCH --array=0-99%64"):
        assert line in script


@pytest.mark.slow
def test_ray_launcher_runs_batches_on_a_local_ray_cluster(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    sweep_dir = tmp_path / "sweep"
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    proc = subprocess.Popen(
        [sys.executable, str(APP), "--multirun", f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=ray",
         "+hydra.launcher.ray.init.num_cpus=2", "hydra.sweeper.batch_size=2", "hydra.sweeper.n_trials=4",
         "x1=interval(-5,10)", "x2=interval(0,15)", "mode=choice(ok,raise)", f"record={jobs}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-4000:]
    assert output.count("Ray Launcher is launching 2 jobs") == 2
    record = json.loads((sweep_dir / "tinygp_sweeper.json").read_text())
    assert [t["job"] for t in record["trials"]] == [0, 1, 2, 3]
    assert {t["status"] for t in record["trials"]} == {"completed", "failed"}
    lines = job_lines(jobs)
    assert proc.pid not in {line["pid"] for line in lines}  # jobs ran in Ray workers, not in the sweeper
    assert {line["job"]: line["value"] for line in lines} == {
        t["job"]: t["value"] for t in record["trials"] if t["status"] == "completed"}


@pytest.mark.slow
def test_nas_train_multirun_tunes_a_tiny_digits_mlp_and_resumes(tmp_path):
    # The real training entry point: each job trains a 32-unit MLP for 3 epochs
    # and returns nas-train's result dict; the sweeper maximises val_accuracy.
    sweep_dir = tmp_path / "sweep"
    command = [str(Path(sys.executable).parent / "nas-train"), "--multirun", "hydra/sweeper=tinygp", "data=digits",
               "model.hidden=[32]", "train.epochs=3", "logger=console", "progress=false",
               "optimizer.learning_rate=tag(log, interval(1e-4, 1.0))", "hydra.sweeper.metric=val_accuracy",
               "hydra.sweeper.direction=maximize", "hydra.sweeper.batch_size=4", f"hydra.sweep.dir={sweep_dir}"]
    env = dict(os.environ, HYDRA_FULL_ERROR="1")

    def sweep(n_trials: int) -> tuple[dict, str]:
        proc = subprocess.run(command + [f"hydra.sweeper.n_trials={n_trials}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return json.loads((sweep_dir / "tinygp_sweeper.json").read_text()), proc.stdout + proc.stderr

    record, _ = sweep(8)
    assert [t["job"] for t in record["trials"]] == list(range(8))
    for t in record["trials"]:  # the value the sweeper saw is the job's own result
        results = json.loads((sweep_dir / str(t["job"]) / "results.json").read_text())
        assert t["status"] == "completed" and t["value"] == results["val_accuracy"]
    first = record["trials"]
    record, output = sweep(12)
    assert "Resuming" in output and "8 trials done" in output
    assert record["trials"][:8] == first and [t["job"] for t in record["trials"]] == list(range(12))
    best = record["best"]
    print(f"\nnas-train digits sweep: best val_accuracy {best['value']:.4f} at lr "
          f"{best['params']['optimizer.learning_rate']:.3g} after 12 trials")
    # A lr of 1e-4 or 1.0 gives 0.2-0.3 here; a good one (1e-3 .. 0.1) above 0.93.
    assert best["value"] > 0.93 and 1e-3 < best["params"]["optimizer.learning_rate"] < 0.2


@pytest.mark.slow
def test_optuna_sweeper_runs_nas_train_on_the_metric_it_names(tmp_path):
    # hydra-optuna-sweeper wants one float per job: +sweep.metric makes nas-train return that
    # result. The storage is SQLite, which optuna 2.x (what the sweeper pins) cannot use under
    # SQLAlchemy 2 (setup.cfg pins < 2).
    import optuna

    sweep_dir = tmp_path / "sweep"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = [str(Path(sys.executable).parent / "nas-train"), "--multirun", "hydra/sweeper=optuna",
               "+sweep.metric=val_accuracy", "hydra.sweeper.direction=maximize", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.sampler.seed=0", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=digits",
               "optimizer.learning_rate=tag(log, interval(1e-3, 1e-1))", "data=digits", "model.hidden=[32]",
               "train.epochs=1", "logger=console", "progress=false", "runtime.compilation_cache=null",
               f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(command, cwd=tmp_path, env=dict(os.environ, HYDRA_FULL_ERROR="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    study = optuna.load_study(study_name="digits", storage=storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for job, trial in enumerate(trials):  # the value Optuna saw is the job's own val_accuracy
        results = json.loads((sweep_dir / str(job) / "results.json").read_text())
        assert trial.value == results["val_accuracy"] and results["epochs"] == 1
        overrides = (sweep_dir / str(job) / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer.learning_rate={trial.params['optimizer.learning_rate']}" in overrides
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert f"best_value: {max(t.value for t in trials)}" in best


def test_sweep_metric_picks_the_float_a_sweeper_needs():
    from omegaconf import OmegaConf

    from nas.cli import run
    from nas.api.settings import SettingsError

    results = {"status": "done", "val_accuracy": 0.9, "num_params": 10, "arch": "mlp", "converged": True}
    assert run.sweeper_return(OmegaConf.create({}), results) is results  # unset: the dict, as before
    picked = run.sweeper_return(OmegaConf.create({"sweep": {"metric": "val_accuracy"}}), results)
    assert isinstance(picked, float) and picked == 0.9
    assert run.sweeper_return(OmegaConf.create({"sweep": {"metric": "num_params"}}), results) == 10.0
    diverged = {"status": "diverged", "num_params": 10}
    assert math.isnan(run.sweeper_return(OmegaConf.create({"sweep": {"metric": "val_accuracy"}}), diverged))
    for bad in ("val_acc", "arch", "converged"):  # absent, not a number, a bool
        with pytest.raises(SettingsError, match=f"sweep.metric={bad}: .*numbers: \\['num_params', 'val_accuracy'\\]"):
            run.sweeper_return(OmegaConf.create({"sweep": {"metric": bad}}), results)
