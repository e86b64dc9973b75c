"""The tutorial's two CNN-RNN models, layer for layer (../shared/reference/tutorial-cnn-rnn.txt).

- sequential: Conv2D(50, 3x3, same) -> ReLU -> MaxPool 2x2 -> Reshape(256, 50) -> LSTM(50) -> Dense(10)
  -> softmax; 22,110 parameters; reported 0.5927 test accuracy after 100 epochs.
- parallel: [Conv2D(50) -> ReLU -> MaxPool(same) -> Flatten -> Dense(100)] beside
  [Reshape(1024, 3) -> LSTM(50) -> Dense(100)], concatenated -> Dense(10, softmax); 1,299,410
  parameters; reported 0.10000001 after 10 epochs.

Both: Adam, categorical cross-entropy, accuracy. Only backend-agnostic `keras.*` is used here, so the
models run under the tensorflow, torch and jax backends alike, and under Keras 2 (`tf_keras`) for the
collapse study's comparison (pipeline/collapse.py binds `keras` to it before importing this module).

One loss, one meaning, on every backend. `BUILDERS` build each model up to its logits (the last
Dense); `classifier` puts the tutorial's softmax on top as a layer of its own, sharing the weights.
`build` compiles the model that training runs on:
- `crossentropy` trains the logits model with `CategoricalCrossentropy(from_logits=True)`. Keras 3's
  string loss "categorical_crossentropy" on the softmax output would not do: on TensorFlow it finds the
  logits behind the softmax and computes from them, but on JAX and torch it clips the probabilities to
  [1e-7, 1 - 1e-7], the tutorial-era dead gradient (docs/findings.md, "One loss on every backend").
- `clipped_crossentropy` trains the classifier on the clipped probabilities, on every backend.
The saved model, the one `evaluate` scores, is always the classifier: the tutorial's layers, softmax last.

The names come from pipeline/params.py (MODEL_NAMES, LOSSES); `BUILDERS` and `LOSSES` map them to code.

Layers are named so that pipeline/diagnostics.py can find them: `BRANCHES` groups the trainable
layers of each model, `RELU`, `LSTM` and `HEAD` name the layers it probes, `SOFTMAX` the output.
"""

from __future__ import annotations

import keras
from keras import layers

INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
LSTM_UNITS = 50
# The (steps, features) each model's LSTM reads: the pooled 16x16 grid of 50 channels, or the raw
# image as 1024 pixels of 3 values. pipeline/steps.py builds these cores on their own for timing.
LSTM_CORES = {"sequential": (16 * 16, 50), "parallel": (32 * 32, 3)}
REPORTED_TEST_ACCURACY = {"sequential": 0.5927, "parallel": 0.10000001}
REPORTED_EPOCHS = {"sequential": 100, "parallel": 10}
# Trainable layers per branch (the sequential model is one chain; it is cut at the same places).
BRANCHES = {
    "sequential": {"conv": ("conv",), "lstm": ("lstm",), "head": ("head",)},
    "parallel": {"conv": ("conv", "conv_dense"), "lstm": ("lstm", "lstm_dense"), "head": ("head",)},
}
RELU, LSTM, HEAD, SOFTMAX = "relu", "lstm", "head", "softmax"  # conv ReLU, LSTM, last Dense, output


def sequential() -> keras.Model:
    """The sequential model up to its logits."""
    image = keras.Input(INPUT_SHAPE)
    x = layers.Conv2D(50, (3, 3), strides=(1, 1), padding="same", name="conv")(image)
    x = layers.Activation("relu", name=RELU)(x)
    x = layers.MaxPooling2D((2, 2), name="pool")(x)
    x = layers.Reshape(LSTM_CORES["sequential"], name="to_sequence")(x)
    x = layers.LSTM(LSTM_UNITS, return_sequences=False, name=LSTM)(x)
    return keras.Model(inputs=image, outputs=layers.Dense(NUM_CLASSES, name=HEAD)(x), name="sequential")


def parallel() -> keras.Model:
    """The parallel model up to its logits (the tutorial's Dense(10, activation="softmax") is split in two)."""
    image = keras.Input(INPUT_SHAPE)
    conv = layers.Conv2D(50, (3, 3), strides=(1, 1), padding="same", name="conv")(image)
    conv = layers.Activation("relu", name=RELU)(conv)
    conv = layers.MaxPooling2D((2, 2), padding="same", name="pool")(conv)
    conv = layers.Dense(100, name="conv_dense")(layers.Flatten(name="flatten")(conv))
    # The raw image read as 1024 steps of 3 values (one pixel's RGB per step).
    seq = layers.Reshape(LSTM_CORES["parallel"], name="to_sequence")(image)
    seq = layers.Dense(100, name="lstm_dense")(layers.LSTM(LSTM_UNITS, return_sequences=False, name=LSTM)(seq))
    merged = layers.concatenate([conv, seq], name="concat")
    return keras.Model(inputs=image, outputs=layers.Dense(NUM_CLASSES, name=HEAD)(merged), name="parallel")


BUILDERS = {"sequential": sequential, "parallel": parallel}


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
    return classifier(BUILDERS[name]())


def build(name: str, learning_rate: float, loss: str = "crossentropy") -> keras.Model:
    """A fresh model compiled for training with `loss`: the logits model for `crossentropy`, the
    classifier for `clipped_crossentropy`. `classifier(model)` gives the tutorial's model either way.
    Seed with keras.utils.set_random_seed first for fixed weights."""
    logits = BUILDERS[name]()
    model = logits if FROM_LOGITS[loss] else classifier(logits)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=LOSSES[loss],
        metrics=["accuracy"],
    )
    return model
