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

from pipeline.lib import cli, params
from pipeline.lib.metrics import write as write_metrics
from pipeline.lib.steps import measure


def main(argv=None) -> None:
    cli.ArgumentParser(prog="python -m pipeline.stages.lstm_step", description=__doc__.splitlines()[0]).parse_args(argv)
    p = params.load()
    write_metrics("lstm-step", p.paths.lstm_step_metrics, measure(p.train.batch_size, p.lstm_step))


if __name__ == "__main__":
    cli.main(main)
