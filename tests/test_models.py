"""The two models against the tutorial's printed model summaries (batch dimension omitted)."""

import pytest

from pipeline import models

SUMMARIES = {
    "sequential": (
        22_110,
        [
            ("Conv2D", (32, 32, 50), 1_400),
            ("Activation", (32, 32, 50), 0),
            ("MaxPooling2D", (16, 16, 50), 0),
            ("Reshape", (256, 50), 0),
            ("LSTM", (50,), 20_200),
            ("Dense", (10,), 510),
            ("Activation", (10,), 0),
        ],
    ),
    "parallel": (
        1_299_410,
        [
            ("InputLayer", (32, 32, 3), 0),
            ("Conv2D", (32, 32, 50), 1_400),
            ("Activation", (32, 32, 50), 0),
            ("MaxPooling2D", (16, 16, 50), 0),
            ("Reshape", (1024, 3), 0),
            ("Flatten", (12_800,), 0),
            ("LSTM", (50,), 10_800),
            ("Dense", (100,), 1_280_100),
            ("Dense", (100,), 5_100),
            ("Concatenate", (200,), 0),
            ("Dense", (10,), 2_010),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_layers_shapes_and_parameter_counts_match_the_tutorial(name):
    model = models.build(name, learning_rate=0.001)
    total, expected = SUMMARIES[name]
    assert model.count_params() == total
    got = [(type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers]
    assert got == expected


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_compiled_like_the_tutorial(name):
    model = models.build(name, learning_rate=0.001)
    assert type(model.optimizer).__name__ == "Adam"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    assert model.loss == "categorical_crossentropy"
    assert model.layers[-1].get_config()["activation"] == "softmax"
