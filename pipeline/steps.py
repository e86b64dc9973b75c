"""One training step of each model's LSTM(50) core, built the same way for every measurement of it:
the lstm-step stage and the speed gate's worker (pipeline/ab_worker.py) both time these.

A core is Input(steps, features) -> LSTM(50), trained with Adam(0.001) on a mean-squared-error loss
against fixed random targets; `models.LSTM_CORES` gives each model's (steps, features).
"""

from __future__ import annotations

import keras
import numpy as np

from pipeline import models

# Not "cpu:0": under the torch backend (Keras 3.15) building a model inside keras.device("cpu:0")
# copies each variable off its Parameter and fails on integer variables; "cpu" works on all backends.
CPU = "cpu"


def lstm_train_flops(batch: int, steps: int, features: int, units: int) -> int:
    """FLOPs of one LSTM training step, counting matrix products only.

    Per sequence and time step the four gates take x_t @ W (features x 4*units) and h @ U
    (units x 4*units): 2 * 4*units * (features + units) FLOPs, a multiply-add counted as 2.
    Backward computes gradients for the activations and for the weights, each as costly as the
    forward products, so a training step is 3x the forward. The elementwise gate arithmetic (about
    10 * units per step, under 4% here) and the Adam update (a few FLOPs per weight) are left out.
    """
    forward = 2 * batch * steps * 4 * units * (features + units)
    return 3 * forward


def core_model(steps: int, features: int, units: int, use_cudnn, optimizer) -> keras.Model:
    inputs = keras.Input((steps, features))
    model = keras.Model(inputs, keras.layers.LSTM(units, use_cudnn=use_cudnn)(inputs), name="lstm_core")
    model.compile(optimizer=optimizer, loss="mean_squared_error")
    return model


def core_data(batch: int, steps: int, features: int, units: int, seed: int):
    """Seeded inputs (batch, steps, features) and targets (batch, units) as backend tensors."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, features), dtype=np.float32)
    y = rng.uniform(-0.5, 0.5, (batch, units)).astype(np.float32)
    return keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)


def make_train_step(core: str, batch: int, device: str = CPU, use_cudnn=False, seed: int = 0):
    """Build `core`'s LSTM on `device`; return a function that runs one training step and returns its loss.

    The gate's A/B worker builds each rev's steps through this one function, so keep its signature.
    """
    steps, features = models.LSTM_CORES[core]
    with keras.device(device):
        keras.utils.set_random_seed(seed)
        model = core_model(steps, features, models.LSTM_UNITS, use_cudnn, keras.optimizers.Adam(0.001))
        x, y = core_data(batch, steps, features, models.LSTM_UNITS, seed)

    def train_step() -> float:
        with keras.device(device):
            return model.train_on_batch(x, y)  # the loss as a float: the step has completed

    return train_step
