"""The two models against the tutorial's printed model summaries (batch dimension omitted)."""

import numpy as np
import pytest

from pipeline.lib import models, params, registry

SUMMARIES = {
    "sequential": (
        22_110,
        [
            ("InputLayer", (32, 32, 3), 0),
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
            ("Activation", (10,), 0),  # the tutorial's Dense(10, activation="softmax"), split in two
        ],
    ),
}


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_layers_shapes_and_parameter_counts_match_the_tutorial(name):
    model = models.tutorial(name)
    total, expected = SUMMARIES[name]
    assert model.count_params() == total
    got = [(type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers]
    assert got == expected


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_compiled_like_the_tutorial(name):
    import keras

    model = models.build(name, learning_rate=0.001)
    assert type(model.optimizer).__name__ == "Adam"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)
    # Categorical cross-entropy, computed from the logits on every backend: the model trained is the
    # tutorial's up to its last Dense, and the classifier puts the softmax back on the same weights.
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy) and model.loss.from_logits
    assert model.layers[-1].name == models.HEAD
    tutorial = models.classifier(model)
    assert tutorial.layers[-1].get_config()["activation"] == "softmax"
    assert [w.path for w in tutorial.weights] == [w.path for w in model.weights]
    x = np.random.default_rng(0).uniform(0, 255, (4, *models.INPUT_SHAPE)).astype(np.float32)
    np.testing.assert_allclose(tutorial.predict_on_batch(x), keras.ops.convert_to_numpy(
        keras.ops.softmax(model.predict_on_batch(x))), rtol=1e-5, atol=1e-7)
    clipped = models.build(name, 0.001, "clipped_crossentropy")
    assert clipped.layers[-1].name == models.SOFTMAX and models.classifier(clipped) is clipped


def test_clipped_crossentropy_matches_keras_until_the_clip_then_passes_no_gradient():
    tf = pytest.importorskip("tensorflow", reason="the reference gradient uses tf.GradientTape")
    import keras

    y = np.eye(3, dtype=np.float32)[[0, 1]]
    moderate = tf.constant([[2.0, 1.0, 0.5], [0.1, 0.2, 0.3]])
    probs = tf.nn.softmax(moderate)
    np.testing.assert_allclose(models.clipped_crossentropy(y, probs),
                               keras.losses.categorical_crossentropy(y, probs), rtol=1e-5)

    huge = tf.Variable([[0.0, 40.0, 0.0], [0.0, 0.0, 40.0]])  # true class far below 1e-7: wrong and sure
    with tf.GradientTape(persistent=True) as tape:
        p = tf.nn.softmax(huge)
        clipped = tf.reduce_sum(models.clipped_crossentropy(y, p))
        from_logits = tf.reduce_sum(keras.losses.categorical_crossentropy(y, huge, from_logits=True))
    assert float(clipped) == pytest.approx(2 * -np.log(1e-7), rel=1e-4)  # capped at 16.1 per image
    assert float(tf.reduce_max(tf.abs(tape.gradient(clipped, huge)))) == 0.0
    assert float(tf.reduce_max(tf.abs(tape.gradient(from_logits, huge)))) == pytest.approx(1.0, abs=1e-6)


def test_models_build_with_either_loss_and_the_clipped_one_survives_save_and_load(tmp_path):
    import keras

    model = models.build("sequential", 0.001, "clipped_crossentropy")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.loss is models.clipped_crossentropy or getattr(loaded.loss, "__name__", "") == "clipped_crossentropy"


def test_the_code_maps_cover_exactly_the_names_params_allows():
    # params.py holds the one list of loss names and models.py maps each to code; the registry holds the models
    assert tuple(models.LOSSES) == params.LOSSES
    assert registry.names()[:2] == ("sequential", "parallel") and tuple(params.load().models) == registry.names()
    assert {n: (registry.MODELS[n].reported, registry.MODELS[n].lstm_core) for n in ("sequential", "parallel")} == {
        "sequential": (registry.Reported(0.5927, 100), (256, 50)), "parallel": (registry.Reported(0.10000001, 10), (1024, 3))}
    for name, entry in registry.MODELS.items():  # every branch names trainable layers the model has, each once
        layers = [layer.name for layer in entry.build().layers if layer.trainable_weights]
        assert sorted(n for names in entry.branches.values() for n in names) == sorted(layers), name


def test_a_model_is_registered_once():
    with pytest.raises(ValueError, match="model 'sequential' is registered twice"):
        registry.register(colour="#000000", branches={}, fit_loop_batches=2)(registry.sequential)


def test_evaluate_takes_the_models_registry_name_from_the_stage_not_from_keras():
    # a builder that names its keras.Model otherwise (or not at all) still gets its registry entry's record
    import keras

    from pipeline.stages import evaluate
    from tests.splits import synthetic_split

    tutorial = models.tutorial("sequential")
    renamed = keras.Model(tutorial.inputs, tutorial.outputs, name="something_else")
    metrics, predicted = evaluate.evaluate(renamed, synthetic_split(20, seed=0, normalize="raw"), 10, "sequential")
    assert (metrics["reported_test_accuracy"], metrics["reported_epochs"], metrics["test_images"]) == (0.5927, 100, 20)
    assert predicted.shape == (20,)


def test_no_module_outside_the_registry_names_a_model():
    # every list of models derives from pipeline/lib/registry.py; a model's name as a string elsewhere in the
    # package is a list that would miss a model added there
    import ast

    from tests.project import ROOT

    named = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if path.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in registry.names():
                named.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert named == []
