"""git, run for the tools that read the repository's history (pipeline.gate, pipeline.history, pipeline.runs):
one place that turns a failed or missing git into one PipelineError line, and that keeps a revision
from being read as an option.

A revision from the command line goes through `revision` (a leading `-` is refused in one line) and
is passed after `--end-of-options`, so `--since=--output=FILE` can never make git write a file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.lib.cli import UsageError
from pipeline.lib.params import PipelineError


def revision(rev: str, option: str) -> str:
    """`rev`, given as `option`, unless git could take it for an option: then one line (exit 2)."""
    if not rev or rev.startswith("-"):
        raise UsageError(f"{option} {rev!r}: not a revision (a revision never starts with '-' and is not empty)")
    return rev


def git(*args: str, repo: Path = Path("."), stdin: bytes | None = None) -> bytes:
    """`git -C repo args...`'s stdout; a failure is a PipelineError naming the command and git's last line."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True)
    except OSError as exc:
        raise PipelineError(f"cannot run git: {exc.strerror}") from None
    if done.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} failed: {(done.stderr.decode().strip().splitlines() or ['?'])[-1]}")
    return done.stdout
