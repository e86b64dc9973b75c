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


def environment() -> dict:
    """The hardware and software a measurement ran on, recorded beside every number."""
    import keras

    backend = keras.config.backend()
    devices = keras.distribution.list_devices()
    return {
        "device": ",".join(devices),
        "device_name": cpu_name() if devices[0].startswith("cpu") else devices[0],
        "backend": backend,
        "backend_version": importlib.metadata.version(backend),
        "keras_version": keras.__version__,
        "threads": os.cpu_count(),
    }
