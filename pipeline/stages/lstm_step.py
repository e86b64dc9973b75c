"""Stage `lstm-step`: one training step of each model's LSTM(50) core, GPU (cuDNN) path against CPU path.

Reads params `train.batch_size` and `lstm_step.*`; writes `<paths.metrics_dir>/lstm-step.json`.
Runs under any Keras 3 backend: `KERAS_BACKEND=torch|jax dvc repro lstm-step` (the backend and its
version are recorded), and without TensorFlow installed (requirements-gpu.txt, scripts/gpu-check).

For each model's LSTM core (`registry.lstm_cores()`), at the training
batch size, it times one full training step (forward, backward, Adam update) of Input -> LSTM(50)
with a mean-squared-error loss:
- CPU path: on the CPU with the generic kernel (`use_cudnn=False`).
- GPU path, when a GPU is visible: `use_cudnn=True`. Its time is reported only when the cuDNN kernel
  actually ran, read from the backend (the torch profiler's op names, JAX's traced program;
  pipeline/lib/backends.py); otherwise `gpu_cudnn` is null and `gpu_cudnn_status` says why. The generic
  kernel on the GPU is timed too, for reference.
- Float32 at full IEEE precision for every timing and for parity (`backends.float32("ieee")`); on a
  GPU the cuDNN path and the matmul are timed again with TF32 allowed (`gpu_cudnn_tf32`,
  `gpu_sgemm_tf32_gflops`), since JAX and PyTorch allow TF32 by default.

Method: `warmup_steps` untimed steps first (tracing, compile, first-call allocation; their times are
reported as `warmup_ms`), then `rounds` timed steps. Each step is `train_on_batch`, which returns the
loss as a Python float, so the work has completed inside the timed region. Reported: median and IQR in
ms, sequences/s, achieved GFLOP/s, and that rate as a fraction of the float32 matmul rate
(keras.ops.matmul, n x n: `cpu_sgemm_n` on the CPU, `gpu_sgemm_n` on the GPU, large enough to reach the
peak) measured on the same device in the same run.

Parity: with identical weights and inputs, the CPU path and the GPU cuDNN path must agree on outputs
and gradients within `lstm_step.parity_atol`; the max abs differences are recorded. Gradients are read
backend-agnostically (pipeline/lib/gradients.py). The cores are built by pipeline/lib/steps.py (the speed gate
timed them too until b811c27; its fit loops now hold them). `cudnn_ineligible_because` describes the
models' own LSTM layers.

With no GPU visible, every GPU field is null and `gpu_status` says why. Nothing is estimated.
"""

from __future__ import annotations

import keras

from pipeline.lib import backends, cli, environment, models, params, registry
from pipeline.lib.metrics import write as write_metrics
from pipeline.lib.steps import (
    CPU,
    cudnn_ineligibility,
    lstm_train_flops,
    parity,
    sgemm_gflops,
    time_cudnn_step,
    time_train_step,
)


def eligibility(model_name: str) -> list[str]:
    """Why the model's own LSTM layer cannot use cuDNN (empty: it can)."""
    with keras.device(CPU):
        return cudnn_ineligibility(models.tutorial(model_name).get_layer(models.LSTM))


def fraction(timing: dict | None, peak: float | None):
    return round(timing["gflops"] / peak, 4) if timing and peak else None


def measure(batch: int, cfg: params.LstmStep) -> dict:
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


def main(argv=None) -> None:
    cli.ArgumentParser(prog="python -m pipeline.stages.lstm_step", description=__doc__.splitlines()[0]).parse_args(argv)
    p = params.load()
    write_metrics("lstm-step", p.paths.lstm_step_metrics, measure(p.train.batch_size, p.lstm_step))


if __name__ == "__main__":
    cli.main(main)
