"""Each model's LSTM(50) core on its own: one training step, built the same way for every measurement
of it (the lstm-step stage and `make bench`; the speed gate timed it too until b811c27), its timing,
its FLOPs, CPU/GPU parity, and the lstm-step stage's report of them all (`measure`).

A core is Input(steps, features) -> LSTM(50), trained with Adam(0.001) on a mean-squared-error loss
against fixed random targets; `registry.lstm_cores()` gives each model's (steps, features). Every timing
records the kernel that actually ran (pipeline/lib/backends.py), and a cuDNN time is reported only when
the cuDNN kernel ran.
"""

from __future__ import annotations

import re
import time

import keras
import numpy as np

from pipeline.lib import backends, environment, gradients, models, params, registry, stats

# Not "cpu:0": under the torch backend (Keras 3.15) building a model inside keras.device("cpu:0")
# copies each variable off its Parameter and fails on integer variables; "cpu" works on all backends.
CPU = "cpu"


def lstm_train_flops(batch: int, steps: int, features: int, units: int) -> int:
    """FLOPs of one LSTM training step, counting matrix products only.

    Per sequence and time step the four gates take x_t @ W (features x 4*units) and h @ U
    (units x 4*units): 2 * 4*units * (features + units) FLOPs, a multiply-add counted as 2.
    Backward computes gradients for the activations and for the weights, each as costly as the
    forward products, so a training step is 3x the forward. The elementwise gate arithmetic (about
    10 * units per step, under 4% here) and the Adam update (a few FLOPs per weight) are left out.
    """
    forward = 2 * batch * steps * 4 * units * (features + units)
    return 3 * forward


def core_model(steps: int, features: int, units: int, use_cudnn, optimizer) -> keras.Model:
    inputs = keras.Input((steps, features))
    model = keras.Model(inputs, keras.layers.LSTM(units, use_cudnn=use_cudnn)(inputs), name="lstm_core")
    model.compile(optimizer=optimizer, loss="mean_squared_error")
    return model


def core_data(batch: int, steps: int, features: int, units: int, seed: int):
    """Seeded inputs (batch, steps, features) and targets (batch, units) as backend tensors."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, features), dtype=np.float32)
    y = rng.uniform(-0.5, 0.5, (batch, units)).astype(np.float32)
    return keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)


class CoreStep:
    """`core`'s LSTM built once on `device`; calling it runs one training step and returns its loss.

    (The gate's A/B worker builds the LSTM cores of a rev older than pipeline/lib/speed.py through that
    rev's own `make_train_step`; this rev's gate rows are in pipeline/lib/speed.py.)
    """

    def __init__(self, core: str, batch: int, device: str = CPU, use_cudnn=False, seed: int = 0):
        steps, features = registry.MODELS[core].lstm_core
        self.core, self.batch, self.device = core, batch, device
        with keras.device(device):
            keras.utils.set_random_seed(seed)
            self.model = core_model(steps, features, models.LSTM_UNITS, use_cudnn, keras.optimizers.Adam(0.001))
            self.x, self.y = core_data(batch, steps, features, models.LSTM_UNITS, seed)

    def __call__(self) -> float:
        with keras.device(self.device):
            return self.model.train_on_batch(self.x, self.y)  # the loss as a float: the step has completed

    def kernel(self) -> dict:
        """Which LSTM kernel this step runs, read from the backend (pipeline/lib/backends.py)."""
        with keras.device(self.device):
            return backends.lstm_kernel(self.model, self.x, self.y)


def cudnn_ineligibility(layer: keras.layers.LSTM) -> list[str]:
    """Why this LSTM cannot use the cuDNN kernel (empty: it can), per the Keras LSTM documentation."""
    config = layer.get_config()
    rules = [
        (config["activation"] == "tanh", f"activation is {config['activation']!r}, cuDNN needs 'tanh'"),
        (config["recurrent_activation"] == "sigmoid",
         f"recurrent_activation is {config['recurrent_activation']!r}, cuDNN needs 'sigmoid'"),
        (config["recurrent_dropout"] == 0, f"recurrent_dropout is {config['recurrent_dropout']}, cuDNN needs 0"),
        (not config["unroll"], "unroll is True, cuDNN needs False"),
        (config["use_bias"], "use_bias is False, cuDNN needs True"),
    ]
    return [reason for ok, reason in rules if not ok]


def time_step(step: CoreStep, warmup_steps: int, rounds: int, kernel: dict | None = None) -> dict:
    """Warm up, then time `rounds` calls of `step`; with the kernel that ran (`step.kernel()` unless given)."""
    kernel = kernel or step.kernel()
    warmup_ms, times_ms = [], []
    for i in range(warmup_steps + rounds):
        start = time.perf_counter()
        step()
        (warmup_ms if i < warmup_steps else times_ms).append((time.perf_counter() - start) * 1000)
    flops = lstm_train_flops(step.batch, *registry.MODELS[step.core].lstm_core, models.LSTM_UNITS)
    result = {"kernel": kernel["kernel"], "kernel_evidence": kernel["evidence"],
              "warmup_ms": [round(t, 3) for t in warmup_ms], "rounds": rounds, **stats.spread(times_ms)}
    median_s = result["step_time_ms_median"] / 1000
    result["sequences_per_s"] = round(step.batch / median_s, 2)
    result["gflops"] = round(flops / median_s / 1e9, 3)
    return result


def time_train_step(core: str, batch: int, device: str, use_cudnn, warmup_steps: int, rounds: int,
                    seed: int) -> dict:
    """Warm up, then time `rounds` training steps of `core`'s LSTM on `device`."""
    return time_step(CoreStep(core, batch, device, use_cudnn, seed), warmup_steps, rounds)


def time_cudnn_step(core: str, batch: int, device: str, warmup_steps: int, rounds: int,
                    seed: int) -> tuple[dict | None, str]:
    """Time `core`'s cuDNN path on `device`, or refuse: (timing or None, a status line).

    Refused when Keras will not build the cuDNN path (it raises under TensorFlow and JAX), when the
    kernel that actually runs is not cuDNN (under torch Keras falls back silently), and when the first
    step fails in the backend (a cuDNN program that does not compile or run on `device`).
    """
    try:
        step = CoreStep(core, batch, device, True, seed)
        kernel = step.kernel()
        step()  # compiled and run once here, so that a backend failure is a refusal, not a crash
    except Exception as exc:  # noqa: BLE001  (Keras: "use_cudnn=True was specified, but ..."; XLA, cuDNN)
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()] or [""]
        detail = next((line for line in lines if "use_cudnn" in line), lines[0])
        return None, f"refused: {type(exc).__name__}: {detail}"
    if kernel["kernel"] != "cudnn":
        return None, f"refused: use_cudnn=True, but the {kernel['kernel']} kernel ran ({kernel['evidence']})"
    return time_step(step, warmup_steps, rounds, kernel), "measured: " + kernel["evidence"]


def sgemm_gflops(device: str, n: int, warmup_steps: int, rounds: int) -> float:
    """Median single-precision matmul rate (2 n^3 FLOPs) on `device`, in GFLOP/s."""
    with keras.device(device):
        rng = np.random.default_rng(0)
        a = keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32))
        b = keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32))
        times = []
        for i in range(warmup_steps + rounds):
            start = time.perf_counter()
            keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])  # a sync point
            if i >= warmup_steps:
                times.append(time.perf_counter() - start)
    return round(2 * n**3 / float(np.median(times)) / 1e9, 2)


def outputs_and_gradients(device, length, features, units, batch, use_cudnn, weights, seed):
    """A core's outputs and the gradient of every weight, with these weights, on `device`."""
    with keras.device(device):
        model = core_model(length, features, units, use_cudnn, keras.optimizers.SGD(learning_rate=1.0))
        model.set_weights(weights)
        x, y = core_data(batch, length, features, units, seed)
        outputs = keras.ops.convert_to_numpy(model.predict_on_batch(x))
        by_layer = gradients.by_sgd_step(model, x, y)
    return outputs, [g for layer_gradients in by_layer.values() for g in layer_gradients]


def parity(cpu: str, gpu: str, length, features, units, batch, seed) -> dict:
    """Max abs difference of outputs and gradients: CPU generic kernel against GPU cuDNN kernel."""
    with keras.device(cpu):
        keras.utils.set_random_seed(seed)
        weights = core_model(length, features, units, False, "sgd").get_weights()
    out_cpu, grad_cpu = outputs_and_gradients(cpu, length, features, units, batch, False, weights, seed)
    out_gpu, grad_gpu = outputs_and_gradients(gpu, length, features, units, batch, True, weights, seed)
    return {
        "parity_output_max_abs_diff": float(np.max(np.abs(out_cpu - out_gpu))),
        "parity_gradient_max_abs_diff": float(max(np.max(np.abs(a - b)) for a, b in zip(grad_cpu, grad_gpu))),
    }


# ---------------------------------------------------------------- the lstm-step stage's report


def eligibility(model_name: str) -> list[str]:
    """Why the model's own LSTM layer cannot use cuDNN (empty: it can)."""
    with keras.device(CPU):
        return cudnn_ineligibility(models.tutorial(model_name).get_layer(models.LSTM))


def fraction(timing: dict | None, peak: float | None):
    return round(timing["gflops"] / peak, 4) if timing and peak else None


def measure(batch: int, cfg: params.LstmStep) -> dict:
    """The lstm-step stage's report (pipeline/stages/lstm_step.py describes it): each core's step time on
    the CPU path and, where a GPU is visible, the GPU paths, with the matmul peaks and parity."""
    gpus, gpu_status = environment.gpu_devices()
    gpu = gpus[0] if gpus else None
    env = environment.record()
    with backends.float32("ieee"):
        cpu_peak = sgemm_gflops(CPU, cfg.cpu_sgemm_n, cfg.warmup_steps, cfg.rounds)
        gpu_peak = sgemm_gflops(gpu, cfg.gpu_sgemm_n, cfg.warmup_steps, cfg.rounds) if gpu else None
    with backends.float32("tf32"):
        gpu_peak_tf32 = sgemm_gflops(gpu, cfg.gpu_sgemm_n, cfg.warmup_steps, cfg.rounds) if gpu else None
    report = {
        "batch_size": batch,
        "units": models.LSTM_UNITS,
        "warmup_steps": cfg.warmup_steps,
        "rounds": cfg.rounds,
        "backend": env["backend"],
        "backend_version": env["backend_version"],
        "keras_version": env["keras_version"],
        "threads": env["threads"],
        "float32": "ieee",
        "cpu_device_name": environment.cpu_name(),
        "gpu_device_name": (environment.gpu_name() or gpu) if gpu else None,
        "gpu_status": gpu_status,
        "cpu_sgemm_n": cfg.cpu_sgemm_n,
        "gpu_sgemm_n": cfg.gpu_sgemm_n,
        "cpu_sgemm_gflops": cpu_peak,
        "gpu_sgemm_gflops": gpu_peak,
        "gpu_sgemm_tf32_gflops": gpu_peak_tf32,
        "parity_atol": cfg.parity_atol,
    }
    for model_name, (length, features) in registry.lstm_cores().items():
        shape = (length, features, models.LSTM_UNITS, batch)
        print(f"lstm-step: {model_name} core, {length} steps x {features} features, batch {batch}", flush=True)
        timing = lambda device, use_cudnn: time_train_step(  # noqa: E731
            model_name, batch, device, use_cudnn, cfg.warmup_steps, cfg.rounds, cfg.seed)
        cudnn = lambda: time_cudnn_step(model_name, batch, gpu, cfg.warmup_steps, cfg.rounds, cfg.seed)  # noqa: E731
        core = {
            "steps": length,
            "features": features,
            "train_step_gflop": round(lstm_train_flops(batch, length, features, models.LSTM_UNITS) / 1e9, 4),
            "cudnn_ineligible_because": eligibility(model_name),
        }
        with backends.float32("ieee"):
            core["cpu_generic"] = timing(CPU, False)
            core["cpu_generic"]["fraction_of_sgemm"] = fraction(core["cpu_generic"], cpu_peak)
            core["gpu_cudnn"], core["gpu_cudnn_status"] = cudnn() if gpu else (None, gpu_status)
            core["gpu_generic"] = timing(gpu, False) if gpu else None
        with backends.float32("tf32"):
            core["gpu_cudnn_tf32"], core["gpu_cudnn_tf32_status"] = cudnn() if core["gpu_cudnn"] else (
                None, "not timed: " + core["gpu_cudnn_status"])
        for path, peak in (("gpu_cudnn", gpu_peak), ("gpu_generic", gpu_peak), ("gpu_cudnn_tf32", gpu_peak_tf32)):
            if core[path]:
                core[path]["fraction_of_sgemm"] = fraction(core[path], peak)
        if core["gpu_cudnn"]:
            core["gpu_speedup_vs_cpu"] = round(
                core["cpu_generic"]["step_time_ms_median"] / core["gpu_cudnn"]["step_time_ms_median"], 2)
            with backends.float32("ieee"):
                core.update(parity(CPU, gpu, *shape, cfg.seed))
            core["parity_ok"] = (
                max(core["parity_output_max_abs_diff"], core["parity_gradient_max_abs_diff"]) <= cfg.parity_atol
            )
        else:
            core.update(gpu_speedup_vs_cpu=None, parity_output_max_abs_diff=None,
                        parity_gradient_max_abs_diff=None, parity_ok=None)
        print(f"lstm-step: {model_name} cpu {core['cpu_generic']['step_time_ms_median']} ms/step "
              f"({core['cpu_generic']['kernel']}), {core['cpu_generic']['gflops']} GFLOP/s; "
              f"gpu cudnn: {core['gpu_cudnn_status']}", flush=True)
        report[model_name] = core
    return report
