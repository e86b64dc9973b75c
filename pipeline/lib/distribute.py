"""Data-parallel training across the devices of one host, or (jax) of several: param `train.distribution`.

- `none`: the backend's default device, one replica.
- `data_parallel`: one model replica per device. Every step splits the global batch
  (`train.batch_size`, unchanged) evenly across the replicas and combines their gradients into the
  update one device would make from the whole batch, so results stay comparable with `none` up to
  floating-point summation order (tests/test_distribute.py measures the difference).

Keras 3 trains data-parallel through an existing engine per backend; this module only picks it:
- TensorFlow: `tf.distribute.MirroredStrategy` over the chosen devices. Model building, checkpoint
  loading and `fit` run inside its scope. This is the one module of the pipeline that touches `tf.*`.
  Several machines (`TF_CONFIG` naming a cluster, `MultiWorkerMirroredStrategy`) are refused in one
  line: Keras 3's `fit` does not work under that strategy (docs/scale-out.md, "Several machines"),
  and so is a multi-process setup under any backend but jax.
- jax: `keras.distribution.DataParallel`, set as the global distribution. Across processes or hosts,
  configuration only: Keras's own `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator, process 0),
  `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID` in each process's environment.
  `keras.distribution.initialize()` reads them; every device of every process is a replica, and each
  process feeds its slice of every global batch (`Replicas.local_batches`).
- torch: refused in one line; Keras 3.15 has no distribution API for torch.

Devices: every GPU the backend sees, or the first `train.devices` of them. On a host without a GPU,
`train.devices: N` splits the CPU into N logical devices (TensorFlow logical CPU devices; jax's
`jax_num_cpu_devices`, the same as `XLA_FLAGS=--xla_force_host_platform_device_count=N`). That tests the
mode on any machine. It is not a speed-up: the replicas share the same cores (docs/scale-out.md).
Across processes, every device of every process is a replica; `train.devices` then only splits each
process's CPU.

`setup()` must run before the backend touches a device, so stages call it right after `params.load()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os

import keras

from pipeline.lib.params import PipelineError


@dataclasses.dataclass(frozen=True)
class Replicas:
    """Where one training run's replicas live, and the context that training runs in."""

    mode: str
    devices: tuple[str, ...]
    engine: str  # what does the work, for the metrics: "default", "MirroredStrategy", ...
    strategy: object = None  # the tf.distribute strategy under TensorFlow, else None
    processes: int = 1  # jax across processes or hosts: how many take part, and which one this is
    process_index: int = 0

    @property
    def count(self) -> int:
        return len(self.devices)

    def scope(self):
        """Build, load and train the model inside this context."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def local_batches(self, order, batch_size: int):
        """(the rows this process feeds, in order; its share of each batch) for one epoch in `order`.

        One process feeds every global batch whole. With several processes, process p feeds the p-th
        slice of every global batch, so together they train on exactly the batches one process would.
        """
        if self.processes == 1:
            return order, batch_size
        if len(order) % batch_size:
            raise PipelineError(f"{len(order)} training images do not fill whole batches of {batch_size}; "
                                f"training across {self.processes} processes needs whole batches")
        share = batch_size // self.processes
        return order.reshape(-1, self.processes, share)[:, self.process_index].ravel(), share

    def metrics(self) -> dict:
        return {"distribution": self.mode, "replicas": self.count, "replica_devices": list(self.devices),
                "distribution_engine": self.engine, "processes": self.processes,
                "process_index": self.process_index}


SINGLE = Replicas("none", ("default",), "default")


def processes() -> int:
    """How many processes (hosts) Keras's multi-process setup names: KERAS_DISTRIBUTION_NUM_PROCESSES."""
    try:
        return int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") or 1)
    except ValueError:
        raise PipelineError("KERAS_DISTRIBUTION_NUM_PROCESSES must be a whole number, got "
                            f"{os.environ['KERAS_DISTRIBUTION_NUM_PROCESSES']!r}") from None


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
    if processes() > 1 and backend != "jax":
        raise PipelineError("KERAS_DISTRIBUTION_NUM_PROCESSES > 1 (training across processes or hosts) "
                            "needs KERAS_BACKEND=jax; docs/scale-out.md \"Several machines\"")
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
                            "docs/scale-out.md \"Several machines\"")
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
    if processes() > 1:
        # Keras reads the coordinator's address, the process count and this process's id from the
        # KERAS_DISTRIBUTION_* variables. CPU devices of different processes talk through gloo.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        keras.distribution.initialize()
    try:
        available = keras.distribution.list_devices("gpu")
    except RuntimeError:  # no gpu platform
        available = keras.distribution.list_devices("cpu")
    if processes() == 1:
        chosen = _pick(available, devices, "jax")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
        return Replicas("data_parallel", tuple(chosen), "keras.distribution.DataParallel")
    # Several processes: every device of every process; each process feeds its slice of each batch.
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=available, auto_shard_dataset=False))
    return Replicas("data_parallel", tuple(available), "keras.distribution.DataParallel",
                    processes=jax.process_count(), process_index=jax.process_index())
