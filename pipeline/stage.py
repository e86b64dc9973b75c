"""What every stage shares: the `main()` wrapper, atomic output files and the run's environment.

`run(main)` turns a `PipelineError` into one line on stderr and exit 1, and Ctrl-C or SIGTERM into
one line and exit 130. Outputs go through `atomic_output`, so an error or an interrupt never leaves a
half-written file where a good one was.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.params import PipelineError


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def run(main) -> None:
    """Call `main()` as a stage: clear one-line errors, prompt exit on SIGINT/SIGTERM."""
    prog = f"pipeline.{Path(sys.modules['__main__'].__file__).stem}"
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        main()
    except PipelineError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output was replaced", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def atomic_output(path: Path | str):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    The temporary name keeps the suffix, because Keras picks the save format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path | str, obj) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


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


def gpu_name() -> str | None:
    """The first GPU's product name from nvidia-smi, whatever the backend."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = out.stdout.strip().splitlines()
    return names[0].strip() if out.returncode == 0 and names else None


def environment() -> dict:
    """The hardware and software a measurement ran on, recorded beside every number."""
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
