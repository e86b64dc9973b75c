"""Real Keras training on small synthetic data: learning happens, and the same seed repeats exactly."""

import numpy as np
import pytest

from pipeline.lib import training
from tests.splits import synthetic_split


@pytest.fixture(scope="module")
def split():
    return synthetic_split(200, seed=5, normalize="unit")


def _fit(split, name="sequential", seed=0, epochs=3):
    return training.fit(name, split, seed=seed, batch_size=50, learning_rate=0.003, epochs=epochs, verbose=0)


def test_loss_falls_and_history_and_timing_are_recorded(split):
    model, history, timing = _fit(split)
    assert history.index.tolist() == [1, 2, 3]
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert timing["timed_steps"] == 3 * 4 - 1  # every step but the first, which compiles
    assert timing["train_images_per_s"] > 0 and timing["compile_seconds"] > 0
    assert timing["train_seconds"] >= timing["first_epoch_seconds"] >= timing["compile_seconds"]


def test_same_seed_gives_identical_weights_and_another_seed_does_not(split):
    first, _, _ = _fit(split, epochs=1)
    second, _, _ = _fit(split, epochs=1)
    other, _, _ = _fit(split, seed=1, epochs=1)
    for a, b in zip(first.get_weights(), second.get_weights()):
        assert np.array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights()))


def test_parallel_model_trains_a_step(split):
    _, history, _ = training.fit("parallel", split, seed=0, batch_size=100, learning_rate=0.001, epochs=1, verbose=0)
    assert np.isfinite(history["loss"].iloc[0])


def test_a_time_limit_stops_before_the_next_epoch_and_the_checkpoint_continues(split, tmp_path):
    # Any epoch takes longer than 1 ns: after the first, the next would end past the limit.
    kwargs = dict(seed=0, batch_size=50, learning_rate=0.003, epochs=3, verbose=0, checkpoint_dir=tmp_path)
    _, history, timing = training.fit("sequential", split, time_limit_s=1e-9, **kwargs)
    assert history.index.tolist() == [1] and timing["stopped_at_time_limit"] is True
    model, history, timing = training.fit("sequential", split, time_limit_s=1e9, **kwargs)
    assert history.index.tolist() == [1, 2, 3] and timing["stopped_at_time_limit"] is False
    assert timing["resumed_after_epoch"] == 1
    uninterrupted, _, _ = _fit(split)
    for a, b in zip(model.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.layers[-1].name == "softmax"  # the tutorial's model comes back, whatever was trained


def test_the_speed_gates_fit_loop_is_the_stages_epoch_loop(split):
    # pipeline/lib/speed.py's `<model> fit loop` calls EpochLoop.run: the stage's callbacks and its seeded order
    import keras

    from pipeline.lib import distribute, models

    class Batches(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.sizes = []

        def on_train_batch_begin(self, batch, logs=None):
            self.sizes.append(batch)

    counter = Batches()
    targets = keras.utils.to_categorical(split.labels, models.NUM_CLASSES)
    loop = training.EpochLoop(models.build("sequential", 0.001, "crossentropy"), split.images, targets, seed=0,
                              batch_size=50, epochs=1, replicas=distribute.SINGLE, callbacks=[counter], verbose=0)
    logs = loop.run(0)
    assert counter.sizes == [0, 1, 2, 3] and len(loop.timer.step_ends) == 4 and len(loop.timer.epoch_ends) == 1
    assert set(logs) >= {"loss", "accuracy"} and np.isfinite(logs["loss"])


def test_every_model_has_a_fit_loop_of_its_own_batch_count():
    from pipeline.lib import registry, speed

    batches = {name: m.fit_loop_batches for name, m in registry.MODELS.items()}
    assert {m: batches[m] for m in ("sequential", "parallel")} == {"sequential": 6, "parallel": 3}
    found = speed.benchmarks(100, 100, 0.001, "crossentropy")
    assert list(found) == speed.names() == [f"{model} {what}" for model in registry.names()
                                            for what in ("fit loop", "inference batch")]
    assert {m: found[f"{m} fit loop"].batches for m in registry.names()} == batches
    assert {m: len(found[f"{m} fit loop"].loop.targets) for m in registry.names()} == {
        m: 100 * n for m, n in batches.items()}


def test_the_fit_loop_benchmark_times_the_epoch_and_reports_it_before_fit_returns(split):
    # pipeline/lib/speed.py's FitLoop: from the epoch's start (before its permutation) to its end, after
    # every callback's last batch, per batch; report(ms) is called inside fit, the same ms is returned
    import keras

    from pipeline.lib import models, speed

    class TrainEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            events.append("train end")

    events = []
    targets = keras.utils.to_categorical(split.labels, models.NUM_CLASSES)
    bench = speed.FitLoop(models.build("sequential", 0.001, "crossentropy"), split.images, targets,
                          batch_size=50, seed=0)
    bench.loop.verbose = 0
    bench.loop.callbacks.append(TrainEnd())
    reported = []
    ms = bench(lambda value: (reported.append(value), events.append("report")))
    timer = bench.loop.timer
    assert reported == [ms] and events == ["report", "train end"]  # once, inside fit, before it ends
    assert bench.loop.began < timer.step_ends[0] and timer.epoch_ends[-1] <= bench.ended
    assert ms == (bench.ended - bench.loop.began) * 1000 / 4 and len(timer.step_ends) == 4  # 200 images, 4 batches
    assert bench() == (bench.ended - bench.loop.began) * 1000 / 4 and len(reported) == 1  # no report: returns it alone
    odd = speed.FitLoop(bench.loop.model, split.images[:120], targets[:120], batch_size=50, seed=0)
    odd.loop.verbose = 0
    assert odd() == (odd.ended - odd.loop.began) * 1000 / 3 and len(odd.loop.timer.step_ends) == 3  # 50, 50, 20

    bench.loop.model.fit = lambda *args, **kwargs: keras.callbacks.History()  # an epoch that never runs
    with pytest.raises(RuntimeError, match="the fit loop's epoch never ended"):
        bench()


def test_scoring_the_held_out_images_changes_no_weight_and_curves_every_eval_step(split, tmp_path):
    test = synthetic_split(60, seed=6, normalize="unit")
    plain, plain_history, _ = _fit(split, epochs=2)
    kwargs = dict(seed=0, batch_size=50, learning_rate=0.003, epochs=2, verbose=0, heldout=test, evals_per_epoch=2,
                  eval_batch_size=20)
    scored, history, timing = training.fit("sequential", split, **kwargs)
    for a, b in zip(plain.get_weights(), scored.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert history[["loss", "accuracy"]].equals(plain_history[["loss", "accuracy"]])
    curve = timing["heldout_curve"]
    assert [row["images_seen"] for row in curve] == [100, 200, 300, 400]
    assert [row["epoch"] for row in curve] == [0.5, 1.0, 1.5, 2.0]
    seconds = [row["train_seconds"] for row in curve]
    assert seconds == sorted(seconds) and seconds[-1] <= timing["train_seconds"]
    assert timing["heldout_eval_seconds"] > 0
    # the last point scores the final model: what the evaluate stage will score
    from pipeline.lib import heldout
    accuracy, _, correct = heldout.score(scored.predict(test.images, batch_size=20, verbose=0), test.labels)
    assert (curve[-1]["heldout_accuracy"], curve[-1]["heldout_correct"]) == (round(accuracy, 5), correct)
    # interrupted after epoch 1 and resumed, the curve is the same one
    training.fit("sequential", split, time_limit_s=1e-9, checkpoint_dir=tmp_path, **kwargs)
    _, _, resumed = training.fit("sequential", split, checkpoint_dir=tmp_path, **kwargs)
    assert resumed["resumed_after_epoch"] == 1
    same = ("images_seen", "heldout_correct", "heldout_loss")
    assert [[r[k] for k in same] for r in resumed["heldout_curve"]] == [[r[k] for k in same] for r in curve]
    assert resumed["heldout_curve"][2]["train_seconds"] >= resumed["heldout_curve"][1]["train_seconds"]
