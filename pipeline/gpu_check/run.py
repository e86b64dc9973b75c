"""One gpu-check's scratch project, its log and its clock: every process it starts is held to the budget."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pipeline.lib.params import PipelineError

ROOT = Path(__file__).resolve().parent.parent.parent
GRACE_S = 20  # a process still running this long after the budget is killed


class Run:
    """The scratch project, the log, and the clock of one gpu-check.

    Every process gets a hard timeout at the end of the budget (plus `GRACE_S`); one still running then
    is killed with its process group, so the whole run ends within budget + grace whatever hangs.
    """

    def __init__(self, out_dir: Path, budget_s: float, cpu: bool):
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.cpu = cpu
        self.out_dir = out_dir
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.project = self.work / "project"
        self.project.mkdir()
        self.log = open(out_dir / "gpu-check.log", "w", encoding="utf-8")  # noqa: SIM115 (closed in check)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def say(self, line: str) -> None:
        line = f"gpu-check [{self.elapsed():6.1f} s]: {line}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def call(self, args: list[str], backend: str | None = None, cwd: Path | None = None,
             timeout: float | None = None) -> tuple[int, str]:
        """Run `python args...` with this checkout's package importable; echo and log its output.
        Returns (exit code, output); -9 when it was killed: after `timeout` seconds, at the end of the
        budget (+ GRACE_S) at the latest. An interrupt kills it too, before it propagates."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if backend:
            env["KERAS_BACKEND"] = backend
        if self.cpu:  # --cpu: hide any GPU from both backends
            env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd or self.project, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        lines: list[str] = []

        def pump():
            for line in proc.stdout:
                print(line, end="", flush=True)
                self.log.write(line)
                lines.append(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        limit = max(min(self.left() + GRACE_S, timeout if timeout is not None else math.inf), 1.0)
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
            lines.append(f"gpu-check: killed after {limit:.0f} s (its time limit or the end of the budget)\n")
        except BaseException:  # Ctrl-C, SIGTERM: its own session would outlive this process otherwise
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        reader.join(timeout=10)
        self.log.flush()
        return code, "".join(lines)

    def stage(self, backend: str, module: str, *args: str) -> None:
        self.say(" ".join([module, *args, "under", backend]))
        code, _ = self.call(["-m", f"pipeline.stages.{module}", *args], backend)
        if code != 0:
            raise PipelineError(f"{module} {' '.join(args)} under {backend} failed (exit {code}); "
                                f"see {self.out_dir / 'gpu-check.log'}")

    def read(self, path) -> dict:
        return json.loads((self.project / path).read_text())


def mirror_tool() -> Path:
    for shared in (ROOT / ".gpu" / "shared", ROOT.parent / "shared"):
        tool = shared / "tools" / "make-cifar10-mirror"
        if tool.is_file():
            return tool
    raise PipelineError(f"no mirror tool: neither {ROOT / '.gpu/shared'} (make gpu-pack) nor {ROOT.parent / 'shared'} "
                        "holds tools/make-cifar10-mirror and data/cifar10-jpeg.tar.gz")
