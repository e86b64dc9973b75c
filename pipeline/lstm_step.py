"""Stage `lstm-step`: one training step of each model's LSTM(50) core, GPU (cuDNN) path against CPU path.

Reads params `train.batch_size` and `lstm_step.*`; writes `<paths.metrics_dir>/lstm-step.json`.
Runs under any Keras 3 backend: `KERAS_BACKEND=torch|jax dvc repro lstm-step` (the backend and its
version are recorded).

For each core of `models.LSTM_CORES` (256 steps x 50 features, 1024 steps x 3), at the training
batch size, it times one full training step (forward, backward, Adam update) of Input -> LSTM(50)
with a mean-squared-error loss:
- CPU path: on `cpu:0` with the generic kernel (`use_cudnn=False`).
- GPU path, when a GPU is visible: `use_cudnn=True`, so Keras raises rather than silently falling back
  to the generic kernel; the generic kernel on the GPU is timed too, for reference.

Method: `warmup_steps` untimed steps first (tracing, compile, first-call allocation; their times are
reported as `warmup_ms`), then `rounds` timed steps. Each step is `train_on_batch`, which returns the
loss as a Python float, so the work has completed inside the timed region. Reported: median and IQR in
ms, sequences/s, achieved GFLOP/s, and that rate as a fraction of the sgemm rate (keras.ops.matmul,
n x n float32) measured on the same device in the same run.

Parity: with identical weights and inputs, the CPU path and the GPU cuDNN path must agree on outputs
and gradients within `lstm_step.parity_atol`; the max abs differences are recorded. Gradients are read
backend-agnostically (pipeline/gradients.py). The cores are built by pipeline/steps.py, which the speed
gate's worker uses too.

With no GPU visible, every GPU field is null and `gpu_status` says why. Nothing is estimated.
"""

from __future__ import annotations

import keras

from pipeline import cli, environment, models, params
from pipeline.atomic import write_json
from pipeline.steps import CPU, cudnn_ineligibility, lstm_train_flops, parity, sgemm_gflops, time_train_step


def measure(batch: int, cfg: params.LstmStep) -> dict:
    gpus, gpu_status = environment.gpu_devices()
    gpu = gpus[0] if gpus else None
    env = environment.record()
    report = {
        "batch_size": batch,
        "units": models.LSTM_UNITS,
        "warmup_steps": cfg.warmup_steps,
        "rounds": cfg.rounds,
        "backend": env["backend"],
        "backend_version": env["backend_version"],
        "keras_version": env["keras_version"],
        "threads": env["threads"],
        "cpu_device_name": environment.cpu_name(),
        "gpu_device_name": (environment.gpu_name() or gpu) if gpu else None,
        "gpu_status": gpu_status,
        "sgemm_n": cfg.sgemm_n,
        "cpu_sgemm_gflops": sgemm_gflops(CPU, cfg.sgemm_n, cfg.warmup_steps, cfg.rounds),
        "gpu_sgemm_gflops": sgemm_gflops(gpu, cfg.sgemm_n, cfg.warmup_steps, cfg.rounds) if gpu else None,
        "parity_atol": cfg.parity_atol,
    }
    for model_name, (length, features) in models.LSTM_CORES.items():
        shape = (length, features, models.LSTM_UNITS, batch)
        print(f"lstm-step: {model_name} core, {length} steps x {features} features, batch {batch}", flush=True)
        run = lambda device, use_cudnn: time_train_step(  # noqa: E731
            model_name, batch, device, use_cudnn, cfg.warmup_steps, cfg.rounds, cfg.seed)
        core = {
            "steps": length,
            "features": features,
            "train_step_gflop": round(lstm_train_flops(batch, length, features, models.LSTM_UNITS) / 1e9, 4),
            "cudnn_ineligible_because": cudnn_ineligibility(keras.layers.LSTM(models.LSTM_UNITS)),
            "cpu_generic": run(CPU, False),
            "gpu_cudnn": run(gpu, True) if gpu else None,
            "gpu_generic": run(gpu, False) if gpu else None,
        }
        core["cpu_generic"]["fraction_of_sgemm"] = round(core["cpu_generic"]["gflops"] / report["cpu_sgemm_gflops"], 4)
        if gpu:
            core["gpu_cudnn"]["fraction_of_sgemm"] = round(core["gpu_cudnn"]["gflops"] / report["gpu_sgemm_gflops"], 4)
            core["gpu_speedup_vs_cpu"] = round(
                core["cpu_generic"]["step_time_ms_median"] / core["gpu_cudnn"]["step_time_ms_median"], 2)
            core.update(parity(CPU, gpu, *shape, cfg.seed))
            core["parity_ok"] = max(core["parity_output_max_abs_diff"], core["parity_gradient_max_abs_diff"]) <= cfg.parity_atol
        else:
            core.update(gpu_speedup_vs_cpu=None, parity_output_max_abs_diff=None,
                        parity_gradient_max_abs_diff=None, parity_ok=None)
        print(f"lstm-step: {model_name} cpu {core['cpu_generic']['step_time_ms_median']} ms/step, "
              f"{core['cpu_generic']['gflops']} GFLOP/s; gpu: {gpu_status}", flush=True)
        report[model_name] = core
    return report


def main(argv=None) -> None:
    cli.ArgumentParser(prog="python -m pipeline.lstm_step", description=__doc__.splitlines()[0]).parse_args(argv)
    p = params.load()
    write_json(p.paths.lstm_step_metrics, measure(p.train.batch_size, p.lstm_step))


if __name__ == "__main__":
    cli.main(main)
