"""Real CIFAR-10 images from the ../shared mirror through the real reader, preprocessing and training.

Skips with a reason when ../shared is absent (see conftest.real_mirror).
"""

import numpy as np
import pytest

from pipeline.lib import cifar, data, training

from pipeline.stages import evaluate


@pytest.fixture(scope="module")
def splits(real_mirror, tmp_path_factory):
    archive, _ = real_mirror
    raw = cifar.load_archive(archive)
    (train_x, train_y), (test_x, test_y) = raw["train"], raw["test"]
    offset, scale = data.normalization("standardize", train_x)
    out = tmp_path_factory.mktemp("prepared")
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        data.save_split(out / f"{name}.npz", x, y, raw["class_names"], "standardize", offset, scale)
    return data.load_split(out / "train.npz"), data.load_split(out / "test.npz")


def test_real_archive_reads_as_balanced_uint8_images(splits):
    train_split, test_split = splits
    assert train_split.images.shape == (10_000, 32, 32, 3)
    assert np.bincount(train_split.labels).tolist() == [1_000] * 10
    assert np.bincount(test_split.labels).tolist() == [100] * 10
    assert train_split.class_names[0] == "airplane" and train_split.class_names[9] == "truck"


@pytest.mark.slow
def test_sequential_model_beats_chance_after_one_epoch(splits):
    # Measured here (seeds 0 and 1, batch 50): 0.275 and 0.248 test accuracy. Chance is 0.10, with a
    # standard deviation of 0.0095 over 1,000 test images: 0.15 is five of them above chance.
    train_split, test_split = splits
    model, history, _ = training.fit("sequential", train_split, seed=0, batch_size=50, learning_rate=0.001, epochs=1, verbose=0)
    metrics, _ = evaluate.evaluate(model, test_split, batch_size=100, name="sequential")
    assert np.isfinite(history["loss"].iloc[0])
    assert metrics["test_accuracy"] > 0.15
