"""The A/B gate's benchmark workers: one process per rev and side (ab_worker.py, run with that rev's code),
driven line by line over pipes, with time limits so that a worker that dies or hangs ends the gate in
one line."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.lib import params
from pipeline.gate import GateUsageError

WORKER = Path(__file__).with_name("ab_worker.py")


# How long a worker may take to start (import, build, warm up its benchmarks; docs/gates.md has the measured
# start times) and for one step, with a wide margin over both. Past these the gate stops with one line, no hang.
START_TIMEOUT_S = 600
STEP_TIMEOUT_S = 120
NOTHING_TO_BENCHMARK = 3  # pipeline/gate/ab_worker.py's exit status for a rev without benchmarks


class WorkerError(GateUsageError):
    """A benchmark worker died, hung or answered nonsense: exit 2, one line."""

    def __init__(self, message: str, nothing_to_benchmark: bool = False):
        super().__init__(message)
        self.nothing_to_benchmark = nothing_to_benchmark


def gate_command(p: params.Params) -> list[str]:
    """The gate's worker and its arguments: the speed suite (pipeline/lib/speed.py) at params.yaml's settings."""
    args = ["--batch", p.train.batch_size, "--inference-batch", p.evaluate.batch_size,
            "--learning-rate", p.train.learning_rate, "--loss", p.train.loss, "--warmup", p.gate.ab_warmup]
    return [str(WORKER), *map(str, args)]


class Worker:
    """One rev's benchmark process, driven line by line over pipes: `command` (a script and its arguments,
    by default the gate's, `gate_command`) run by this Python with the rev's checkout as cwd and PYTHONPATH.
    The protocol is ab_worker.py's: one line {"benchmarks", "backend", ...}, then {"ms"} per name sent."""

    def __init__(self, label: str, rev_dir: Path, command: list[str]):
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(rev_dir), "PYTHONUNBUFFERED": "1"}
        # stderr to a file, not a pipe: a worker that logs more than a pipe holds would block on it
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, *command], cwd=rev_dir, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def _failed(self, what: str, exit_wait_s: float = 10) -> WorkerError:
        try:  # a worker whose stdout closed is exiting: let it, so that its exit status is its own
            code = self.proc.wait(timeout=exit_wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.stderr.seek(0)
        err = self.stderr.read().strip().splitlines()
        return WorkerError(f"{self.label}: benchmark worker {what}: {err[-1] if err else 'no output'}",
                           nothing_to_benchmark=code == NOTHING_TO_BENCHMARK)

    def reply(self, timeout_s: float | None = None) -> dict:
        timeout_s = START_TIMEOUT_S if timeout_s is None else timeout_s
        # one request, one line: nothing is left in the reader's buffer between replies, so select() on
        # the pipe tells whether the next line has started to arrive
        if not select.select([self.proc.stdout], [], [], timeout_s)[0]:
            raise self._failed(f"gave no answer in {timeout_s:g} s", exit_wait_s=0)
        line = self.proc.stdout.readline()
        if not line:
            raise self._failed("exited")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise self._failed(f"answered {line.strip()[:80]!r}", exit_wait_s=0) from None

    def step(self, name: str) -> float:
        try:
            self.proc.stdin.write(name + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise self._failed("exited") from None
        return self.reply(STEP_TIMEOUT_S)["ms"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()
