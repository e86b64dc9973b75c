"""`python -m tests.model_weights MODEL OUT`: a saved Keras model's weights, in order, into OUT (.npz
arrays arr_0, arr_1, ...), read by a fresh process of the backend KERAS_BACKEND names."""

import sys

import keras
import numpy as np


def main(model: str, out: str) -> None:
    np.savez(out, *keras.saving.load_model(model).get_weights())


if __name__ == "__main__":
    main(*sys.argv[1:])
