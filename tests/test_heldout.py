"""The held-out curve's arithmetic (pipeline/lib/heldout.py): when it scores, what reaching a target means in
counts, and the scores themselves."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from pipeline.lib import heldout, training


@pytest.mark.parametrize("steps, evals, expected", [
    (100, 4, {25, 50, 75, 100}),
    (10, 4, {3, 5, 8, 10}),
    (7, 1, {7}),
    (3, 4, {1, 2, 3}),  # never more than one score per step
    (500, 1, {500}),
])
def test_scores_are_spread_evenly_and_the_last_ends_the_epoch(steps, evals, expected):
    assert heldout.eval_steps(steps, evals) == expected


@pytest.mark.parametrize("target, images, need", [
    (0.3, 2000, 600),
    (0.07, 100, 7),     # 0.07 * 100 is 7.000000000000001 in floats: ceil would say 8
    (0.57, 100, 57),    # 56.99999999999999 in floats
    (0.3, 7, 3),        # 2.1 correct images: 3 reach it
    (1, 10, 10),
])
def test_the_target_is_a_count_of_correct_images(target, images, need):
    assert heldout.needed(target, images) == need


def _curve(correct, images=100, per_point=250, seconds=2.5):
    return [{"images_seen": per_point * (i + 1), "epoch": (i + 1) / 4, "train_seconds": seconds * (i + 1),
             "heldout_correct": c, "heldout_accuracy": c / images, "heldout_loss": 2.0} for i, c in enumerate(correct)]


def test_the_first_point_with_the_needed_count_reaches_the_target():
    reached = heldout.to_target(_curve([20, 29, 30, 28, 31]), 0.3, 100, train_images=1000)
    assert reached == {"target_accuracy": 0.3, "target_reached": True, "images_to_target": 750,
                       "epochs_to_target": 0.75, "seconds_to_target": 7.5,
                       "best_heldout_accuracy": 0.31, "best_heldout_images_seen": 1250}


def test_epochs_to_target_are_rounded_to_four_decimals_like_the_curves_epochs():
    # 750 of 2,999 training images: 0.250083... epochs
    assert heldout.to_target(_curve([20, 29, 30]), 0.3, 100, train_images=2999)["epochs_to_target"] == 0.2501


def test_one_image_short_of_the_target_everywhere_is_not_reached():
    reached = heldout.to_target(_curve([20, 29, 29, 28]), 0.3, 100, train_images=1000)
    assert reached["target_reached"] is False
    assert reached["images_to_target"] is reached["epochs_to_target"] is reached["seconds_to_target"] is None
    assert (reached["best_heldout_accuracy"], reached["best_heldout_images_seen"]) == (0.29, 500)  # the first best


def test_an_empty_curve_reaches_nothing():
    reached = heldout.to_target([], 0.3, 100, train_images=1000)
    assert reached["target_reached"] is False and reached["best_heldout_accuracy"] is None


def test_scores_are_the_evaluate_stages_arithmetic():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 10))
    labels = rng.integers(0, 10, 50)
    probs = heldout.softmax(logits)
    accuracy, loss, correct = heldout.score(probs.astype(np.float32), labels)
    assert accuracy == accuracy_score(labels, probs.argmax(axis=1)) == correct / 50
    assert loss == pytest.approx(log_loss(labels, probs, labels=list(range(10))), rel=1e-6)
    assert np.allclose(probs.sum(axis=1), 1) and np.array_equal(probs.argmax(axis=1), logits.argmax(axis=1))


class Clock:
    """A perf_counter that moves only when told to."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(heldout.time, "perf_counter", fake)
    monkeypatch.setattr(training.time, "perf_counter", fake)
    return fake


def _scoring(clock, *, train_images=200, seconds_before=None, evals_per_epoch=2, loss="crossentropy"):
    from tests.splits import synthetic_split

    from pipeline.lib import models

    timer = training.StepTimer()
    test = synthetic_split(30, seed=1)
    before = {} if seconds_before is None else {"seconds_before": seconds_before}  # None: the default
    scoring = heldout.HeldOut(test.images, test.labels, train_images=train_images, batch_size=50,
                              evals_per_epoch=evals_per_epoch, eval_batch_size=10,
                              from_logits=models.FROM_LOGITS[loss], timer=timer,
                              **before)
    model = models.build("sequential", 0.001, loss)
    predict = model.predict

    def slow_predict(*args, **kwargs):  # scoring takes 10 s of the clock, in batches of 10, without a progress bar
        assert (kwargs["batch_size"], kwargs["verbose"]) == (10, 0)
        clock.now += 10.0
        return predict(*args, **kwargs)

    model.predict = slow_predict
    scoring.set_model(model)
    return scoring, timer, test


def test_the_scoring_time_is_excluded_from_the_training_clock(clock):
    scoring, timer, test = _scoring(clock, seconds_before=100.0)
    scoring.on_epoch_begin(1)
    clock.now += 3.0
    scoring.on_train_batch_end(0)  # step 1 of 4: not a scoring step
    assert scoring.rows == [] and timer.excluded == 0
    clock.now += 4.0
    scoring.on_train_batch_end(1)  # step 2 of 4: half the epoch, 7 s of training since the timer started
    assert timer.excluded == scoring.eval_seconds == 10.0
    (row,) = scoring.rows
    assert row["images_seen"] == 300 and row["epoch"] == 1.5 and row["train_seconds"] == 107.0
    assert row["heldout_correct"] == round(row["heldout_accuracy"] * 30)
    clock.now += 2.0
    scoring.on_train_batch_end(2)
    scoring.on_train_batch_end(3)  # the epoch's end: 9 s of training, 20 s of scoring so far
    assert [r["train_seconds"] for r in scoring.rows] == [107.0, 109.0]
    assert timer.excluded == scoring.eval_seconds == 20.0
    assert timer.clock() == clock.now - 20.0


def test_an_epoch_that_is_no_multiple_of_the_batch_ends_at_its_image_count(clock):
    scoring, _, _ = _scoring(clock, train_images=230)  # 5 steps of 50: the last one holds 30 images
    assert scoring.at == {3, 5}
    scoring.on_epoch_begin(2)
    for batch in range(5):
        scoring.on_train_batch_end(batch)
    assert [(r["images_seen"], r["epoch"]) for r in scoring.rows] == [(2 * 230 + 150, 2.6522), (3 * 230, 3.0)]


def test_float32_probabilities_are_scored_in_float64_exactly():
    rng = np.random.default_rng(0)
    probs = heldout.softmax(rng.normal(size=(50, 10))).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    wide = probs.astype(np.float64)
    expected = log_loss(labels, wide / wide.sum(axis=1, keepdims=True), labels=list(range(10)))
    assert heldout.score(probs, labels)[1] == expected  # not approx: float32 arithmetic differs in the 7th digit


def test_rows_that_do_not_sum_to_one_are_renormalised_and_absent_classes_still_count():
    probs = np.array([[0.2, 0.2, 0.1], [0.1, 0.3, 0.1]])  # rows summing to 0.5; class 2 in no label
    accuracy, loss, correct = heldout.score(probs, np.array([0, 1]))
    assert (accuracy, correct) == (1.0, 2)
    assert loss == pytest.approx(-(np.log(0.4) + np.log(0.6)) / 2, rel=1e-12)


def test_softmax_is_float64_and_stable_for_large_and_distant_logits():
    logits = np.array([[1000.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # exp(1000) overflows; rows 1000 apart
    probs = heldout.softmax(logits)
    assert probs.dtype == np.float64
    assert np.allclose(probs, [[1.0, 0.0], [1 / (1 + np.e), np.e / (1 + np.e)]], rtol=1e-12, atol=0)


def test_a_fresh_run_counts_training_seconds_from_zero_and_scores_every_step_of_a_short_epoch(clock):
    scoring, _, _ = _scoring(clock, train_images=120, evals_per_epoch=4)  # 3 steps (50, 50, 20): 3 scores
    assert scoring.at == {1, 2, 3}
    scoring.on_epoch_begin(0)
    clock.now += 1.5
    for batch in range(3):
        scoring.on_train_batch_end(batch)
    assert [(r["images_seen"], r["train_seconds"]) for r in scoring.rows] == [(50, 1.5), (100, 1.5), (120, 1.5)]


@pytest.mark.parametrize("loss", ["crossentropy", "clipped_crossentropy"])  # a logits model, a softmax model
def test_a_row_is_the_models_score_on_the_held_out_images_rounded_as_recorded(clock, loss):
    scoring, _, test = _scoring(clock, loss=loss)
    scoring.on_epoch_begin(0)
    clock.now += 1.23456
    for batch in range(2):
        scoring.on_train_batch_end(batch)
    outputs = scoring.model.predict(test.images, batch_size=10, verbose=0)  # no training since: the same model
    probs = heldout.softmax(outputs) if loss == "crossentropy" else outputs
    accuracy, log_loss_, correct = heldout.score(probs, test.labels)
    assert scoring.rows == [{"images_seen": 100, "epoch": 0.5, "train_seconds": 1.235, "heldout_correct": correct,
                             "heldout_accuracy": round(accuracy, 5), "heldout_loss": round(log_loss_, 5)}]
