"""Data sources -> `Dataset`: split sizes, partitions, seeds, strata, statistics, errors.

Every test checks a property of what `nas.data.load_dataset` hands a search
on real data (scikit-learn's digits, Debian's Fashion-MNIST) or on small files
the test writes itself (IDX, PNG folders, .npz), whose contents it knows.
"""

from __future__ import annotations

import gzip
import pathlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nas.data import Dataset, DatasetError, load_dataset
from nas.data.digits import read_digits
from nas.data.fashion_mnist import DEBIAN_DIR, DIR_ENV_VAR, IDX_STEMS, locate_idx_dir
from nas.data.idx import read_idx
from nas.data.image_folder import class_names
from nas.data.splits import class_quotas, stratified_sample

SPLITS = ("train", "val", "test")


def _split(data: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    return getattr(data, f"x_{split}"), getattr(data, f"y_{split}")


def _raw(data: Dataset, x: np.ndarray) -> np.ndarray:
    """Undoes the standardisation: inputs as the source scaled them to [0, 1]."""
    return x * data.std + data.mean


def _example_keys(data: Dataset, split: str, levels: int) -> list[bytes]:
    """Each example of a split as bytes of its raw integer pixels (sorted multiset)."""
    x = np.rint(_raw(data, _split(data, split)[0]) * levels).astype(np.int16)
    return sorted(row.tobytes() for row in x.reshape(len(x), -1))


def _class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)


# --- digits -------------------------------------------------------------------


def test_digits_shapes_classes_and_split_sizes(digits):
    assert digits.name == "digits" and digits.task == "classification"
    assert digits.input_shape == (8, 8, 1) and digits.num_classes == 10 and digits.num_outputs == 10
    # 1797 examples: round(0.15 * 1797) = 270 each for val and test.
    assert (len(digits.x_train), len(digits.x_val), len(digits.x_test)) == (1257, 270, 270)
    for split in SPLITS:
        x, y = _split(digits, split)
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.shape[1:] == (8, 8, 1) and len(x) == len(y)
        assert set(np.unique(y)) == set(range(10))
    assert digits.mean.shape == digits.std.shape == (1,)
    assert digits.metadata()["num_train"] == 1257


def test_digits_splits_partition_the_data_set(digits):
    # Pixels are k/16: the multiset of all splits' examples is exactly the data set's.
    pooled = sorted(sum((_example_keys(digits, split, 16) for split in SPLITS), []))
    source = np.rint(read_digits().x_train * 16).astype(np.int16)
    assert pooled == sorted(row.tobytes() for row in source.reshape(len(source), -1))
    # and no example (bar the data set's own duplicates) is in two splits
    duplicates_in_source = len(source) - len({row.tobytes() for row in source.reshape(len(source), -1)})
    keys = [set(_example_keys(digits, split, 16)) for split in SPLITS]
    shared = len(keys[0] & keys[1]) + len(keys[0] & keys[2]) + len(keys[1] & keys[2])
    assert shared <= duplicates_in_source


def test_digits_same_seed_same_splits_other_seed_other_splits(digits):
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    for split in SPLITS:
        assert np.array_equal(_split(digits, split)[0], _split(again, split)[0])
        assert np.array_equal(_split(digits, split)[1], _split(again, split)[1])
    assert _example_keys(digits, "test", 16) != _example_keys(other, "test", 16)
    assert other.seed == 1 and digits.seed == 0


def test_digits_splits_are_stratified(digits):
    pool = _class_counts(read_digits().y_train, 10)
    for split in SPLITS:
        y = _split(digits, split)[1]
        expected = pool * len(y) / pool.sum()
        assert np.all(np.abs(_class_counts(y, 10) - expected) < 1.0 + 1e-9), split


def test_train_split_is_standardised_per_channel_and_others_share_its_statistics(digits):
    x = digits.x_train.astype(np.float64)
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-5
    # val/test went through the same affine map: back on the 0..16 grid, within [0, 1]
    for split in ("val", "test"):
        raw = _raw(digits, _split(digits, split)[0])
        assert raw.min() > -1e-5 and raw.max() < 1 + 1e-5
        assert np.allclose(raw * 16, np.rint(raw * 16), atol=1e-4)


def test_regression_targets_are_the_class_indices_as_float32(digits, digits_regression):
    assert digits_regression.task == "regression" and digits_regression.num_outputs == 1
    assert digits_regression.num_classes == 10
    for split in SPLITS:
        x, y = _split(digits_regression, split)
        assert y.dtype == np.float32
        assert np.array_equal(y, _split(digits, split)[1].astype(np.float32))
        assert np.array_equal(x, _split(digits, split)[0])


def test_max_train_keeps_a_stratified_subset_and_leaves_val_and_test_alone(digits):
    small = load_dataset("digits", max_train=100)
    assert len(small.x_train) == 100
    assert np.all(np.abs(_class_counts(small.y_train, 10) - _class_counts(digits.y_train, 10) / 1257 * 100) < 1)
    assert set(_example_keys(small, "train", 16)) <= set(_example_keys(digits, "train", 16))
    for split in ("val", "test"):
        assert _example_keys(small, split, 16) == _example_keys(digits, split, 16)
    # statistics come from the subset actually trained on
    assert abs(small.x_train.mean()) < 1e-5 and abs(small.x_train.std() - 1) < 1e-5


def test_fractions_set_split_sizes():
    data = load_dataset("digits", val_fraction=0.1, test_fraction=0.2)
    assert (len(data.x_val), len(data.x_test)) == (round(0.1 * 1797), round(0.2 * 1797))
    assert len(data.x_train) == 1797 - len(data.x_val) - len(data.x_test)


# --- stratified sampling --------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=200),
    share=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_sample_partitions_with_proportional_class_counts(labels, share, seed):
    labels = np.asarray(labels)
    size = round(share * len(labels))
    chosen, rest = stratified_sample(labels, size, np.random.default_rng(seed))
    assert len(chosen) == size
    assert np.array_equal(np.sort(np.concatenate([chosen, rest])), np.arange(len(labels)))
    counts = np.bincount(labels, minlength=5)
    picked = np.bincount(labels[chosen], minlength=5)
    assert np.all(np.abs(picked - counts * size / len(labels)) < 1)
    again, _ = stratified_sample(labels, size, np.random.default_rng(seed))
    assert np.array_equal(chosen, again)


def test_class_quotas_hand_worked():
    # 7/10 of (5, 3, 2) is (3.5, 2.1, 1.4): floors (3, 2, 1) and the spare one goes to the .5
    assert class_quotas(np.array([5, 3, 2]), 7).tolist() == [4, 2, 1]
    assert class_quotas(np.array([5, 3, 2]), 0).tolist() == [0, 0, 0]
    assert class_quotas(np.array([5, 3, 2]), 10).tolist() == [5, 3, 2]


# --- IDX files and Fashion-MNIST ------------------------------------------------


def _write_idx(path: pathlib.Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _tiny_fashion_dir(directory: pathlib.Path, n_train: int = 40, n_test: int = 20) -> dict[str, np.ndarray]:
    """Four IDX files with fashion-MNIST's names: labels cycle 0..9, pixels encode the index."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    for key, stem in IDX_STEMS.items():
        _write_idx(directory / f"{stem}.gz", arrays[key])
    return arrays


def test_idx_round_trip_plain_and_gzipped(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        _write_idx(tmp_path / name, array)
        read = read_idx(tmp_path / name)
        assert read.dtype == np.uint8 and np.array_equal(read, array)


def test_idx_reader_rejects_truncated_and_foreign_files(tmp_path):
    _write_idx(tmp_path / "whole", np.zeros((4, 5), np.uint8))
    (tmp_path / "cut").write_bytes((tmp_path / "whole").read_bytes()[:-3])
    with pytest.raises(DatasetError, match="cut.*truncated"):
        read_idx(tmp_path / "cut")
    (tmp_path / "text").write_text("hello world")
    with pytest.raises(DatasetError, match="text is not an IDX file"):
        read_idx(tmp_path / "text")


def test_fashion_mnist_reads_idx_files_from_data_dir(tmp_path):
    arrays = _tiny_fashion_dir(tmp_path / "idx")
    data = load_dataset("fashion_mnist", data_dir=str(tmp_path / "idx"), val_fraction=0.25)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (30, 10, 20)
    # test split: the file's order and pixels, untouched
    assert np.array_equal(data.y_test, arrays["y_test"])
    assert np.allclose(_raw(data, data.x_test)[..., 0] * 255, arrays["x_test"], atol=1e-3)


def test_local_builder_prepares_offline_without_tensorflow_and_loads_like_tfds(tmp_path):
    from nas.data.fashion_mnist_builder import prepare

    arrays = _tiny_fashion_dir(tmp_path / "idx")
    builder = prepare(tmp_path / "idx", tmp_path / "tfds")
    assert builder.is_prepared()
    source = builder.as_data_source()
    assert (len(source["train"]), len(source["test"])) == (40, 20)
    assert np.array_equal(source["test"][0]["image"][..., 0], arrays["x_test"][0])
    # load_dataset finds the prepared copy in data_dir (no IDX files there) ...
    data = load_dataset("fashion_mnist", data_dir=str(tmp_path / "tfds"), val_fraction=0.25)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (30, 10, 20)
    assert np.array_equal(data.y_test, arrays["y_test"])
    assert np.allclose(_raw(data, data.x_test)[..., 0] * 255, arrays["x_test"], atol=1e-3)
    # ... and so does the generic TFDS source
    generic = load_dataset("tfds:local_fashion_mnist", data_dir=str(tmp_path / "tfds"), val_fraction=0.25)
    assert np.array_equal(generic.x_test, data.x_test) and np.array_equal(generic.y_train, data.y_train)


@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion_mnist")


@pytest.mark.fashion
def test_fashion_mnist_official_splits(fashion):
    assert fashion.input_shape == (28, 28, 1) and fashion.num_classes == 10
    # validation = 15% of the official 60k train; the official 10k test untouched
    assert (len(fashion.x_train), len(fashion.x_val), len(fashion.x_test)) == (51_000, 9_000, 10_000)
    assert fashion.x_train.dtype == np.float32 and fashion.y_train.dtype == np.int32


@pytest.mark.fashion
def test_fashion_mnist_label_distribution(fashion):
    # Fashion-MNIST is balanced: 6000 train and 1000 test images per class.
    assert _class_counts(fashion.y_test, 10).tolist() == [1000] * 10
    assert _class_counts(fashion.y_val, 10).tolist() == [900] * 10
    assert _class_counts(fashion.y_train, 10).tolist() == [5100] * 10


@pytest.mark.fashion
def test_fashion_mnist_test_split_is_the_raw_files(fashion):
    labels = read_idx(DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz")
    images = read_idx(DEBIAN_DIR / "t10k-images-idx3-ubyte.gz")
    assert fashion.y_test[0] == labels[0] == 9  # an ankle boot
    assert np.array_equal(fashion.y_test, labels)
    assert np.allclose(_raw(fashion, fashion.x_test[:100])[..., 0] * 255, images[:100], atol=1e-3)


@pytest.mark.fashion
def test_fashion_mnist_is_standardised(fashion):
    x = fashion.x_train
    assert abs(float(x.mean(dtype=np.float64))) < 1e-4 and abs(float(x.std(dtype=np.float64)) - 1) < 1e-4
    assert 0.2 < float(fashion.mean[0]) < 0.4  # the well-known ~0.286 mean pixel


def test_missing_fashion_files_name_the_apt_package(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(DIR_ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist") as error:
        load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert DIR_ENV_VAR in str(error.value) and str(tmp_path / "empty") in str(error.value)
    # without the env var and without Debian's directory: the same advice
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist.*NAS_FASHION_MNIST_DIR"):
        locate_idx_dir(None, None, debian_dir=tmp_path / "not-installed")


def test_env_var_points_at_another_idx_dir(tmp_path, monkeypatch):
    _tiny_fashion_dir(tmp_path / "idx")
    monkeypatch.setenv(DIR_ENV_VAR, str(tmp_path / "idx"))
    data = load_dataset("fashion_mnist", data_dir=str(tmp_path / "tfds-empty"), val_fraction=0.25)
    assert len(data.x_test) == 20


# --- image folders ---------------------------------------------------------------


def _png(path: pathlib.Path, size: tuple[int, int], value, mode: str = "L") -> None:
    """A constant image of (height, width) `size`; constant survives any resampling."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size[1], size[0]), value).save(path)


def test_image_folder_greyscale_classes_sorted_and_most_common_size(tmp_path):
    for i in range(4):
        _png(tmp_path / "zebra" / f"{i}.png", (6, 4), 200)
        _png(tmp_path / "cat" / f"{i}.png", (6, 4), 50)
    _png(tmp_path / "cat" / "big.png", (12, 8), 50)  # the odd one is resized
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    assert class_names(tmp_path) == ("cat", "zebra")
    data = load_dataset(f"image_folder:{tmp_path}", val_fraction=0.2, test_fraction=0.2)
    assert data.input_shape == (6, 4, 1) and data.num_classes == 2
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 9
    for split in SPLITS:
        x, y = _split(data, split)
        pixels = _raw(data, x).reshape(len(x), -1) * 255
        assert np.allclose(pixels, np.where(y == 0, 50, 200)[:, None], atol=1e-2), split


def test_image_folder_resizes_to_image_size_and_goes_rgb_when_any_image_is_colour(tmp_path):
    for i in range(3):
        _png(tmp_path / "train" / "a" / f"{i}.png", (5, 5), 10)
        _png(tmp_path / "train" / "b" / f"{i}.jpg", (7, 3), (255, 0, 0), mode="RGB")
    _png(tmp_path / "test" / "a" / "t.bmp", (9, 9), 10)
    _png(tmp_path / "test" / "b" / "t.png", (9, 9), (255, 0, 0), mode="RGB")
    data = load_dataset(f"image_folder:{tmp_path}", image_size=(8, 6), val_fraction=0.34)
    assert data.input_shape == (8, 6, 3) and data.channels == 3
    # the test/ folder is the test split; val carved from train/
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (4, 2, 2)
    assert data.y_test.tolist() == [0, 1]
    red = np.rint(_raw(data, data.x_test[1]) * 255)
    assert np.allclose(red[..., 0], 255, atol=3) and np.allclose(red[..., 1:], 0, atol=3)  # jpeg is lossy
    grey = np.rint(_raw(data, data.x_test[0]) * 255)
    assert np.allclose(grey, 10, atol=1)  # greyscale replicated into R, G and B


def test_image_folder_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path / "nowhere")):
        load_dataset(f"image_folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no .*images"):
        load_dataset(f"image_folder:{tmp_path / 'empty'}")
    _png(tmp_path / "broken" / "a" / "0.png", (4, 4), 0)
    (tmp_path / "broken" / "a" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="1.png"):
        load_dataset(f"image_folder:{tmp_path / 'broken'}")


# --- npz -----------------------------------------------------------------------


def test_npz_round_trip_keeps_given_splits_and_adds_a_channel_axis(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        f"{kind}_{split}": value
        for split, n in (("train", 30), ("val", 8), ("test", 6))
        for kind, value in (("x", rng.integers(0, 256, (n, 5, 4), dtype=np.uint8)), ("y", np.arange(n) % 3))
    }
    np.savez(tmp_path / "d.npz", **arrays)
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.input_shape == (5, 4, 1) and data.num_classes == 3
    for split in SPLITS:
        x, y = _split(data, split)
        assert np.array_equal(y, arrays[f"y_{split}"])
        assert np.allclose(_raw(data, x)[..., 0] * 255, arrays[f"x_{split}"], atol=1e-3)


def test_npz_with_one_pool_is_split_by_fractions(tmp_path):
    x = np.random.default_rng(1).normal(size=(100, 7)).astype(np.float32)
    np.savez(tmp_path / "pool.npz", x=x, y=np.arange(100) % 4)
    data = load_dataset(f"npz:{tmp_path / 'pool.npz'}", seed=3, regression=True)
    assert data.input_shape == (7,) and data.mean.shape == (7,) and data.task == "regression"
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (70, 15, 15)
    assert np.allclose(data.x_train.mean(axis=0), 0, atol=1e-5)
    pooled = np.concatenate([_raw(data, _split(data, s)[0]) for s in SPLITS])
    assert np.allclose(np.sort(pooled, axis=0), np.sort(x, axis=0), atol=1e-5)


def test_npz_errors(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path / "missing.npz")):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")
    np.savez(tmp_path / "half.npz", x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_test=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="y_test"):
        load_dataset(f"npz:{tmp_path / 'half.npz'}")
    np.savez(tmp_path / "frac.npz", x=np.zeros((4, 2)), y=np.array([0, 0.5, 1, 1]))
    with pytest.raises(DatasetError, match="integer class indices"):
        load_dataset(f"npz:{tmp_path / 'frac.npz'}")


# --- TFDS and general errors ---------------------------------------------------


def test_tfds_never_downloads(tmp_path):
    with pytest.raises(DatasetError, match=r"'mnist' is not prepared.*tfds build mnist"):
        load_dataset("tfds:mnist", data_dir=str(tmp_path))
    assert not any(tmp_path.rglob("*.gz"))  # nothing was fetched
    with pytest.raises(DatasetError, match="no_such_dataset_xyz"):
        load_dataset("tfds:no_such_dataset_xyz", data_dir=str(tmp_path))


def test_unknown_name_lists_the_known_sources():
    with pytest.raises(DatasetError, match="'cifar10'.*digits, fashion_mnist, tfds:<name>, image_folder:<path>, npz:<path>"):
        load_dataset("cifar10")
    with pytest.raises(DatasetError, match="unknown dataset 'npz:'"):
        load_dataset("npz:")


@pytest.mark.parametrize(
    "options, fault",
    [
        ({"val_fraction": 1.0}, "val_fraction=1.0"),
        ({"test_fraction": -0.1}, "test_fraction=-0.1"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "no training data"),
        ({"max_train": 0}, "max_train=0"),
        ({"image_size": (8, 8)}, "image_size.*image_folder"),
    ],
)
def test_bad_options_are_named(options, fault):
    with pytest.raises(DatasetError, match=fault):
        load_dataset("digits", **options)
