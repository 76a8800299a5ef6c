"""Model directories on disk: every fault is a CheckpointError naming the file; writes are atomic."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from nas import atomic_io
from nas.checkpoint import CHECKSUMS_FILE, CheckpointError, copy_model, load_model, save_model
from nas.compile.flax_module import init_variables, to_flax
from nas.ir import mlp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUT_SHAPE = (8, 8, 1)


def tiny_model(seed: int, hidden: int = 6):
    arch = mlp([hidden], 10, input_shape=INPUT_SHAPE, batchnorm=True)
    return arch, init_variables(to_flax(arch), jax.random.PRNGKey(seed), INPUT_SHAPE)


def assert_same_variables(a: dict, b: dict) -> None:
    leaves_a = jax.tree_util.tree_leaves_with_path(a)
    leaves_b = dict((jax.tree_util.keystr(p), v) for p, v in jax.tree_util.tree_leaves_with_path(b))
    assert {jax.tree_util.keystr(p) for p, _ in leaves_a} == set(leaves_b)
    for path, value in leaves_a:
        np.testing.assert_array_equal(np.asarray(value), np.asarray(leaves_b[jax.tree_util.keystr(path)]))


def siblings(directory) -> list[str]:
    """Hidden leftovers next to a model directory (staging or aside folders)."""
    name = os.path.basename(directory)
    return sorted(e for e in os.listdir(os.path.dirname(directory)) if e.startswith(f".{name}."))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model directory, saved once; tests corrupt copies of it."""
    arch, variables = tiny_model(0)
    directory = str(tmp_path_factory.mktemp("saved") / "model")
    save_model(directory, arch, variables, {"dataset": {"name": "digits"}, "score": np.float32(0.5)})
    return directory, arch, variables


def copy_of(saved, tmp_path) -> str:
    import shutil

    target = str(tmp_path / "copy")
    shutil.copytree(saved[0], target)
    return target


def data_file(directory: str) -> str:
    """The largest of orbax's array chunks (files under a ``d/`` folder of variables/).

    Only chunks: for a tiny model the JSON ``_METADATA`` can outweigh every
    chunk, and garbling it is a different fault (a decode error, not silent).
    """
    files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(directory, "variables")) for f in fs
             if os.path.basename(r) == "d"]
    return max(files, key=os.path.getsize)


def truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def garble(path: str) -> None:
    """Flips 16 bytes in the middle: same size, still there, wrong content."""
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    for i in range(max(0, middle - 8), min(len(data), middle + 8)):
        data[i] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))


def test_save_then_load_round_trips(saved):
    directory, arch, variables = saved
    loaded_arch, loaded_variables, metadata = load_model(directory)
    assert loaded_arch.structural_hash() == arch.structural_hash()
    assert_same_variables(variables, loaded_variables)
    assert metadata == {"dataset": {"name": "digits"}, "score": 0.5}
    with open(os.path.join(directory, CHECKSUMS_FILE)) as f:
        listed = json.load(f)["files"]
    assert listed and all(p.startswith("variables/") for p in listed)
    assert siblings(directory) == []  # the staging folder became the directory


CORRUPTIONS = {
    "arch.json truncated": ("arch.json", lambda d: truncate(os.path.join(d, "arch.json"))),
    "arch.json garbled": ("arch.json", lambda d: garble(os.path.join(d, "arch.json"))),
    "model.json truncated": ("model.json", lambda d: truncate(os.path.join(d, "model.json"))),
    "model.json garbled": ("model.json", lambda d: garble(os.path.join(d, "model.json"))),
    "model.json not an object": ("model.json",
                                 lambda d: atomic_io.write_text_atomic(os.path.join(d, "model.json"), "[1]")),
    "checksums.json truncated": (CHECKSUMS_FILE, lambda d: truncate(os.path.join(d, CHECKSUMS_FILE))),
    "orbax array file garbled": (None, lambda d: garble(data_file(d))),
    "orbax array file truncated": (None, lambda d: truncate(data_file(d))),
    "orbax index removed": ("variables/_METADATA", lambda d: os.remove(os.path.join(d, "variables", "_METADATA"))),
    "variables/ removed": ("variables", lambda d: __import__("shutil").rmtree(os.path.join(d, "variables"))),
    "arch.json removed": ("arch.json", lambda d: os.remove(os.path.join(d, "arch.json"))),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_every_corruption_is_a_checkpoint_error_naming_the_file(saved, tmp_path, case):
    directory = copy_of(saved, tmp_path)
    part, corrupt = CORRUPTIONS[case]
    if part is None:  # the data file: its name is orbax's hash, found before corrupting it
        part = os.path.relpath(data_file(directory), directory)
    corrupt(directory)
    with pytest.raises(CheckpointError) as caught:
        load_model(directory)
    message = str(caught.value)
    assert os.path.join(directory, part) in message, message
    assert caught.value.directory == directory and caught.value.part == part
    assert "rewrite it" in message or "pass a model directory" in message


def test_garbled_arrays_would_load_silently_without_the_checksums(saved, tmp_path):
    """Why checksums.json exists: orbax restores a garbled chunk as different weights, no error."""
    directory = copy_of(saved, tmp_path)
    os.remove(os.path.join(directory, CHECKSUMS_FILE))  # as a checkpoint written before checksums
    garble(data_file(directory))
    _, variables, _ = load_model(directory)
    with pytest.raises(AssertionError):
        assert_same_variables(saved[2], variables)


def test_old_checkpoint_without_checksums_still_names_the_orbax_file(saved, tmp_path):
    directory = copy_of(saved, tmp_path)
    os.remove(os.path.join(directory, CHECKSUMS_FILE))
    truncate(os.path.join(directory, "variables", "_METADATA"))
    with pytest.raises(CheckpointError, match="variables/_METADATA: is truncated or not JSON"):
        load_model(directory)


def test_missing_directory_and_plain_folder_say_what_a_model_directory_is(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path}/nowhere: does not exist; pass a model directory"):
        load_model(str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match="is not a model directory"):
        load_model(str(tmp_path))


def test_a_save_that_fails_before_the_swap_keeps_the_previous_model(saved, tmp_path, monkeypatch):
    directory = copy_of(saved, tmp_path)
    arch_b, variables_b = tiny_model(1, hidden=5)

    def crash(staging, target):  # the fault: everything is staged, then the process fails
        assert os.path.isfile(os.path.join(staging, "arch.json"))
        raise OSError("disk failed")

    monkeypatch.setattr(atomic_io, "replace_directory", crash)
    with pytest.raises(OSError, match="disk failed"):
        save_model(directory, arch_b, variables_b, {"which": "b"})
    monkeypatch.undo()
    arch, variables, _ = load_model(directory)
    assert arch.structural_hash() == saved[1].structural_hash()
    assert_same_variables(saved[2], variables)
    assert siblings(directory) == []  # the staging folder was removed
    save_model(directory, arch_b, variables_b, {"which": "b"})
    arch, variables, metadata = load_model(directory)
    assert metadata == {"which": "b"} and arch.structural_hash() == arch_b.structural_hash()
    assert_same_variables(variables_b, variables)


KILLED_SAVE = """
import os, sys
import jax
from nas import atomic_io
from nas.checkpoint import save_model
from nas.compile.flax_module import init_variables, to_flax
from nas.ir import mlp

mode, directory = sys.argv[1], sys.argv[2]
arch = mlp([5], 10, input_shape=(8, 8, 1), batchnorm=True)
variables = init_variables(to_flax(arch), jax.random.PRNGKey(1), (8, 8, 1))
if mode == "before-swap":  # killed with the new model fully staged, nothing swapped yet
    atomic_io.replace_directory = lambda staging, target: os._exit(9)
else:  # a filesystem without RENAME_EXCHANGE, killed between its two renames
    atomic_io._exchange = lambda a, b: False
    rename = os.rename
    def killed_after_aside(src, dst):
        rename(src, dst)
        if ".old-" in os.path.basename(dst):
            os._exit(9)
    os.rename = killed_after_aside
save_model(directory, arch, variables, {"which": "b"})
"""


def kill_during_save(mode: str, directory: str) -> None:
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, mode, directory], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-3000:]


def test_a_save_killed_before_the_swap_leaves_the_previous_model(saved, tmp_path):
    directory = copy_of(saved, tmp_path)
    kill_during_save("before-swap", directory)
    assert len(siblings(directory)) == 1  # the dead writer's staging folder
    arch, variables, _ = load_model(directory)  # ignores it
    assert_same_variables(saved[2], variables)
    arch_b, variables_b = tiny_model(1, hidden=5)
    save_model(directory, arch_b, variables_b, {"which": "b"})
    assert siblings(directory) == []  # the next save cleared it
    assert load_model(directory)[2] == {"which": "b"}


def test_a_save_killed_between_the_fallback_renames_is_completed_by_the_next_load(saved, tmp_path):
    directory = copy_of(saved, tmp_path)
    kill_during_save("between-renames", directory)
    assert not os.path.exists(directory) and len(siblings(directory)) == 2  # old aside, new staged
    arch, variables, metadata = load_model(directory)  # finishes the swap: the new model was complete
    assert metadata == {"which": "b"}
    assert_same_variables(tiny_model(1, hidden=5)[1], variables)
    assert siblings(directory) == []


def test_copy_model_publishes_a_complete_copy_and_refuses_a_corrupt_source(saved, tmp_path):
    destination = str(tmp_path / "best")
    assert copy_model(saved[0], destination) == destination
    assert_same_variables(saved[2], load_model(destination)[1])
    arch_b, variables_b = tiny_model(1, hidden=5)
    other = str(tmp_path / "other")
    save_model(other, arch_b, variables_b, {"which": "b"})
    copy_model(other, destination)  # replaces
    assert load_model(destination)[2] == {"which": "b"}
    garble(data_file(other))
    with pytest.raises(CheckpointError, match=f"{other}/variables/"):
        copy_model(other, destination)
    assert load_model(destination)[2] == {"which": "b"}  # untouched
    assert siblings(destination) == []


def test_write_json_atomic_replaces_whole_files_and_a_failure_keeps_the_old_one(tmp_path, monkeypatch):
    path = str(tmp_path / "results.json")
    atomic_io.write_json_atomic(path, {"a": 1})
    atomic_io.write_json_atomic(path, {"a": 2})
    assert json.load(open(path)) == {"a": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as an ordinary open() would create it
    with pytest.raises(TypeError):
        atomic_io.write_json_atomic(path, {"a": object()})

    def crash(src, dst):
        raise OSError("disk failed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk failed"):
        atomic_io.write_json_atomic(path, {"a": 3})
    monkeypatch.undo()
    assert json.load(open(path)) == {"a": 2}
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left
