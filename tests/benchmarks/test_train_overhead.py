"""Does the train stage add overhead to Keras? `pipeline.lib.training.fit` against a bare `model.fit`.

Both build, compile and train the sequential model for the same epochs on the same arrays, so the
compile cost is identical and the ratio of medians shows only what the pipeline adds (its step
timer, label encoding and history frame). Target: pipeline >= 0.95x bare throughput.
"""

import keras
import pytest

from pipeline.lib import models, training
from tests.splits import synthetic_split

IMAGES, EPOCHS, BATCH = 5000, 2, 100


@pytest.fixture(scope="module")
def split():
    return synthetic_split(IMAGES, seed=1, normalize="raw")


def bare_fit(split):
    keras.utils.set_random_seed(0)
    model = models.build("sequential", 0.001)
    targets = keras.utils.to_categorical(split.labels, 10)
    model.fit(split.images, targets, batch_size=BATCH, epochs=EPOCHS, verbose=0)


def pipeline_fit(split):
    training.fit("sequential", split, seed=0, batch_size=BATCH, learning_rate=0.001, epochs=EPOCHS, verbose=0)


@pytest.mark.parametrize("variant", [bare_fit, pipeline_fit], ids=["bare_model_fit", "pipeline_train_fit"])
def test_train_overhead(benchmark, environment, split, variant):
    benchmark.group = "train-overhead"
    benchmark.extra_info.update(images=IMAGES, epochs=EPOCHS, batch_size=BATCH, model="sequential")
    benchmark.pedantic(variant, args=(split,), rounds=5, warmup_rounds=1)


def test_train_overhead_interleaved(benchmark, environment, split):
    """The same comparison, interleaved: before each timed pipeline round, an untimed-by-pytest bare
    round (timed here), so both see the same machine state. extra_info holds the bare times and the
    throughput ratio of the medians (pipeline / bare; >= 0.95 is the target)."""
    import statistics
    import time

    bare_s = []

    def bare_round():
        start = time.perf_counter()
        bare_fit(split)
        bare_s.append(time.perf_counter() - start)

    benchmark.group = "train-overhead-interleaved"
    benchmark.extra_info.update(images=IMAGES, epochs=EPOCHS, batch_size=BATCH, model="sequential")
    benchmark.pedantic(pipeline_fit, args=(split,), setup=bare_round, rounds=5, warmup_rounds=1)
    ratio = statistics.median(bare_s) / benchmark.stats.stats.median
    benchmark.extra_info.update(bare_seconds=bare_s, throughput_ratio_pipeline_over_bare=round(ratio, 3))
    print(f"\npipeline / bare throughput (medians, interleaved): {ratio:.3f}")
