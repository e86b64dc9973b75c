"""The models this benchmark trains: one entry each, the one place a model is defined.

An entry is a builder, the model up to its logits (the last Dense), decorated with `@register`, which
records beside it what the rest of the pipeline needs: its LSTM core for the lstm-step stage (or none),
the tutorial's reported test accuracy and epochs (where the tutorial has the model), its chart colour,
its trainable layers grouped by branch (for pipeline/lib/diagnostics.py) and how many batches the speed
gate's fit-loop benchmark gives it (pipeline/lib/speed.py). Its name is the builder's name.

Everything that lists models derives the list from `MODELS`: params.yaml's `models:` map must hold
exactly these names (pipeline/lib/params.py), dvc.yaml's `train` and `evaluate` stages run `foreach` over
that map, and the gate, history, report, gpu-check, lstm-step and the tests iterate it. Adding a
model is a builder here plus its entry in params.yaml, and its curves in dvc.yaml's top-level plots
(docs/add-a-model.md).

Keras is imported when a model is built, not when the registry is read, so the tools that only list
models (the gate, history, report, lockcheck) start without it; under the collapse study's Keras 2 arm
`import keras` inside a builder finds Keras 2 (pipeline/lib/keras2.py binds it first).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Callable

INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
LSTM_UNITS = 50
# The layer names pipeline/lib/diagnostics.py probes: conv ReLU, LSTM, last Dense; and the softmax output.
RELU, LSTM, HEAD, SOFTMAX = "relu", "lstm", "head", "softmax"


@dataclasses.dataclass(frozen=True)
class Reported:
    """What the Keras tutorial reported for a model: its test accuracy after `epochs` epochs."""

    accuracy: float
    epochs: int


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    build: Callable  # () -> keras.Model, up to the logits
    colour: str  # its line colour on the history page
    branches: types.MappingProxyType  # branch -> its trainable layers' names, in order
    fit_loop_batches: int  # batches per step of the speed gate's `<name> fit loop` benchmark
    lstm_core: tuple[int, int] | None = None  # (steps, features) of its LSTM(LSTM_UNITS) core, or None
    reported: Reported | None = None


MODELS: dict[str, Model] = {}


def register(*, colour: str, branches: dict, fit_loop_batches: int, lstm_core: tuple[int, int] | None = None,
             reported: Reported | None = None):
    """Decorator: add the decorated builder to `MODELS` under its function name."""

    def add(build):
        if build.__name__ in MODELS:
            raise ValueError(f"model {build.__name__!r} is registered twice")
        MODELS[build.__name__] = Model(build.__name__, build, colour, types.MappingProxyType(dict(branches)),
                                       fit_loop_batches, lstm_core, reported)
        return build

    return add


def names() -> tuple[str, ...]:
    """Every registered model's name, in registration order."""
    return tuple(MODELS)


def lstm_cores() -> dict[str, tuple[int, int]]:
    """{model: (steps, features)} of every model that has an LSTM core."""
    return {name: m.lstm_core for name, m in MODELS.items() if m.lstm_core is not None}


# ---------------------------------------------------------------- the tutorial's models
# ../shared/reference/tutorial-cnn-rnn.txt; tests/test_models.py checks their layers and parameter counts.


@register(colour="#1f77b4", lstm_core=(16 * 16, 50), reported=Reported(0.5927, 100), fit_loop_batches=6,
          branches={"conv": ("conv",), "lstm": ("lstm",), "head": ("head",)})
def sequential():
    """Conv2D(50, 3x3, same) -> ReLU -> MaxPool 2x2 -> Reshape(256, 50) -> LSTM(50) -> Dense(10): 22,110
    parameters (the tutorial's softmax is put on top by `models.classifier`)."""
    import keras
    from keras import layers

    image = keras.Input(INPUT_SHAPE)
    x = layers.Conv2D(50, (3, 3), strides=(1, 1), padding="same", name="conv")(image)
    x = layers.Activation("relu", name=RELU)(x)
    x = layers.MaxPooling2D((2, 2), name="pool")(x)
    x = layers.Reshape(MODELS["sequential"].lstm_core, name="to_sequence")(x)  # the pooled 16x16 grid, 50 channels
    x = layers.LSTM(LSTM_UNITS, return_sequences=False, name=LSTM)(x)
    return keras.Model(inputs=image, outputs=layers.Dense(NUM_CLASSES, name=HEAD)(x), name="sequential")


@register(colour="#d62728", lstm_core=(32 * 32, 3), reported=Reported(0.10000001, 10), fit_loop_batches=3,
          branches={"conv": ("conv", "conv_dense"), "lstm": ("lstm", "lstm_dense"), "head": ("head",)})
def parallel():
    """[Conv2D(50) -> ReLU -> MaxPool(same) -> Flatten -> Dense(100)] beside [Reshape(1024, 3) -> LSTM(50)
    -> Dense(100)], concatenated -> Dense(10): 1,299,410 parameters (the tutorial's
    Dense(10, activation="softmax") is split in two: the softmax is `models.classifier`'s)."""
    import keras
    from keras import layers

    image = keras.Input(INPUT_SHAPE)
    conv = layers.Conv2D(50, (3, 3), strides=(1, 1), padding="same", name="conv")(image)
    conv = layers.Activation("relu", name=RELU)(conv)
    conv = layers.MaxPooling2D((2, 2), padding="same", name="pool")(conv)
    conv = layers.Dense(100, name="conv_dense")(layers.Flatten(name="flatten")(conv))
    # The raw image read as 1024 steps of 3 values (one pixel's RGB per step).
    seq = layers.Reshape(MODELS["parallel"].lstm_core, name="to_sequence")(image)
    seq = layers.Dense(100, name="lstm_dense")(layers.LSTM(LSTM_UNITS, return_sequences=False, name=LSTM)(seq))
    merged = layers.concatenate([conv, seq], name="concat")
    return keras.Model(inputs=image, outputs=layers.Dense(NUM_CLASSES, name=HEAD)(merged), name="parallel")
