"""Keep the backends' native start-up notices off a stage's stderr, and nothing else.

TensorFlow 2.21 logs through Abseil before anything calls `absl::InitializeLog()`, and Abseil then
writes every message to stderr whatever its level: `TF_CPP_MIN_LOG_LEVEL`, `GLOG_minloglevel` and
absl's Python logging settings no longer silence them (tried here with TF 2.21.0). On a CPU machine
every stage printed lines such as `E0000 ... failed call to cuInit: ... CUDA error`, which read like
failures. So a stage's file descriptor 2 goes through a pipe, and a thread forwards everything except
whole lines that are one of the known harmless `NOTICES`. Abseil writes each message with one write
call, so a notice arrives as a whole line; anything else, including partial lines such as progress
bars, is forwarded as it comes. At exit the original stderr is restored and the pipe drained.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# Start-up notices of TensorFlow's C++ runtime on a machine without a GPU; each harmless. Anything
# else its runtime logs (a real error) still reaches stderr.
NOTICES = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    rb"|[IWE]\d{4} [\d:. ]+\d+ (?:port\.cc:\d+\] oneDNN custom operations are on"
    rb"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
    rb"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    rb"|cuda_platform\.cc:\d+\] failed call to cuInit"
    rb"|cuda_executor\.cc:\d+\] failed call to cuInit"
    rb"))"
)


def drop_notices(chunk: bytes) -> bytes:
    """`chunk` without its complete lines that are NOTICES; a trailing partial line is kept."""
    *lines, rest = chunk.split(b"\n")
    return b"".join(line + b"\n" for line in lines if not NOTICES.match(line)) + rest


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _pump(read_fd: int, out_fd: int) -> None:
    while chunk := os.read(read_fd, 1 << 16):
        _write_all(out_fd, drop_notices(chunk))


def filter_stderr() -> None:
    """Route this process's fd 2 (and its children's) through the notice filter until exit."""
    original = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd, original), name="native-log-filter", daemon=True)
    pump.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end held here: the pump reads to its end
        pump.join(timeout=10)

    atexit.register(restore)
