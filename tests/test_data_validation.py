"""Bad data fails on load with a `DatasetError` naming the file, the array and the problem.

Each test writes a small file whose one fault it knows (NaN, a string array,
a truncated archive, one class...) and checks that `load_dataset` refuses it
with a message a user can act on, instead of handing a search data that
later shows up as a NaN loss, a "diverged" trial or a perfect score.
"""

from __future__ import annotations

import gzip
import pathlib
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

from nas.data import DatasetError, DatasetWarning, load_dataset
from nas.data.idx import read_idx
from nas.data.validate import MAX_CLASSES


def _features(n: int = 40, width: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width))


def _labels(n: int = 40, classes: int = 2) -> np.ndarray:
    return np.arange(n) % classes


def _npz(tmp_path: pathlib.Path, name: str = "d.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return f"npz:{path}"


def _splits(n_train: int = 30, n_val: int = 8, n_test: int = 8, **override) -> dict[str, np.ndarray]:
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        arrays[f"x_{split}"] = _features(n)
        arrays[f"y_{split}"] = _labels(n)
    return arrays | override


# --- inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_named_with_count_and_first_index(tmp_path, bad):
    x = _features()
    x[5, 1] = bad
    x[9, 0] = bad
    source = _npz(tmp_path, x=x, y=_labels())
    with pytest.raises(DatasetError, match=r"x holds 2 NaN/inf value\(s\) \(first at x\[5, 1\]\)") as error:
        load_dataset(source)
    assert str(tmp_path / "d.npz") in str(error.value)


def test_nan_in_the_test_split_names_x_test(tmp_path):
    # The case that used to finish with test_loss NaN and status "done".
    x_test = _features(8)
    x_test[3, 2] = np.nan
    source = _npz(tmp_path, **_splits(x_test=x_test))
    with pytest.raises(DatasetError, match=r"d\.npz: x_test holds 1 NaN/inf value\(s\) \(first at x_test\[3, 2\]\)"):
        load_dataset(source)


def test_float64_beyond_float32_range_is_refused(tmp_path):
    # Finite in the file, but inf once converted to float32 for training.
    x = _features()
    x[2, 0] = 1e300
    with pytest.raises(DatasetError, match=r"x holds 1 value\(s\) beyond float32's range .*x\[2, 0\]"):
        load_dataset(_npz(tmp_path, x=x, y=_labels()))


@pytest.mark.parametrize(
    "x, fault",
    [
        (np.array(["a", "b"] * 20), "x has dtype <U1; inputs must be real numbers"),
        (_features() + 1j, "x has dtype complex128"),
        (np.float64(3.0), r"x has shape \(\); inputs need at least two axes"),
        (np.zeros((40, 0)), r"x has shape \(40, 0\), so each example holds no values"),
    ],
    ids=["string", "complex", "scalar", "no-features"],
)
def test_non_numeric_or_shapeless_inputs_are_refused(tmp_path, x, fault):
    with pytest.raises(DatasetError, match=fault):
        load_dataset(_npz(tmp_path, x=x, y=_labels()))


def test_object_arrays_name_the_array_and_are_never_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}] * 40, dtype=object), y=_labels())
    with pytest.raises(DatasetError, match=r"obj\.npz: cannot read array 'x'.*Python objects"):
        load_dataset(f"npz:{path}")


def test_numeric_kinds_and_one_feature_columns_load(tmp_path):
    for dtype in (np.bool_, np.uint8, np.int64, np.float16, np.float32):
        data = load_dataset(_npz(tmp_path, x=(_features() > 0).astype(dtype), y=_labels()))
        assert data.x_train.dtype == np.float32 and np.isfinite(data.x_train).all()
    # (N,) features get a feature axis: examples x 1 feature
    assert load_dataset(_npz(tmp_path, x=np.arange(40.0), y=_labels())).input_shape == (1,)


def test_split_shapes_must_agree(tmp_path):
    source = _npz(tmp_path, **_splits(x_val=_features(8, width=4)))
    shapes = r"per-example shapes differ \(x_train \(3,\), x_val \(4,\), x_test \(3,\)\)"
    with pytest.raises(DatasetError, match=shapes):
        load_dataset(source)


def test_an_empty_stored_split_is_refused(tmp_path):
    source = _npz(tmp_path, **_splits(x_val=np.zeros((0, 3)), y_val=np.zeros(0, np.int64)))
    with pytest.raises(DatasetError, match=r"x_val is empty \(shape \(0, 3\)\)"):
        load_dataset(source)


@pytest.mark.parametrize(
    "options, fault",
    [
        ({"val_fraction": 0.0}, r"val split is empty: val_fraction=0.0 of the 40-example pool"),
        ({"test_fraction": 0.01}, r"test split is empty: test_fraction=0.01 of the 40-example pool"),
    ],
)
def test_a_carved_split_that_rounds_to_nothing_is_refused(tmp_path, options, fault):
    with pytest.raises(DatasetError, match=fault):
        load_dataset(_npz(tmp_path, x=_features(), y=_labels()), **options)


# --- labels -----------------------------------------------------------------------


def test_fractional_labels_name_the_first_one(tmp_path):
    y = _labels().astype(np.float64)
    y[2] = 1.5
    with pytest.raises(DatasetError, match=r"y\[2\] = 1.5 is not an integer.*1 label\(s\) are fractional"):
        load_dataset(_npz(tmp_path, x=_features(), y=y))


@pytest.mark.parametrize("regression", [False, True])
def test_nan_labels_are_refused_for_both_tasks(tmp_path, regression):
    y = _labels().astype(np.float32)
    y[7] = np.nan
    with pytest.raises(DatasetError, match=r"y holds 1 NaN/inf label\(s\) \(first at y\[7\]\)"):
        load_dataset(_npz(tmp_path, x=_features(), y=y), regression=regression)


def test_negative_labels_are_refused(tmp_path):
    y = _labels()
    y[4] = -1
    with pytest.raises(DatasetError, match=r"y\[4\] = -1 is negative"):
        load_dataset(_npz(tmp_path, x=_features(), y=y))


def test_huge_labels_are_taken_for_corrupt_data_not_a_billion_class_head(tmp_path):
    y = _labels() * 10**9
    fault = r"y\[1\] = 1000000000 would need a head of 1,000,000,001 classes.*regression target"
    with pytest.raises(DatasetError, match=fault):
        load_dataset(_npz(tmp_path, x=_features(), y=y))
    # the limit is an option: 150 classes are fine by default, not under max_classes=100
    # (10 examples a class, so stratified val and test hold every class: no warnings)
    source = _npz(tmp_path, "many.npz", x=_features(1500), y=np.arange(1500) % 150)
    assert load_dataset(source).num_classes == 150
    with pytest.raises(DatasetError, match="max_classes=100"):
        load_dataset(source, max_classes=100)
    assert MAX_CLASSES >= 100_000


def test_labels_must_be_one_per_example(tmp_path):
    with pytest.raises(DatasetError, match=r"y has shape \(39,\), expected \(40,\): one label per example of x"):
        load_dataset(_npz(tmp_path, x=_features(), y=_labels(39)))


def test_one_class_is_an_error_naming_the_class(tmp_path):
    source = _npz(tmp_path, x=_features(), y=np.full(40, 3))
    with pytest.raises(DatasetError, match=r"d\.npz: only class 3 appears in y; a model needs at least two classes"):
        load_dataset(source)
    with pytest.raises(DatasetError, match="every target is 3"):
        load_dataset(source, regression=True)


def test_one_class_image_folder_names_the_folder(tmp_path):
    for i in range(6):
        path = tmp_path / "only" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("L", (4, 4), i * 10).save(path)
    with pytest.raises(DatasetError, match=f"image folder {tmp_path}: only class 0 appears"):
        load_dataset(f"image_folder:{tmp_path}")


def test_a_training_subset_of_one_class_is_an_error():
    with pytest.raises(DatasetError, match=r"'digits'.*train split \(1 examples\) holds only class"):
        load_dataset("digits", max_train=1)


def test_a_class_missing_from_a_split_warns_with_what_the_score_cannot_show(tmp_path):
    y_test = _labels(8)
    y_test[:2] = 2  # class 2 never appears in train
    source = _npz(tmp_path, **_splits(y_test=y_test, y_val=np.zeros(8, np.int64)))
    with pytest.warns(DatasetWarning) as caught:
        data = load_dataset(source)
    messages = [str(w.message) for w in caught]
    assert any("class(es) 2 appear in test but not in train" in m and "at most 0.750" in m for m in messages)
    assert any("class(es) 1 appear in train but not in val" in m for m in messages)
    assert data.num_classes == 3
    # regression interpolates between targets: a missing value is no gap, so no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        load_dataset(source, regression=True)


# --- npz keys and damaged files ----------------------------------------------------


def test_npz_with_only_x_lists_the_expected_and_found_keys(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset(_npz(tmp_path, x=_features()))
    message = str(error.value)
    assert str(tmp_path / "d.npz") in message and "has no y" in message
    assert "x_train and y_train" in message and "or x and y" in message
    assert message.endswith("it holds ['x']")


def test_npz_with_foreign_keys_lists_them(tmp_path):
    with pytest.raises(DatasetError, match=r"holds none of the expected arrays .* it holds \['images', 'labels'\]"):
        load_dataset(_npz(tmp_path, images=_features(), labels=_labels()))
    with pytest.raises(DatasetError, match=r"both split arrays and a pool \(x/y\)"):
        load_dataset(_npz(tmp_path, "both.npz", x=_features(), y=_labels(), x_train=_features(), y_train=_labels()))


def test_npz_warns_about_arrays_it_ignores(tmp_path):
    # x_valid is a typo for x_val: without the warning val would silently be carved from train
    source = _npz(tmp_path, **_splits(), x_valid=_features(8), y_valid=_labels(8))
    with pytest.warns(DatasetWarning, match=r"ignoring array\(s\) \['x_valid', 'y_valid'\]"):
        load_dataset(source)


def test_truncated_and_foreign_npz_files_name_the_file(tmp_path):
    whole = tmp_path / "whole.npz"
    np.savez(whole, x=_features(), y=_labels())
    (tmp_path / "cut.npz").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"npz file .*cut\.npz is not a zip archive.*truncated"):
        load_dataset(f"npz:{tmp_path / 'cut.npz'}")
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    with pytest.raises(DatasetError, match=r"text\.npz is not a zip archive"):
        load_dataset(f"npz:{tmp_path / 'text.npz'}")
    np.save(tmp_path / "single.npy", _features())
    with pytest.raises(DatasetError, match=r"single\.npy is not a zip archive.*a single \.npy array"):
        load_dataset(f"npz:{tmp_path / 'single.npy'}")


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_corrupt_bytes_inside_an_npz_name_the_file_and_array(tmp_path, save):
    save(tmp_path / "good.npz", x=_features(400, 30), y=_labels(400))
    data = bytearray((tmp_path / "good.npz").read_bytes())
    # The first member (x.npy) starts at 0; its data lies well inside the
    # first 96 kB of float64s, past the 30-byte local header and npy header.
    data[2000:2100] = b"\xff" * 100
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"bad\.npz: cannot read array 'x'"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


# --- IDX ------------------------------------------------------------------------------


def _idx_gz(path: pathlib.Path, array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path.read_bytes()


def test_truncated_or_corrupt_gzipped_idx_names_the_file(tmp_path):
    noise = _idx_gz(tmp_path / "noise-idx3-ubyte.gz", np.random.default_rng(0).integers(0, 256, (50, 28, 28)))
    (tmp_path / "cut-idx3-ubyte.gz").write_bytes(noise[: len(noise) // 2])  # EOFError inside gzip
    # Noise is stored uncompressed, so garbling it trips gzip's CRC (an OSError) ...
    garbled = bytearray(noise)
    garbled[len(noise) // 2 : len(noise) // 2 + 64] = b"\x00" * 64
    (tmp_path / "crc-idx3-ubyte.gz").write_bytes(bytes(garbled))
    # ... while zeroing bytes 20..35 of a compressible image's file (the end of the
    # stored file name and the start of the deflate stream) raises zlib.error,
    # which is no OSError and used to escape raw.
    packed = bytearray(_idx_gz(tmp_path / "tiles-idx3-ubyte.gz", (np.arange(50 * 28 * 28) % 7).reshape(50, 28, 28)))
    packed[20:36] = b"\x00" * 16
    (tmp_path / "deflate-idx3-ubyte.gz").write_bytes(bytes(packed))
    for name in ("cut", "crc", "deflate"):
        with pytest.raises(DatasetError, match=rf"cannot read IDX file .*{name}-idx3-ubyte\.gz"):
            read_idx(tmp_path / f"{name}-idx3-ubyte.gz")


def test_idx_of_wider_elements_and_absurd_headers(tmp_path):
    # float32 elements: the expected size counts 4 bytes each
    values = np.array([[0.5, -1.0], [np.nan, 2.0]], dtype=">f4")
    (tmp_path / "f-idx2").write_bytes(bytes([0, 0, 0x0D, 2]) + struct.pack(">2I", 2, 2) + values.tobytes())
    read = read_idx(tmp_path / "f-idx2")
    assert read.dtype == np.float32 and np.array_equal(read, values, equal_nan=True)
    # a corrupt header claiming (2^32 - 1)^3 elements is named, not overflowed
    (tmp_path / "huge-idx3").write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *[2**32 - 1] * 3) + b"\x00" * 8)
    with pytest.raises(DatasetError, match=r"huge-idx3 is truncated or corrupt: header says shape \(4294967295,"):
        read_idx(tmp_path / "huge-idx3")


def test_bad_max_classes_option_is_named():
    with pytest.raises(DatasetError, match="max_classes=1 must be an int of at least 2"):
        load_dataset("digits", max_classes=1)
