"""How a registered model is compiled, trained on and saved: the loss, the optimizer and the softmax.

The models themselves are defined in pipeline/lib/registry.py (`registry.MODELS`: each builds its model up
to the logits). Only backend-agnostic `keras.*` is used here, so the models run under the tensorflow,
torch and jax backends alike, and under Keras 2 (`tf_keras`) for the collapse study's comparison
(pipeline/stages/collapse.py binds `keras` to it before importing this module).

One loss, one meaning, on every backend. `classifier` puts the tutorial's softmax on top of a model's
logits as a layer of its own, sharing the weights. `build` compiles the model that training runs on:
- `crossentropy` trains the logits model with `CategoricalCrossentropy(from_logits=True)`. Keras 3's
  string loss "categorical_crossentropy" on the softmax output would not do: on TensorFlow it finds the
  logits behind the softmax and computes from them, but on JAX and torch it clips the probabilities to
  [1e-7, 1 - 1e-7], the tutorial-era dead gradient (docs/findings.md, "One loss on every backend").
- `clipped_crossentropy` trains the classifier on the clipped probabilities, on every backend.
The saved model, the one `evaluate` scores, is always the classifier: the tutorial's layers, softmax last.

The loss names come from pipeline/lib/params.py (LOSSES); `LOSSES` here maps them to code.
"""

from __future__ import annotations

import keras
from keras import layers

# Re-exported from the registry for the code that builds, probes and scores models.
from pipeline.lib.registry import HEAD, INPUT_SHAPE, LSTM, LSTM_UNITS, NUM_CLASSES, RELU, SOFTMAX, MODELS  # noqa: F401

CLIP = 1e-7  # Keras's epsilon


@keras.saving.register_keras_serializable(package="pipeline")
def clipped_crossentropy(y_true, y_pred):
    """Cross-entropy the way standalone Keras 2.0-2.2 computed it on TensorFlow (the tutorial's era):
    from the softmax's probabilities clipped to [1e-7, 1 - 1e-7]. Where the true class's probability is
    below 1e-7 the loss is capped at 16.1 and the clip passes no gradient at all. Keras 3 on TensorFlow,
    and tf.keras since TF 2, compute it from the logits behind the softmax instead (`crossentropy`),
    whose gradient (p - y) never vanishes.
    """
    from keras import ops  # Keras 3 only; the Keras 2 arm of the collapse study refuses this loss

    p = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return -ops.sum(y_true * ops.log(ops.clip(p, CLIP, 1 - CLIP)), axis=-1)


LOSSES = {"crossentropy": keras.losses.CategoricalCrossentropy(from_logits=True),
          "clipped_crossentropy": clipped_crossentropy}
# The output each loss is computed from: the logits model's, or the classifier's probabilities.
FROM_LOGITS = {"crossentropy": True, "clipped_crossentropy": False}


def classifier(model: keras.Model) -> keras.Model:
    """The tutorial's model: `model` itself if it ends in the softmax, else its logits followed by a
    softmax layer, sharing every weight with `model`."""
    if model.layers[-1].name == SOFTMAX:
        return model
    probabilities = layers.Activation("softmax", name=SOFTMAX)(model.outputs[0])
    return keras.Model(inputs=model.inputs, outputs=probabilities, name=model.name)


def tutorial(name: str) -> keras.Model:
    """The tutorial's model `name`, uncompiled."""
    return classifier(MODELS[name].build())


def build(name: str, learning_rate: float, loss: str = "crossentropy") -> keras.Model:
    """A fresh model compiled for training with `loss`: the logits model for `crossentropy`, the
    classifier for `clipped_crossentropy`. `classifier(model)` gives the tutorial's model either way.
    Seed with keras.utils.set_random_seed first for fixed weights."""
    logits = MODELS[name].build()
    model = logits if FROM_LOGITS[loss] else classifier(logits)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=LOSSES[loss],
        metrics=["accuracy"],
    )
    return model
