"""The collapse diagnostics against independent computations, and the collapse stage under both Kerases."""

import json

import keras
import numpy as np
import pytest

from pipeline.lib import diagnostics, models, params, training
from tests.project import run_stage, scratch_params
from tests.splits import synthetic_split


def test_lstm_replay_matches_keras_and_counts_saturation():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(4, 7, 3)).astype(np.float32)
    layer = keras.layers.LSTM(5)
    expected = keras.ops.convert_to_numpy(layer(x))
    h, sat = diagnostics.lstm_saturation(x, *layer.get_weights())
    np.testing.assert_allclose(h, expected, atol=1e-5)  # same gate order and activations as Keras
    assert set(sat) == {"sat_input", "sat_forget", "sat_cell", "sat_output", "sat_cell_state"}
    assert all(0 <= v < 0.5 for v in sat.values())  # unit-scale inputs: mostly unsaturated

    kernel, recurrent, bias = layer.get_weights()
    _, zero = diagnostics.lstm_saturation(x, kernel * 0, recurrent * 0, bias * 0)
    assert all(v == 0 for v in zero.values())  # every gate at 0.5, every tanh at 0
    _, flooded = diagnostics.lstm_saturation(x, kernel * 0, recurrent * 0, bias * 0 + 50)
    assert flooded["sat_input"] == flooded["sat_forget"] == flooded["sat_output"] == flooded["sat_cell"] == 1.0


def test_logit_stats():
    logits = np.array([[10.0, 0, 0], [0, 10, 0], [10, 0, -5], [10, 0, 0]])
    stats = diagnostics.logit_stats(logits, np.array([0, 1, 1, 0]))
    assert stats["probe_accuracy"] == 0.75 and stats["majority_share"] == 0.75
    assert stats["logit_abs_max"] == 10 and stats["logit_range_mean"] == pytest.approx(11.25)
    assert stats["clipped_share"] == 0  # every true-class probability inside [1e-7, 1 - 1e-7]
    sure = diagnostics.logit_stats(np.array([[40.0, 0, 0], [40.0, 0, 0], [1.0, 0, 0]]), np.array([0, 1, 1]))
    assert sure["clipped_share"] == pytest.approx(2 / 3)  # right and sure, wrong and sure: no gradient either way
    assert stats["probe_loss"] == pytest.approx((3 * np.log(1 + 2 * np.exp(-10)) + (10 + np.log(1 + np.exp(-10) + np.exp(-15)))) / 4)


@pytest.fixture(scope="module")
def split():
    return synthetic_split(100, seed=7, normalize="raw")


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="the reference gradient uses tf.GradientTape")
def test_gradient_norms_per_branch_match_gradient_tape(split):
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    model = models.build("parallel", 0.001)
    probe = diagnostics.Probe("parallel", split.images[:20] / 255, split.labels[:20], 1, split.images[:10], split.labels[:10], 1)
    probe.set_model(model)
    norms = probe.gradient_norms()
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(probe.targets, model(probe.images), from_logits=True)
        loss = tf.reduce_mean(loss)
    grads = dict(zip([v.path for v in model.trainable_variables], tape.gradient(loss, model.trainable_variables)))
    for branch, names in models.MODELS["parallel"].branches.items():
        expected = np.sqrt(sum(float(tf.reduce_sum(g ** 2)) for path, g in grads.items() if path.split("/")[0] in names))
        assert norms[f"grad_norm_{branch}"] == pytest.approx(expected, rel=1e-3), branch


def test_probe_during_fit(split):
    probe = diagnostics.Probe("parallel", split.images[:20], split.labels[:20], 1, split.images[:30], split.labels[:30], 2)
    training.fit("parallel", split, seed=0, batch_size=50, learning_rate=0.001, epochs=2, verbose=0, callbacks=[probe])
    assert [r["step"] for r in probe.rows] == [0, 1, 2, 3, 4]  # the initial weights, then every step
    assert [r["epoch"] for r in probe.rows] == [0, 0.5, 1, 1.5, 2]
    assert [e["epoch"] for e in probe.epochs] == [1, 2]
    assert all(0 <= e["test_accuracy"] <= 1 for e in probe.epochs)
    for row in probe.rows:
        assert all(np.isfinite(v) for v in row.values())
        assert row["grad_norm_conv"] > 0 and row["grad_norm_lstm"] > 0 and row["grad_norm_head"] > 0
    assert probe.rows[0]["sat_forget"] > 0.3  # raw 0-255 pixels saturate the LSTM gates from the start
    assert probe.first_nonfinite_step is None


@pytest.mark.slow
def test_collapse_stage_runs_both_kerases(tmp_path, tiny_archive):
    archive, _ = tiny_archive
    scratch_params(tmp_path, **{"paths.archive": str(archive), "preprocess.train_limit": 0, "preprocess.test_limit": 0,
                                "collapse.seeds": 2, "collapse.epochs": 1,
                                "collapse.train_limit": 0, "collapse.test_limit": 0, "collapse.probe_images": 20,
                                "collapse.probe_every": 2})
    for module in ("pipeline.stages.preprocess", "pipeline.stages.collapse"):
        code, out, err = run_stage(tmp_path, module, timeout=600)
        assert code == 0, err[-2000:]
    assert "collapse: keras2 (keras 2." in out and "seed 2/2" in out  # progress
    metrics = json.loads((tmp_path / "metrics" / "collapse.json").read_text())
    assert metrics["keras3"]["keras_version"].startswith("3.") and metrics["keras2"]["keras_version"].startswith("2.")
    for arm in params.COLLAPSE_ARMS:
        assert metrics[arm]["runs"] == 2 and set(metrics[arm]["per_seed"]) == {"0", "1"}
        for seed in ("0", "1"):
            run = metrics[arm]["per_seed"][seed]
            assert run["collapsed"] == (run["test_accuracy"] < params.COLLAPSED_BELOW)
            assert len(run["test_accuracy_by_epoch"]) == 1
            rows = (tmp_path / "plots" / "collapse" / f"{arm}-seed{seed}.csv").read_text().splitlines()
            assert len(rows) == 1 + 1 + 200 // 100 // 2  # header, the initial probe, one every 2 of 2 steps
