"""The lstm-step stage: its output schema, the cuDNN eligibility report, and the generic kernel's
numerics against a plain NumPy LSTM written here."""

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline.lib import backends, environment, models, registry, steps
from pipeline.lib import metrics as metrics_contract

from tests.project import ROOT, run_stage, scratch_params

GPUS, GPU_STATUS = environment.gpu_devices()


def stage_report(tmp_path, backend=None):
    """Run `python -m pipeline.stages.lstm_step` as DVC would, with 3 rounds at batch 8, in a scratch copy."""
    scratch_params(tmp_path, **{"train.batch_size": 8, "lstm_step.warmup_steps": 1, "lstm_step.rounds": 3,
                                "lstm_step.cpu_sgemm_n": 128, "paths.metrics_dir": str(tmp_path / "metrics")})
    env = {"KERAS_BACKEND": backend} if backend else {}
    code, _, err = run_stage(tmp_path, "pipeline.stages.lstm_step", timeout=600, **env)
    assert code == 0, err[-3000:]
    return json.loads((tmp_path / "metrics" / "lstm-step.json").read_text())


def check_report(report, backend):
    metrics_contract.validate("lstm-step", report, "lstm-step")
    assert report["backend"] == backend and report["batch_size"] == 8 and report["rounds"] == 3
    for name, length, features in (("sequential", 256, 50), ("parallel", 1024, 3)):
        core = report[name]
        assert (core["steps"], core["features"]) == (length, features)
        assert core["cudnn_ineligible_because"] == []
        cpu = core["cpu_generic"]
        assert len(cpu["warmup_ms"]) == 1
        assert cpu["kernel"] == "generic"
        # The derived figures must follow from the measured median, to the digits they are rounded to
        # (on a loaded machine a torch step can take seconds: 1.02 sequences/s is 1.017 rounded).
        assert cpu["sequences_per_s"] == pytest.approx(8 / (cpu["step_time_ms_median"] / 1000), rel=1e-3, abs=0.005)
        assert cpu["gflops"] == pytest.approx(core["train_step_gflop"] / (cpu["step_time_ms_median"] / 1000),
                                              rel=1e-2, abs=0.0005)
    if GPUS:  # the GPU fields, checked where there is a GPU (scripts/gpu-check runs these tests there)
        assert report["gpu_device_name"] and report["gpu_status"].startswith(f"{len(GPUS)} GPU(s) visible")
        # A plausible peak: above 1 TFLOP/s and the CPU's, TF32 no slower than FP32 (beyond 10% noise),
        # and no LSTM step faster than the matmul it is made of.
        assert report["gpu_sgemm_gflops"] > max(1000, report["cpu_sgemm_gflops"])
        assert report["gpu_sgemm_tf32_gflops"] > 0.9 * report["gpu_sgemm_gflops"]
        for name in ("sequential", "parallel"):
            core = report[name]
            assert core["gpu_cudnn"] is not None, core["gpu_cudnn_status"]
            assert core["gpu_cudnn"]["kernel"] == "cudnn" and core["gpu_generic"]["kernel"] == "generic"
            assert 0 < core["gpu_cudnn"]["fraction_of_sgemm"] <= 1
            assert core["parity_ok"] is True, (core["parity_output_max_abs_diff"], core["parity_gradient_max_abs_diff"])
            assert core["gpu_speedup_vs_cpu"] == pytest.approx(
                cpu["step_time_ms_median"] / core["gpu_cudnn"]["step_time_ms_median"], rel=1e-2)
    else:
        assert report["gpu_status"].startswith("no GPU visible")
        assert report["gpu_sgemm_gflops"] is None and report["gpu_device_name"] is None
        for name in ("sequential", "parallel"):
            core = report[name]
            assert core["gpu_cudnn"] is None and core["gpu_cudnn_tf32"] is None and core["parity_ok"] is None
            assert core["gpu_cudnn_status"] == report["gpu_status"]


@pytest.mark.slow
def test_stage_writes_a_valid_report(tmp_path):
    check_report(stage_report(tmp_path), keras.config.backend())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_stage_runs_under_other_backends(tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (optional: pip install -r requirements-backends.txt)")
    check_report(stage_report(tmp_path, backend), backend)


def test_the_committed_report_has_the_current_schema():
    # metrics/lstm-step.json on main is the real output of `dvc repro` at that commit.
    metrics_contract.validate("lstm-step", json.loads((ROOT / "metrics" / "lstm-step.json").read_text()), "lstm-step")


def test_the_gpu_checks_that_gpu_check_selects_exist():
    from pipeline.gpu_check import command as gpu_check

    names = re.findall(r"^def (test_\w+)", Path(__file__).read_text(), re.M)
    for selected in gpu_check.GPU_TESTS.split(" or "):
        assert any(name.startswith(selected) for name in names), selected


def test_gpu_check_weighs_each_model_by_its_core_or_by_the_cores_mean_without_one(monkeypatch):
    from pipeline.gpu_check import protocol as gpu_check

    report = {m: {"cpu_generic": {"step_time_ms_median": ms}} for m, ms in (("sequential", 50.0), ("parallel", 150.0))}
    assert [gpu_check.work_ms(report, m, cpu=True) for m in ("sequential", "parallel")] == [50.0, 150.0]
    # registries of their own (the module's dict is swapped, not edited, so its order stays as it is)
    coreless = dataclasses.replace(registry.MODELS["sequential"], name="coreless", lstm_core=None)
    tutorial = {m: registry.MODELS[m] for m in ("sequential", "parallel")}
    monkeypatch.setattr(registry, "MODELS", {**tutorial, "coreless": coreless})
    assert gpu_check.work_ms(report, "coreless", cpu=True) == 100.0
    monkeypatch.setattr(registry, "MODELS", {"coreless": coreless})
    assert gpu_check.work_ms({}, "coreless", cpu=True) == 1.0  # no core timed at all: epochs alone weigh


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


def test_a_cudnn_time_is_refused_when_the_cudnn_kernel_does_not_run():
    # On the CPU there is no cuDNN: TensorFlow and JAX raise (Keras refuses use_cudnn=True), while
    # torch silently runs its fallback loop (on a GPU only the profiler shows it). Either way, no time.
    timing, status = steps.time_cudnn_step("sequential", 2, steps.CPU, 1, 3, seed=0)
    assert timing is None
    assert status.startswith("refused: ")
    if GPUS and keras.config.backend() != "torch":
        return  # with a GPU visible, JAX and TensorFlow may build the cuDNN op even on the CPU device and fail there
    if keras.config.backend() == "torch":
        assert "the generic kernel ran (torch: the model's weights are on the cpu device" in status
    else:
        assert "ValueError: use_cudnn=True was specified" in status


@pytest.mark.gpu
@pytest.mark.skipif(not GPUS or keras.config.backend() != "torch", reason="torch's silent fallback on a GPU")
def test_torch_silent_cudnn_fallback_on_the_gpu_is_refused(monkeypatch):
    # Keras's torch backend catches any error of its cuDNN call and runs the Python loop instead: make the
    # cuDNN call fail, as it would on an unsupported configuration, and the time must be refused.
    from keras.src.backend.torch import rnn

    def broken(*args, **kwargs):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")

    monkeypatch.setattr(rnn, "_cudnn_lstm", broken)
    timing, status = steps.time_cudnn_step("sequential", 8, GPUS[0], 1, 3, seed=0)
    assert timing is None and "the generic kernel ran (torch profiler" in status
    monkeypatch.undo()
    timing, status = steps.time_cudnn_step("sequential", 8, GPUS[0], 1, 3, seed=0)
    assert timing["kernel"] == "cudnn" and "aten::_cudnn_rnn" in status


@pytest.mark.skipif(keras.config.backend() != "torch", reason="the torch profiler's reading of a training step")
def test_the_torch_profiler_finds_no_cudnn_op_in_a_cpu_step():
    # lstm_kernel profiles only where the weights are on a GPU; its reading of the op names runs here
    # on the CPU (the sequential core: seconds; the parallel one took 28 s)
    step = steps.CoreStep("sequential", 2)
    assert backends.torch_profiled_kernel(step.model, step.x, step.y) == {
        "kernel": "generic", "evidence": "torch profiler: no cudnn_rnn op in a training step (Keras's own loop ran)"}


def test_every_timing_records_the_kernel_that_ran():
    step = steps.CoreStep("sequential", 2)
    kernel = step.kernel()
    assert kernel["kernel"] == "generic"
    assert {"torch": "cudnn_rnn runs only on CUDA tensors", "jax": "jaxpr holds", "tensorflow": "use_cudnn=False"}[
        keras.config.backend()] in kernel["evidence"]
    timing = steps.time_step(step, 1, 3)
    assert timing["kernel"] == "generic" and timing["kernel_evidence"] == kernel["evidence"]


@pytest.mark.parametrize("name", ["sequential", "parallel"])
def test_eligibility_describes_the_models_own_lstm_layer(monkeypatch, name):
    assert steps.eligibility(name) == []
    original = registry.MODELS[name]

    def with_recurrent_dropout():
        model = original.build()
        model.get_layer(models.LSTM).cell.recurrent_dropout = 0.1  # what the layer's get_config reports
        return model

    monkeypatch.setitem(registry.MODELS, name, dataclasses.replace(original, build=with_recurrent_dropout))
    assert steps.eligibility(name) == ["recurrent_dropout is 0.1, cuDNN needs 0"]


def test_float32_precision_is_pinned_and_restored():
    with pytest.raises(ValueError, match="float32 mode 'fp16'"):
        with backends.float32("fp16"):
            pass
    backend = keras.config.backend()
    if backend == "torch":
        import torch

        read = lambda: (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)  # noqa: E731
        expected = {"ieee": (False, False), "tf32": (True, True)}
    elif backend == "jax":
        import jax

        read = lambda: jax.config.jax_default_matmul_precision  # noqa: E731
        expected = {"ieee": "highest", "tf32": "high"}
    else:
        import tensorflow as tf

        read = tf.config.experimental.tensor_float_32_execution_enabled
        expected = {"ieee": False, "tf32": True}
    before = read()
    for mode, setting in expected.items():
        with backends.float32(mode):
            assert read() == setting, mode
        assert read() == before, mode


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
    # Under whichever backend runs the tests (KERAS_BACKEND=jax or torch on the GPU host), at full FP32.
    with backends.float32("ieee"):
        result = steps.parity(steps.CPU, GPUS[0], 64, 50, 50, 16, seed=0)
    assert result["parity_output_max_abs_diff"] < 1e-4
    assert result["parity_gradient_max_abs_diff"] < 1e-4
