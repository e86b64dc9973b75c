"""Keep the backends' native start-up notices off a stage's stderr, and nothing else.

TensorFlow 2.21 logs through Abseil before anything calls `absl::InitializeLog()`, and Abseil then
writes every message to stderr whatever its level: the environment variables `TF_CPP_MIN_LOG_LEVEL=3`
and `GLOG_minloglevel=3`, and absl's Python logging level, no longer silence them (tried here with
TF 2.21.0). On a CPU machine every stage
printed lines such as `E0000 ... failed call to cuInit: ... CUDA error`, which read like failures.

So a stage's file descriptor 2 (and its children's) goes into a pipe, and a separate pump process,
this file run as a script, forwards everything to the original stderr except whole lines that are one
of the known harmless `NOTICES`. Abseil writes each message with one write call, so a notice arrives
as a whole line; anything else, partial lines such as progress bars included, is forwarded as it
comes. Because the pump is its own process, it drains the pipe to its end whatever happens to the
stage (an abort or a segfault included), and it exits when the last writer is gone. It runs in its own
session, so Ctrl-C at a terminal reaches the stage and not the pump. If whoever reads stderr goes away,
the pump exits and the stage's next write to stderr fails as it would without the filter. After a hard
death (SIGKILL, a segfault) the pump still forwards the stage's last lines, but possibly after whatever
started the stage has printed its own verdict.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys

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


def pump(read_fd: int = 0, out_fd: int = 1) -> None:
    """Copy `read_fd` to `out_fd` without the notices, until end of file or until `out_fd` is closed."""
    while chunk := os.read(read_fd, 1 << 16):
        data = drop_notices(chunk)
        try:
            while data:
                data = data[os.write(out_fd, data):]
        except BrokenPipeError:
            return


def filter_stderr() -> None:
    """Route this process's fd 2, and its children's, through the pump until exit."""
    try:
        original = os.dup(2)
    except OSError:  # started with stderr closed: nothing to filter
        return
    read_fd, write_fd = os.pipe()
    pumper = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__)], stdin=read_fd, stdout=original,
                              stderr=original, start_new_session=True)
    os.close(read_fd)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def restore() -> None:
        # Back to the original stderr: this closes the pipe's last write end held here, so the pump
        # reads to the end and exits (once children that inherited the pipe have exited too).
        sys.stderr.flush()
        os.dup2(original, 2)
        try:
            pumper.wait(timeout=10)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a child still holds the pipe; or a second Ctrl-C
            pass

    atexit.register(restore)


if __name__ == "__main__":
    pump()
