"""The hardware and software a measurement ran on, recorded beside every number."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_devices() -> tuple[list[str], str]:
    """The GPUs the active Keras backend sees, and a status line saying why there are none."""
    import keras

    backend = keras.config.backend()
    if backend == "torch":
        # Keras 3.15 has no distribution API for torch; ask torch itself, in this one place.
        import torch

        devices = [f"gpu:{i}" for i in range(torch.cuda.device_count())]
    else:
        try:
            devices = keras.distribution.list_devices("gpu")
        except RuntimeError as exc:  # jax raises when it has no gpu platform
            return [], f"no GPU visible to the {backend} backend ({str(exc).splitlines()[0]})"
    if not devices:
        return [], f"no GPU visible to the {backend} backend"
    return devices, f"{len(devices)} GPU(s) visible to the {backend} backend"


def nvidia_smi(field: str) -> str | None:
    """One `--query-gpu` field of the first GPU from nvidia-smi (name, driver_version, ...), whatever the backend."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    values = out.stdout.strip().splitlines()
    return values[0].strip() if out.returncode == 0 and values else None


def gpu_name() -> str | None:
    """The first GPU's product name."""
    return nvidia_smi("name")


def record() -> dict:
    """Device, backend and its version, Keras version and threads, for a metrics file."""
    import keras

    backend = keras.config.backend()
    gpus, _ = gpu_devices()
    return {
        "device": ",".join(gpus) if gpus else "cpu:0",
        "device_name": (gpu_name() or gpus[0]) if gpus else cpu_name(),
        "backend": backend,
        "backend_version": importlib.metadata.version("jax" if backend == "jax" else backend),
        "keras_version": keras.__version__,
        "threads": os.cpu_count(),
    }
