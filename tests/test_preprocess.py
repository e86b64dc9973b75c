"""Subset selection, normalization modes and the prepared-array round trip."""

import numpy as np
import pytest

from pipeline.lib import data
from pipeline.lib.params import PipelineError
from tests import splits

LABELS = np.repeat(np.arange(10), 50)  # 50 per class, as in a balanced split


def test_subset_is_class_balanced_and_stable():
    keep = data.balanced_subset(LABELS, 100, seed=0, key="preprocess.train_limit")
    assert len(keep) == 100 and np.all(np.diff(keep) > 0)
    assert np.bincount(LABELS[keep], minlength=10).tolist() == [10] * 10
    assert np.array_equal(keep, data.balanced_subset(LABELS, 100, seed=0, key="k"))
    assert not np.array_equal(keep, data.balanced_subset(LABELS, 100, seed=1, key="k"))


def test_subset_limits():
    assert np.array_equal(data.balanced_subset(LABELS, 0, 0, "k"), np.arange(500))
    with pytest.raises(PipelineError, match="preprocess.test_limit = 600 exceeds the 500 images available"):
        data.balanced_subset(LABELS, 600, 0, "preprocess.test_limit")


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)


def _round_trip(tmp_path, images, mode):
    offset, scale = data.normalization(mode, images)
    path = tmp_path / f"{mode}.npz"
    data.save_split(path, images, np.arange(64, dtype=np.uint8) % 10, [f"c{i}" for i in range(10)], mode, offset, scale)
    return data.load_split(path)


def test_raw_keeps_the_tutorials_0_to_255_floats(tmp_path, images):
    split = _round_trip(tmp_path, images, "raw")
    assert split.images.dtype == np.float32
    assert np.array_equal(split.images, images.astype(np.float32))
    assert split.normalize == "raw" and split.class_names[3] == "c3"


def test_unit_scales_to_0_1(tmp_path, images):
    split = _round_trip(tmp_path, images, "unit")
    np.testing.assert_allclose(split.images, images / 255.0, rtol=1e-6)


def test_standardize_uses_per_channel_train_statistics(tmp_path, images):
    split = _round_trip(tmp_path, images, "standardize")
    np.testing.assert_allclose(split.images.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(split.images.std(axis=(0, 1, 2)), 1, atol=1e-4)


def test_prepared_arrays_stay_uint8_on_disk(tmp_path, images):
    _round_trip(tmp_path, images, "standardize")
    with np.load(tmp_path / "standardize.npz") as npz:
        assert npz["images"].dtype == np.uint8
        assert npz["offset"].shape == npz["scale"].shape == (3,)


def test_unloadable_arrays_name_the_file(tmp_path):
    bad = tmp_path / "train.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="train.npz: cannot load prepared arrays"):
        data.load_split(bad)


@pytest.mark.parametrize("case", list(splits.BAD_PREPARED))
def test_every_reader_refuses_a_bad_split_in_one_line_naming_the_file(tmp_path, case):
    splits.write_bad_prepared(tmp_path, case)
    path = tmp_path / "data" / "prepared" / "train.npz"
    message = splits.BAD_PREPARED[case][1]
    with pytest.raises(PipelineError) as info:
        data.load_split(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)
    reads_labels = case in {"label-10", "label-negative", "float-labels", "2d-labels", "missing-labels", "0-bytes",
                            "truncated", "not-npz"}
    if reads_labels:  # split_size reads the labels alone: what is wrong with them alone is refused there too
        with pytest.raises(PipelineError, match=None) as info:
            data.split_size(path)
        assert message in str(info.value)
    else:
        with np.load(path) as npz:
            assert data.split_size(path) == len(npz["labels"])


def test_a_good_split_passes_every_check(tmp_path, images):
    split = _round_trip(tmp_path, images, "raw")
    assert len(split.labels) == len(split.images) == 64 and split.labels.dtype == np.int64
