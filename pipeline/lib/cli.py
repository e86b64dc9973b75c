"""How every command of the package starts and ends: argparse, one-line errors, exit codes, interrupts.

Each stage and tool ends with `if __name__ == "__main__": cli.main(main)`, where `main(argv)` parses
its arguments with `cli.ArgumentParser` (the gate calls `run` from its own `main`, which its tests call
for the exit status). `run` turns a `PipelineError` into one line on stderr
(`pipeline.<module>: error: ...`) and exit 1, a usage error into one line and exit 2, and Ctrl-C or
SIGTERM into one line and exit 130. Outputs are written through `pipeline.lib.atomic`, so an error or an
interrupt never leaves a half-written file where a good one was.

Reports go to stdout through `emit`: when the reader has gone (`python -m pipeline.gate ... | head`),
the rest of the output is dropped quietly and the command still ends with its own status (a gate's
verdict). A BrokenPipeError from any other write ends the command quietly with 141, as a shell reports
a process that SIGPIPE stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from pipeline.lib.params import PipelineError


class UsageError(PipelineError):
    """A command line the command cannot take: exit 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises `UsageError` (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


BROKEN_PIPE_EXIT = 141


def _stdout_to_devnull() -> None:
    """The reader of stdout has gone: what is still to be written (and flushed at exit) goes nowhere."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def emit(text: str, end: str = "\n") -> None:
    """Print `text` on stdout; if the reader has gone, drop it and carry on (see the module docstring)."""
    try:
        sys.stdout.write(text + end)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()


def raise_interrupt(signum, frame):
    """SIGTERM handler: stop the way Ctrl-C does, so cleanup code runs."""
    raise KeyboardInterrupt


def interrupted(prog: str) -> str:
    return f"{prog}: interrupted; no output was replaced"


def run(main, argv=None, *, prog: str, error_exit: int = 1) -> int:
    """Call `main(argv)` as a command and return its exit status; errors and interrupts are one line."""
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        return main(argv) or 0
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return error_exit
    except KeyboardInterrupt:
        print(interrupted(prog), file=sys.stderr)
        return 130
    except BrokenPipeError:
        _stdout_to_devnull()
        return BROKEN_PIPE_EXIT


def main(main_function, *, error_exit: int = 1) -> None:
    """Run a module's `main` as `python -m pipeline.<module>` and exit with its status."""
    main_module = sys.modules["__main__"]
    spec = getattr(main_module, "__spec__", None)  # None when run as a file rather than with -m
    prog = spec.name if spec else f"pipeline.{Path(main_module.__file__).stem}"
    sys.exit(run(main_function, prog=prog, error_exit=error_exit))
