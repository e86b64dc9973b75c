"""The lstm-step stage: its output schema, the cuDNN eligibility report, and the generic kernel's
numerics against a plain NumPy LSTM written here."""

import importlib.util
import json
from pathlib import Path

import jsonschema
import keras
import numpy as np
import pytest

from pipeline import environment, steps
from tests.project import run_stage, scratch_params

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "lstm-step.schema.json").read_text())
GPUS, GPU_STATUS = environment.gpu_devices()


def stage_report(tmp_path, backend=None):
    """Run `python -m pipeline.lstm_step` as DVC would, with 3 rounds at batch 8, in a scratch copy."""
    scratch_params(tmp_path, **{"train.batch_size": 8, "lstm_step.warmup_steps": 1, "lstm_step.rounds": 3,
                                "lstm_step.sgemm_n": 128, "paths.metrics_dir": str(tmp_path / "metrics")})
    env = {"KERAS_BACKEND": backend} if backend else {}
    code, _, err = run_stage(tmp_path, "pipeline.lstm_step", timeout=600, **env)
    assert code == 0, err[-3000:]
    return json.loads((tmp_path / "metrics" / "lstm-step.json").read_text())


def check_report(report, backend):
    jsonschema.validate(report, SCHEMA)
    assert report["backend"] == backend and report["batch_size"] == 8 and report["rounds"] == 3
    for name, length, features in (("sequential", 256, 50), ("parallel", 1024, 3)):
        core = report[name]
        assert (core["steps"], core["features"]) == (length, features)
        assert core["cudnn_ineligible_because"] == []
        cpu = core["cpu_generic"]
        assert len(cpu["warmup_ms"]) == 1
        # The derived figures must follow from the measured median, to the digits they are rounded to
        # (on a loaded machine a torch step can take seconds: 1.02 sequences/s is 1.017 rounded).
        assert cpu["sequences_per_s"] == pytest.approx(8 / (cpu["step_time_ms_median"] / 1000), rel=1e-3, abs=0.005)
        assert cpu["gflops"] == pytest.approx(core["train_step_gflop"] / (cpu["step_time_ms_median"] / 1000),
                                              rel=1e-2, abs=0.0005)
    if not GPUS:
        assert report["gpu_status"].startswith("no GPU visible")
        assert report["gpu_sgemm_gflops"] is None and report["gpu_device_name"] is None
        for name in ("sequential", "parallel"):
            assert report[name]["gpu_cudnn"] is None and report[name]["parity_ok"] is None


@pytest.mark.slow
def test_stage_on_cpu_writes_a_valid_report(tmp_path):
    check_report(stage_report(tmp_path), keras.config.backend())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_stage_runs_under_other_backends(tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (optional: pip install -r requirements-backends.txt)")
    check_report(stage_report(tmp_path, backend), backend)


def test_flop_count_formula():
    # sequential core at batch 100: 3 * 2 * 100 * 256 * 4*50 * (50 + 50)
    assert steps.lstm_train_flops(100, 256, 50, 50) == 3_072_000_000
    assert steps.lstm_train_flops(100, 1024, 3, 50) == 3 * 2 * 100 * 1024 * 200 * 53


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"activation": "relu"}, "activation is 'relu', cuDNN needs 'tanh'"),
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation is 'hard_sigmoid'"),
        ({"recurrent_dropout": 0.1}, "recurrent_dropout is 0.1, cuDNN needs 0"),
        ({"unroll": True}, "unroll is True"),
        ({"use_bias": False}, "use_bias is False"),
    ],
)
def test_layer_that_is_not_cudnn_eligible_is_reported(kwargs, reason):
    assert steps.cudnn_ineligibility(keras.layers.LSTM(50)) == []
    reasons = steps.cudnn_ineligibility(keras.layers.LSTM(50, **kwargs))
    assert len(reasons) == 1 and reason in reasons[0]


@pytest.mark.skipif(bool(GPUS), reason="checks the no-GPU behaviour")
def test_cudnn_path_never_falls_back_silently():
    # On a machine without cuDNN, asking for the cuDNN kernel must fail, not time the generic one.
    x = np.zeros((2, 4, 3), np.float32)
    model = steps.core_model(4, 3, 5, True, "adam")
    with pytest.raises(ValueError, match="use_cudnn=True was specified"):
        model.predict_on_batch(x)


def numpy_lstm_loss(x, y, kernel, recurrent, bias):
    """Plain NumPy LSTM (Keras gate order i, f, c, o) in float64; returns (last h, MSE loss)."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    return h, float(np.mean((h - y) ** 2))


def test_generic_kernel_matches_a_numpy_lstm():
    length, features, units, batch, seed = 6, 3, 4, 2, 0
    keras.utils.set_random_seed(seed)
    weights = [w + 0.1 for w in steps.core_model(length, features, units, False, "sgd").get_weights()]
    outputs, gradients = steps.outputs_and_gradients(steps.CPU, length, features, units, batch,
                                                          False, weights, seed)
    x, y = (keras.ops.convert_to_numpy(t).astype(np.float64) for t in steps.core_data(batch, length, features, units, seed))
    params = [w.astype(np.float64) for w in weights]
    expected_h, _ = numpy_lstm_loss(x, y, *params)
    np.testing.assert_allclose(outputs, expected_h, atol=1e-5)
    # Central differences of the float64 reference loss, for every weight.
    eps = 1e-6
    for w, grad in zip(params, gradients):
        numeric = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            saved = w[idx]
            w[idx] = saved + eps
            up = numpy_lstm_loss(x, y, *params)[1]
            w[idx] = saved - eps
            down = numpy_lstm_loss(x, y, *params)[1]
            w[idx] = saved
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, atol=1e-5)
        assert np.abs(numeric).max() > 1e-4  # the comparison is not vacuous


@pytest.mark.gpu
@pytest.mark.skipif(not GPUS, reason=GPU_STATUS)
def test_gpu_cudnn_path_matches_cpu_path():
    result = steps.parity(steps.CPU, GPUS[0], 64, 50, 50, 16, seed=0)
    assert result["parity_output_max_abs_diff"] < 1e-4
    assert result["parity_gradient_max_abs_diff"] < 1e-4
