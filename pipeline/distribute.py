"""Data-parallel training across the devices of one host: param `train.distribution`.

- `none`: the backend's default device, one replica.
- `data_parallel`: one model replica per device. Every step splits the global batch
  (`train.batch_size`, unchanged) evenly across the replicas and combines their gradients into the
  update one device would make from the whole batch, so results stay comparable with `none` up to
  floating-point summation order (tests/test_distribute.py measures the difference).

Keras 3 trains data-parallel through an existing engine per backend; this module only picks it:
- TensorFlow: `tf.distribute.MirroredStrategy` over the chosen devices. Model building, checkpoint
  loading and `fit` run inside its scope. This is the one module of the pipeline that touches `tf.*`.
  Several machines (`TF_CONFIG` naming a cluster, `MultiWorkerMirroredStrategy`) are refused in one
  line: Keras 3's `fit` does not work under that strategy (measured here; README "Several machines").
- jax: `keras.distribution.DataParallel`, set as the global distribution.
- torch: refused in one line; Keras 3.15 has no distribution API for torch.

Devices: every GPU the backend sees, or the first `train.devices` of them. On a host without a GPU,
`train.devices: N` splits the CPU into N logical devices (TensorFlow logical CPU devices; jax's
`jax_num_cpu_devices`, the same as `XLA_FLAGS=--xla_force_host_platform_device_count=N`). That tests the
mode on any machine. It is not a speed-up: the replicas share the same cores (README "Scale out").

`setup()` must run before the backend touches a device, so stages call it right after `params.load()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os

import keras

from pipeline.params import PipelineError

MODES = ("none", "data_parallel")  # pipeline/params.py: DISTRIBUTIONS


@dataclasses.dataclass(frozen=True)
class Replicas:
    """Where one training run's replicas live, and the context that training runs in."""

    mode: str
    devices: tuple[str, ...]
    engine: str  # what does the work, for the metrics: "default", "MirroredStrategy", ...
    strategy: object = None  # the tf.distribute strategy under TensorFlow, else None

    @property
    def count(self) -> int:
        return len(self.devices)

    def scope(self):
        """Build, load and train the model inside this context."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def metrics(self) -> dict:
        return {"distribution": self.mode, "replicas": self.count, "replica_devices": list(self.devices),
                "distribution_engine": self.engine}


SINGLE = Replicas("none", ("default",), "default")


def multi_worker() -> bool:
    """True when TF_CONFIG describes a cluster of more than one task (MultiWorkerMirroredStrategy's setup)."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "")).get("cluster", {})
    except (ValueError, AttributeError):
        return False
    return sum(len(tasks) for tasks in cluster.values()) > 1


def setup(mode: str, devices: int, batch_size: int) -> Replicas:
    """Choose the devices and the engine for `mode`; call before anything runs on a device."""
    backend = keras.config.backend()
    if mode == "none":
        return SINGLE
    if backend == "torch":
        raise PipelineError("train.distribution = data_parallel needs the tensorflow or jax backend "
                            "(KERAS_BACKEND); Keras 3.15 has no distribution API for torch")
    replicas = _tensorflow(devices) if backend == "tensorflow" else _jax(devices)
    if batch_size % replicas.count:
        raise PipelineError(f"train.batch_size = {batch_size} does not split evenly across "
                            f"{replicas.count} replicas ({', '.join(replicas.devices)})")
    return replicas


def _pick(available: list[str], devices: int, backend: str) -> list[str]:
    if devices > len(available):
        raise PipelineError(f"train.devices = {devices}, but the {backend} backend sees only "
                            f"{len(available)}: {', '.join(available)}")
    return available[:devices] if devices else available


def _tensorflow(devices: int) -> Replicas:
    import tensorflow as tf

    if multi_worker():
        # Tried here (Keras 3.15.1, TF 2.21, two workers on 127.0.0.1): fit() fails with "Attempt to
        # convert a value (PerReplica...) to a Tensor". Refuse before any work instead.
        raise PipelineError("TF_CONFIG names a cluster, but Keras 3 cannot train under "
                            "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585); "
                            "README \"Several machines\"")
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    kind = "GPU" if gpus else "CPU"
    chosen = _pick([d.name for d in tf.config.list_logical_devices(kind)], devices, "tensorflow")
    return Replicas("data_parallel", tuple(chosen), "MirroredStrategy", tf.distribute.MirroredStrategy(chosen))


def _jax(devices: int) -> Replicas:
    import jax

    if devices > 1:
        # CPU platform only: a GPU host still trains on its GPUs below.
        jax.config.update("jax_num_cpu_devices", devices)
    try:
        available = keras.distribution.list_devices("gpu")
    except RuntimeError:  # no gpu platform
        available = keras.distribution.list_devices("cpu")
    chosen = _pick(available, devices, "jax")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
    return Replicas("data_parallel", tuple(chosen), "keras.distribution.DataParallel")
