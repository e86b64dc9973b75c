"""Held-out accuracy during training, and the time it takes to reach a target accuracy.

The train stage scores the held-out images (the evaluate stage's test split) at a fixed cadence,
`models.<model>.evals_per_epoch` times per epoch, and records a curve: images seen, training seconds,
held-out accuracy (and the correct count behind it) and loss. Nothing is ever decided from these scores
(no early stopping, no model selection): the curve only says when the run got where.

The training seconds exclude the scoring itself: `HeldOut` measures each evaluation and tells the
stage's StepTimer to leave it out (`StepTimer.exclude`), so steps, throughput and the curve's
seconds all read the training alone; the evaluations' total is reported apart (`heldout_eval_seconds`).

`to_target` reads a curve against a target accuracy. Whether a point reaches the target is decided in
counts: `correct >= needed(target, images)`, with the target taken as the decimal written in params.yaml.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import keras
import numpy as np
from sklearn.metrics import accuracy_score, log_loss

CURVE_COLUMNS = ("images_seen", "epoch", "train_seconds", "heldout_correct", "heldout_accuracy", "heldout_loss")


def score(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    """(accuracy, log loss, correct count) of class probabilities against integer labels, in float64 and
    renormalised (float32 softmax rows sum to 1 only within ~1e-7): the evaluate stage's arithmetic."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    predicted = probs.argmax(axis=1)
    labels_all = list(range(probs.shape[1]))
    return (float(accuracy_score(labels, predicted)), float(log_loss(labels, probs, labels=labels_all)),
            int((predicted == labels).sum()))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def eval_steps(steps_per_epoch: int, evals_per_epoch: int) -> frozenset[int]:
    """The 1-based steps of an epoch after which the held-out images are scored: `evals_per_epoch` of them,
    evenly spread, the last one the epoch's end (never more than one per step)."""
    evals = min(evals_per_epoch, steps_per_epoch)
    return frozenset(-(-k * steps_per_epoch // evals) for k in range(1, evals + 1))  # ceil, in whole steps


class HeldOut(keras.callbacks.Callback):
    """Score `images` after the steps of `eval_steps` in every epoch; the rows go to `self.rows`.

    `timer` is the run's StepTimer: each evaluation's duration is excluded from its clock, so that the
    curve's `train_seconds` (timer clock since its start, plus `seconds_before`, the training seconds of
    epochs done before a resume, so that a resumed run's seconds include its second compile) and the
    step times hold training alone. `from_logits`: the model being trained outputs logits (scored
    through a softmax) rather than probabilities. Scoring runs `predict`, which under the torch backend
    leaves the module in eval mode until the next epoch's fit(): the same math for these models, which
    have no dropout or batch normalisation.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, train_images: int, batch_size: int,
                 evals_per_epoch: int, eval_batch_size: int, from_logits: bool, timer, seconds_before: float = 0.0):
        super().__init__()
        self.images, self.labels = images, np.asarray(labels)
        self.train_images, self.batch_size = train_images, batch_size
        self.steps_per_epoch = -(-train_images // batch_size)
        self.at = eval_steps(self.steps_per_epoch, evals_per_epoch)
        self.eval_batch_size, self.from_logits = eval_batch_size, from_logits
        self.timer, self.seconds_before = timer, seconds_before
        self.rows: list[dict] = []
        self.eval_seconds = 0.0
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if step not in self.at:
            return
        trained = self.timer.clock() - self.timer.start
        began = time.perf_counter()
        outputs = self.model.predict(self.images, batch_size=self.eval_batch_size, verbose=0)
        accuracy, loss, correct = score(softmax(outputs) if self.from_logits else outputs, self.labels)
        seen = self.epoch * self.train_images + min(step * self.batch_size, self.train_images)
        self.rows.append({
            "images_seen": int(seen),
            "epoch": round(seen / self.train_images, 4),
            "train_seconds": round(self.seconds_before + trained, 3),
            "heldout_correct": correct,
            "heldout_accuracy": round(accuracy, 5),
            "heldout_loss": round(loss, 5),
        })
        spent = time.perf_counter() - began
        self.eval_seconds += spent
        self.timer.exclude(spent)


def needed(target: float, images: int) -> int:
    """The correct count that reaches `target` on `images` held-out images: ceil(target x images), with the
    target as the decimal written in params.yaml (0.3 is 3/10, not the float nearest to it)."""
    return math.ceil(Fraction(str(target)) * images)


def to_target(curve: list[dict], target: float, images: int, train_images: int) -> dict:
    """The first point of `curve` at or above `target` (decided in counts) as images, epochs and training
    seconds to target, or, not reached, None for each; with the best accuracy reached and where."""
    need = needed(target, images)
    first = next((row for row in curve if row["heldout_correct"] >= need), None)
    best = max(curve, key=lambda row: row["heldout_correct"], default=None)
    return {
        "target_accuracy": target,
        "target_reached": first is not None,
        "images_to_target": first["images_seen"] if first else None,
        "epochs_to_target": round(first["images_seen"] / train_images, 4) if first else None,
        "seconds_to_target": first["train_seconds"] if first else None,
        "best_heldout_accuracy": best["heldout_accuracy"] if best else None,
        "best_heldout_images_seen": best["images_seen"] if best else None,
    }
