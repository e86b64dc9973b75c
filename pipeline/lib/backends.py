"""What Keras 3 leaves to each backend, in one place: float32 matmul precision, and which LSTM kernel ran.

- `float32(mode)`: a context in which float32 matrix products run at full IEEE precision (`ieee`) or
  may use TF32 tensor cores (`tf32`), on the GPU; CPUs compute float32 either way. The backends'
  defaults differ: JAX's cuDNN LSTM and matmuls and PyTorch's cuDNN allow TF32 on Ampere and later
  GPUs unless told otherwise, and TF32 keeps 10 mantissa bits, so a 1e-4 CPU/GPU parity check cannot
  hold under it. The lstm-step stage times and checks parity under `ieee`, and reports TF32 timings
  separately.
- `lstm_kernel(model, x, y)`: which LSTM implementation `model` actually runs, read from the backend,
  not assumed from `use_cudnn`. Under torch, Keras's LSTM swallows any cuDNN error and silently runs
  its Python-loop fallback (keras/src/backend/torch/rnn.py), so on a GPU the profiler's op names
  decide: the cuDNN path is `aten::_cudnn_rnn` (on the CPU, where no cuDNN op can run, the weights'
  device does). Under JAX the traced program decides: the cuDNN path is the
  `rnn_fwd` primitive of jax.experimental.rnn, the generic one a `scan` loop. Under TensorFlow Keras
  raises rather than fall back when `use_cudnn=True` (keras/src/layers/rnn/lstm.py), so a step that
  ran is the kernel it asked for.
"""

from __future__ import annotations

import contextlib

import keras

FLOAT32_MODES = ("ieee", "tf32")


@contextlib.contextmanager
def float32(mode: str):
    """Run the body with float32 matmuls at full precision (`ieee`) or with TF32 allowed (`tf32`)."""
    if mode not in FLOAT32_MODES:
        raise ValueError(f"float32 mode {mode!r}; expected one of {FLOAT32_MODES}")
    tf32 = mode == "tf32"
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        # "highest" also makes jax.experimental.rnn's cuDNN LSTM refuse TF32 (_lstm_cudnn_allow_tf32).
        with jax.default_matmul_precision("high" if tf32 else "highest"):
            yield
    elif backend == "torch":
        import torch

        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    elif backend == "tensorflow":
        import tensorflow as tf

        saved = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
        try:
            yield
        finally:
            tf.config.experimental.enable_tensor_float_32_execution(saved)
    else:
        yield


def lstm_kernel(model: keras.Model, x, y) -> dict:
    """{"kernel": "cudnn" | "generic", "evidence": what showed it} for `model`'s LSTM on input `x`.

    Under torch: where the model's weights are on the CPU, no cuDNN op can run (cudnn_rnn takes CUDA
    tensors only), and that is the evidence; elsewhere one training step on (x, y) runs inside the
    profiler (`torch_profiled_kernel`; on the CPU that is slow for the 1,024-step parallel core and
    shows nothing more). Under TensorFlow one plain step runs. Keras's ValueError for a
    `use_cudnn=True` it cannot honour propagates.
    """
    backend = keras.config.backend()
    if backend == "torch":
        device = model.weights[0].value.device.type  # train_on_batch moves the inputs to the weights' device
        if device != "cuda":
            return {"kernel": "generic", "evidence": f"torch: the model's weights are on the {device} device, "
                                                     "and cudnn_rnn runs only on CUDA tensors (Keras's own loop "
                                                     "runs)"}
        return torch_profiled_kernel(model, x, y)
    if backend == "jax":
        import jax

        jaxpr = str(jax.make_jaxpr(lambda inputs: model(inputs, training=False))(x))
        if "rnn_fwd" in jaxpr:
            return {"kernel": "cudnn", "evidence": "jaxpr holds rnn_fwd (jax.experimental.rnn, the cuDNN LSTM)"}
        loop = "scan" if "scan" in jaxpr else "while" if "while" in jaxpr else "no rnn_fwd"
        return {"kernel": "generic", "evidence": f"jaxpr holds {loop}, no rnn_fwd (Keras's generic loop)"}
    model.train_on_batch(x, y)  # raises ValueError when use_cudnn=True cannot be honoured
    layer = next(layer for layer in model.layers if isinstance(layer, keras.layers.LSTM))
    kind = "cudnn" if layer.use_cudnn is True else "generic"
    return {"kernel": kind, "evidence": f"{backend}: use_cudnn={layer.use_cudnn!r}; Keras raises rather than "
                                        "fall back when it is True"}


def torch_profiled_kernel(model: keras.Model, x, y) -> dict:
    """The LSTM kernel that one training step on (x, y) ran, from the torch profiler's op names."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        model.train_on_batch(x, y)
    names = sorted({event.name for event in prof.events()})
    cudnn = [n for n in names if "cudnn_rnn" in n]
    kernels = [n for n in names if not n.startswith("aten::") and ("rnn" in n.lower() or "lstm" in n.lower())]
    if cudnn:
        return {"kernel": "cudnn", "evidence": "torch profiler: " + ", ".join((cudnn + kernels)[:6])}
    return {"kernel": "generic", "evidence": "torch profiler: no cudnn_rnn op in a training step "
                                             "(Keras's own loop ran)"}
