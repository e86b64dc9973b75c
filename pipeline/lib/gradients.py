"""The loss gradient read the same way on every backend and on Keras 2: as the weight change of one
SGD step with learning rate 1 (w - (w - 1 * g) = g)."""

from __future__ import annotations

import numpy as np


def by_sgd_step(model, x, y) -> dict[str, list[np.ndarray]]:
    """Train `model` (compiled with SGD(learning_rate=1.0)) one step on (x, y); return, per layer name,
    the change of each of its weights, which is the gradient of the loss."""
    before = {layer.name: layer.get_weights() for layer in model.layers}
    model.train_on_batch(x, y)
    return {layer.name: [np.asarray(w0, np.float64) - np.asarray(w1, np.float64)
                         for w0, w1 in zip(before[layer.name], layer.get_weights())]
            for layer in model.layers}
