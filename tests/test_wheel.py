"""The wheel, installed away from the source tree, runs the three entry points with their packaged configs.

An editable install finds conf/ through the source tree, so only a real wheel
shows whether the configs ship (issue 17: they did not). The test builds the
wheel from a copy of the tree (no build/ or egg-info left in the checkout),
without build isolation and without an index, so it needs no network; installs
it with --no-deps into a fresh venv whose .pth file lends it this venv's
third-party packages (a plain path line: the editable install's own .pth hook
there is not run, so `nas` can come from the wheel only); then runs
`nas-search --help`, `nas-train` for one epoch on digits and `nas-eval` on the
model it saved, from an empty directory outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the build reads: setup.cfg's metadata (README.md is the long description) and the packages.
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "nas", "hydra_plugins", "conf")


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc


def _build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)  # nas/conf stays a link
        else:
            shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(wheels), str(source)], cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("nas-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, env: dict[str, str]) -> Path:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=tmp_path, env=env).stdout.strip()
    # Appended after the venv's own site-packages, so the wheel's nas and hydra_plugins.tinygp_sweeper
    # come first; hydra_plugins stays one namespace across both (the other Hydra plugins live here).
    Path(site, "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.slow
def test_the_wheel_ships_its_configs_and_its_entry_points_run_outside_the_repository(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NAS_CONFIG_DIR", "PYTHONHOME")}
    env.update(HYDRA_FULL_ERROR="1", WANDB_MODE="offline", PIP_NO_INDEX="1")
    wheel = _build_wheel(tmp_path, env)
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {str(p.relative_to(REPO)) for p in (REPO / "conf").rglob("*.yaml")}
    assert {f"nas/{c}" for c in configs} <= names, sorted({f"nas/{c}" for c in configs} - names)
    assert "hydra_plugins/tinygp_sweeper/tinygp_sweeper.py" in names
    assert not any(n.startswith("conf/") for n in names)  # inside the package, not a top-level `conf`

    venv = _fresh_venv(tmp_path, env)
    bin_dir = venv / "bin"
    _run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps", "--no-index",
          str(wheel)], cwd=tmp_path, env=env)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    where = _run([str(bin_dir / "python"), "-c",
                  "import json, nas, nas.cli.run as r; print(json.dumps([nas.__file__, r.CONFIG_DIR]))"],
                 cwd=outside, env=env).stdout
    package_file, config_dir = json.loads(where.strip().splitlines()[-1])
    assert Path(package_file).is_relative_to(venv) and Path(config_dir).is_relative_to(venv)
    assert not Path(package_file).is_relative_to(REPO)

    helped = _run([str(bin_dir / "nas-search"), "--help"], cwd=outside, env=env).stdout
    # Hydra composed conf/search.yaml from the installed package: the help names options from conf/ groups.
    assert "nas-search" in helped and "random" in helped and "digits" in helped

    trained = _run([str(bin_dir / "nas-train"), "data=digits", "train.epochs=1", "logger=console", "progress=false",
                    "runtime.compilation_cache=null", f"hydra.run.dir={outside / 'train'}"], cwd=outside, env=env).stdout
    summary = json.loads(trained.strip().splitlines()[-1])
    assert summary["dataset"] == "digits" and summary["epochs"] == 1
    checkpoint = Path(summary["checkpoint"])
    assert checkpoint.is_relative_to(outside) and (checkpoint / "variables").is_dir()

    evaluated = _run([str(bin_dir / "nas-eval"), f"checkpoint={checkpoint}", "runtime.compilation_cache=null",
                      f"hydra.run.dir={outside / 'eval'}"],
                     cwd=outside, env=env).stdout
    report = json.loads(evaluated.strip().splitlines()[-1])
    # The same variables on the same test split: nas-eval reproduces nas-train's test accuracy.
    assert report["test_accuracy"] == summary["test_accuracy"]
    assert not (outside / "runs").exists() and not (outside / "outputs").exists()
