"""How every command of the package starts and ends: argparse, one-line errors, exit codes, interrupts.

Each stage and tool ends with `if __name__ == "__main__": cli.main(main)`, where `main(argv)` parses
its arguments with `cli.ArgumentParser` (the gate calls `run` from its own `main`, which its tests call
for the exit status). `run` turns a `PipelineError` into one line on stderr
(`pipeline.<module>: error: ...`) and exit 1, a usage error into one line and exit 2, and Ctrl-C or
SIGTERM into one line and exit 130. Outputs are written through `pipeline.atomic`, so an error or an
interrupt never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from pipeline.params import PipelineError


class UsageError(PipelineError):
    """A command line the command cannot take: exit 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises `UsageError` (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


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


def main(main_function, *, error_exit: int = 1) -> None:
    """Run a module's `main` as `python -m pipeline.<module>` and exit with its status."""
    main_module = sys.modules["__main__"]
    spec = getattr(main_module, "__spec__", None)  # None when run as a file rather than with -m
    prog = spec.name if spec else f"pipeline.{Path(main_module.__file__).stem}"
    sys.exit(run(main_function, prog=prog, error_exit=error_exit))
