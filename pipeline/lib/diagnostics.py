"""What a model's training looks like from inside: the measurements behind the collapse diagnosis.

`Probe` is a Keras callback for `train.fit(callbacks=...)`. Before the first step and every `every`
steps it measures, on a fixed probe batch of training images:

- `probe_loss` (uncapped cross-entropy from the logits; Keras clips its own at -log(1e-7) = 16.1),
  `probe_accuracy` and `majority_share`, the share of probe images predicted as the most frequent
  class: 1.0 is a model that answers one class whatever the input (10% accuracy on CIFAR-10); and
  `clipped_share`, the share of probe images whose true class has probability outside
  [1e-7, 1 - 1e-7], to which `models.clipped_crossentropy` (the tutorial-era loss) passes no gradient;
- `grad_norm_<branch>`: the L2 norm of the training loss's gradient over each branch's weights
  (`registry.Model.branches`), read backend-agnostically on a clone (pipeline/lib/gradients.py);
- `sat_input`, `sat_forget`, `sat_cell`, `sat_output`, `sat_cell_state`: the share of the LSTM's
  sigmoid gate outputs within `SATURATION` of 0 or 1, and of its tanh outputs (candidate `cell`, and
  tanh of the cell state) within `SATURATION` of -1 or 1, over all probe images and time steps
  (a NumPy replay of the layer with its current weights; the gate order is Keras's i, f, c, o);
- `dead_relu_channels`: the share of the conv branch's ReLU channels that output 0 for every probe
  image at every position, and `relu_zero_share`, the share of all its outputs that are 0;
- `logit_abs_max` and `logit_range_mean`: the largest |logit| and the mean (max - min) logit per image
  before the softmax;
- `first_nonfinite_step`: the first training step whose loss was NaN or inf (None: none was).

At the end of every epoch it also scores `test_accuracy` on the held-out images it was given.

Only the Keras API common to Keras 3 (`keras`) and Keras 2 (`tf_keras`) is used, so the collapse
study runs the same probe under both.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pandas as pd

from pipeline.lib import gradients, models
from pipeline.lib.params import COLLAPSED_BELOW

SATURATION = 1e-3  # "saturated": within this of the activation's limits


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def lstm_saturation(x: np.ndarray, kernel, recurrent, bias, eps: float = SATURATION) -> tuple[np.ndarray, dict]:
    """Replay an LSTM with these weights over `x` (batch, steps, features): its last output, and the
    share of saturated gate outputs."""
    units = recurrent.shape[0]
    batch, steps, _ = x.shape
    h = np.zeros((batch, units), np.float32)
    c = np.zeros((batch, units), np.float32)
    counts = dict.fromkeys(("input", "forget", "cell", "output", "cell_state"), 0)
    projected = x @ kernel + bias  # (batch, steps, 4 units): the input part of every step at once
    for t in range(steps):
        z = projected[:, t] + h @ recurrent
        i, f = _sigmoid(z[:, :units]), _sigmoid(z[:, units:2 * units])
        g, o = np.tanh(z[:, 2 * units:3 * units]), _sigmoid(z[:, 3 * units:])
        c = f * c + i * g
        tanh_c = np.tanh(c)
        h = o * tanh_c
        for name, gate in (("input", i), ("forget", f), ("output", o)):
            counts[name] += int(np.count_nonzero((gate < eps) | (gate > 1 - eps)))
        for name, value in (("cell", g), ("cell_state", tanh_c)):
            counts[name] += int(np.count_nonzero(np.abs(value) > 1 - eps))
    total = batch * steps * units
    return h, {f"sat_{name}": count / total for name, count in counts.items()}


def logit_stats(logits: np.ndarray, labels: np.ndarray) -> dict:
    z = logits.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    predicted = z.argmax(axis=1)
    true_log_prob = log_probs[np.arange(len(labels)), labels]
    return {
        "probe_loss": float(-true_log_prob.mean()),
        "probe_accuracy": float((predicted == labels).mean()),
        "majority_share": float(np.bincount(predicted, minlength=z.shape[1]).max() / len(labels)),
        "clipped_share": float(
            ((true_log_prob < np.log(models.CLIP)) | (true_log_prob > np.log1p(-models.CLIP))).mean()
        ),
        "logit_abs_max": float(np.abs(z).max()),
        "logit_range_mean": float((z.max(axis=1) - z.min(axis=1)).mean()),
    }


class Probe(keras.callbacks.Callback):
    """Diagnostics of `name`'s model during `train.fit`; the rows are in `self.rows`, one per probe."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, every: int,
                 test_images: np.ndarray, test_labels: np.ndarray, steps_per_epoch: int):
        super().__init__()
        self.name, self.images, self.labels, self.every = name, images, labels, every
        self.targets = keras.utils.to_categorical(labels, models.NUM_CLASSES)
        self.test_images, self.test_labels = test_images, test_labels
        self.steps_per_epoch = steps_per_epoch
        self.step = 0
        self.first_nonfinite_step = None
        self.rows: list[dict] = []
        self.epochs: list[dict] = []
        self._inside = self._clone = None

    # Built on first use, once per run: a sub-model exposing the probed activations, and a clone
    # compiled with SGD(lr=1), whose weight change over one step is the gradient.
    def _tools(self):
        if self._inside is None:
            m = self.model
            self._inside = keras.Model(m.inputs, [m.get_layer(models.RELU).output, m.get_layer(models.LSTM).input,
                                                  m.get_layer(models.HEAD).input])
            self._clone = keras.models.clone_model(m)
            self._clone.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=m.loss)  # the loss it trains on
        return self._inside, self._clone

    def gradient_norms(self) -> dict:
        _, clone = self._tools()
        clone.set_weights(self.model.get_weights())
        by_layer = gradients.by_sgd_step(clone, self.images, self.targets)
        return {f"grad_norm_{branch}": math.sqrt(sum(float(np.sum(g ** 2)) for n in names for g in by_layer[n]))
                for branch, names in models.MODELS[self.name].branches.items()}

    def measure(self) -> dict:
        # Reading `self.model` first matters under JAX: during fit the weights live in the trainer's
        # state, and Keras writes them back into the (shared) variables only when a callback reads
        # `self.model`. Without it the sub-model below would run on purged variables.
        model = self.model
        inside, _ = self._tools()
        relu, lstm_in, head_in = inside.predict(self.images, batch_size=len(self.images), verbose=0)
        kernel, bias = model.get_layer(models.HEAD).get_weights()
        lstm = model.get_layer(models.LSTM).get_weights()
        alive = relu.reshape(-1, relu.shape[-1]).max(axis=0) > 0
        return {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 4),
            **logit_stats(head_in @ kernel + bias, self.labels),
            **self.gradient_norms(),
            **lstm_saturation(lstm_in.astype(np.float32), *lstm)[1],
            "dead_relu_channels": float(1 - alive.mean()),
            "relu_zero_share": float((relu == 0).mean()),
        }

    def on_train_begin(self, logs=None):
        if self.step == 0 and not self.rows:  # fit runs once per epoch; probe the initial weights once
            self.rows.append(self.measure())

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        loss = (logs or {}).get("loss")
        if self.first_nonfinite_step is None and loss is not None and not np.isfinite(float(loss)):
            self.first_nonfinite_step = self.step
        if self.step % self.every == 0:
            self.rows.append(self.measure())

    def on_epoch_end(self, epoch, logs=None):
        outputs = self.model.predict(self.test_images, batch_size=500, verbose=0)  # logits or probabilities
        self.epochs.append({"epoch": epoch + 1, "loss": float((logs or {}).get("loss", np.nan)),
                            "accuracy": float((logs or {}).get("accuracy", np.nan)),
                            "test_accuracy": float((outputs.argmax(axis=1) == self.test_labels).mean())})


def summarize_runs(arm_result: dict) -> dict:
    """A study arm's metrics from its runs' probes and per-epoch scores: per seed, and mean/std over seeds."""
    per_seed, finals = {}, []
    for run in arm_result["runs"]:
        probes = pd.DataFrame(run["probes"])
        final = run["epochs"][-1]["test_accuracy"]
        finals.append(final)
        per_seed[str(run["seed"])] = {
            "test_accuracy": round(final, 4),
            "test_accuracy_by_epoch": [round(e["test_accuracy"], 4) for e in run["epochs"]],
            "first_epoch_loss": round(run["epochs"][0]["loss"], 4),
            "collapsed": final < COLLAPSED_BELOW,
            "first_nonfinite_step": run["first_nonfinite_step"],
            "logit_abs_max": round(float(probes["logit_abs_max"].max()), 2),
            "dead_relu_channels_max": round(float(probes["dead_relu_channels"].max()), 4),
            "sat_forget_max": round(float(probes["sat_forget"].max()), 4),
            "majority_share_max": round(float(probes["majority_share"].max()), 4),
        }
    return {
        "keras_version": arm_result["keras_version"],
        "runs": len(finals),
        "collapsed_runs": sum(s["collapsed"] for s in per_seed.values()),
        "nonfinite_runs": sum(s["first_nonfinite_step"] is not None for s in per_seed.values()),
        "test_accuracy_mean": round(float(np.mean(finals)), 4),
        "test_accuracy_std": round(float(np.std(finals, ddof=1)), 4) if len(finals) > 1 else None,
        "per_seed": per_seed,
    }
