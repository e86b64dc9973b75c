"""Data-parallel training (`train.distribution: data_parallel`) on 2 logical CPU devices, through the
real `pipeline.stages.train` stage, under TensorFlow (MirroredStrategy) and jax (keras.distribution.DataParallel).

The two replicas split each global batch of 100 in halves and combine their gradients, which is the
same arithmetic as one device up to float32 summation order. So after a few steps the loss and the
weights must match the single-device run's to within TOLERANCE. That is a tenth of what one step
moves a weight (Adam's first updates are about the learning rate, 1e-3, per weight), so a real
difference in what is trained (another global batch, one replica's half dropped, an extra or
missing step) fails it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.project import run_stage, scratch_params, set_params, start_stage, wait_stage
from tests.splits import write_prepared

TOLERANCE = 1e-4  # absolute, on the loss (about 2.3) and on every weight, after 4 steps
STEPS = 4  # 200 images x 2 epochs / batch 100


def start(project: Path, backend: str, **env) -> subprocess.Popen:
    return start_stage(project, "pipeline.stages.train", "sequential", KERAS_BACKEND=backend, **env)


def finish(proc: subprocess.Popen, project: Path) -> dict:
    code, out, err = wait_stage(proc, timeout=300)
    assert code == 0, out + err
    return json.loads((project / "metrics" / "train-sequential.json").read_text())


def train(project: Path, backend: str, **env) -> dict:
    return finish(start(project, backend, **env), project)


def weights(project: Path, backend: str) -> list[np.ndarray]:
    """The trained model's weights, read in a fresh process of the same backend."""
    out = project / "weights.npz"
    code, stdout, stderr = run_stage(project, "tests.model_weights", "models/sequential.keras", str(out),
                                     KERAS_BACKEND=backend)
    assert code == 0, stdout + stderr
    with np.load(out) as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture
def project(tmp_path):
    project = scratch_params(tmp_path / "project", **{"models.sequential.epochs": 2})
    write_prepared(project, 200, seed=5, normalize="raw")  # the tutorial's unscaled pixels
    write_prepared(project, 50, seed=6, split="test", normalize="raw")  # the held-out curve's images
    return project


@pytest.mark.slow
@pytest.mark.parametrize("backend, devices, env", [
    ("tensorflow", 2, {}),  # train.devices: 2 splits the CPU into 2 logical devices
    ("jax", 0, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),  # 0: every device jax sees
])
def test_two_replicas_train_like_one_device(project, backend, devices, env):
    if backend != "tensorflow":
        pytest.importorskip(backend, reason=f"the {backend} backend is optional (make backends)")
    single = train(project, backend)
    single_weights = weights(project, backend)
    assert (single["distribution"], single["replicas"]) == ("none", 1)

    set_params(project, **{"train.distribution": "data_parallel", "train.devices": devices})
    both = train(project, backend, **env)
    assert both["distribution"] == "data_parallel" and both["replicas"] == 2
    assert both["replica_devices"] == (["/device:CPU:0", "/device:CPU:1"] if backend == "tensorflow"
                                       else ["cpu:0", "cpu:1"])
    assert both["distribution_engine"] == {"tensorflow": "MirroredStrategy",
                                           "jax": "keras.distribution.DataParallel"}[backend]
    assert both["batch_size"] == 100 and both["timed_steps"] == STEPS - 1  # the global batch, unchanged

    loss_gap = abs(both["final_train_loss"] - single["final_train_loss"])
    weight_gap = max(np.max(np.abs(a - b)) for a, b in zip(weights(project, backend), single_weights, strict=True))
    print(f"{backend}: 2 replicas vs 1 device after {STEPS} steps: loss {loss_gap:.2e}, weights {weight_gap:.2e}")
    assert loss_gap < TOLERANCE and weight_gap < TOLERANCE


@pytest.mark.slow
def test_two_processes_train_like_one_device(project, tmp_path):
    """jax across processes (the multi-host path, docs/scale-out.md "Several machines"): two processes on
    127.0.0.1, each in its own copy of the project with one CPU device, each feeding its half of every
    global batch. Together they must train like one process, and hold the same weights."""
    pytest.importorskip("jax", reason="the jax backend is optional (make backends)")
    single = train(project, "jax")
    single_weights = weights(project, "jax")

    set_params(project, **{"train.distribution": "data_parallel"})
    other = tmp_path / "other-host"
    shutil.copytree(project, other, ignore=shutil.ignore_patterns("metrics", "models", "plots", "*.npz.tmp*"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    procs = [start(p, "jax", **cluster, KERAS_DISTRIBUTION_PROCESS_ID=str(i)) for i, p in enumerate([project, other])]
    chief, worker = (finish(proc, p) for proc, p in zip(procs, [project, other]))

    for i, m in enumerate([chief, worker]):
        assert (m["replicas"], m["processes"], m["process_index"]) == (2, 2, i)
        assert m["batch_size"] == 100 and m["timed_steps"] == STEPS - 1
    chief_weights, worker_weights = weights(project, "jax"), weights(other, "jax")
    for a, b in zip(chief_weights, worker_weights, strict=True):
        assert np.array_equal(a, b)
    loss_gap = abs(chief["final_train_loss"] - single["final_train_loss"])
    weight_gap = max(np.max(np.abs(a - b)) for a, b in zip(chief_weights, single_weights, strict=True))
    print(f"jax, 2 processes vs 1 after {STEPS} steps: loss {loss_gap:.2e}, weights {weight_gap:.2e}")
    assert loss_gap < TOLERANCE and weight_gap < TOLERANCE
