"""Data-parallel training (`train.distribution: data_parallel`) on 2 logical CPU devices, through the
real `pipeline.train` stage, under TensorFlow (MirroredStrategy) and jax (keras.distribution.DataParallel).

The two replicas split each global batch of 100 in halves and combine their gradients, which is the
same arithmetic as one device up to float32 summation order. So after a few steps the loss and the
weights must match the single-device run's to within TOLERANCE. That is a tenth of what one step
moves a weight (Adam's first updates are about the learning rate, 1e-3, per weight), so a real
difference in what is trained (another global batch, one replica's half dropped, an extra or
missing step) fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.project import set_params, write_prepared

TOLERANCE = 1e-4  # absolute, on the loss (about 2.3) and on every weight, after 4 steps
STEPS = 4  # 200 images x 2 epochs / batch 100


def train(project: Path, backend: str, **env) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "sequential"], cwd=project, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "KERAS_BACKEND": backend,
             **env}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((project / "metrics" / "train-sequential.json").read_text())


def weights(project: Path, backend: str) -> list[np.ndarray]:
    """The trained model's weights, read in a fresh process of the same backend."""
    out = project / "weights.npz"
    code = ("import sys, numpy as np, keras; m = keras.saving.load_model('models/sequential.keras');"
            "np.savez(sys.argv[1], *m.get_weights())")
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=project, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                        "KERAS_BACKEND": backend})
    with np.load(out) as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture
def project(root, tmp_path):
    values = yaml.safe_load((root / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values))
    set_params(tmp_path, **{"train.sequential.epochs": 2})
    write_prepared(tmp_path, 200, seed=5, normalize="raw")  # the tutorial's unscaled pixels
    return tmp_path


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
