"""git, run for the tools that read the repository's history (pipeline.history, pipeline.runs): one
place that turns a failed or missing git into one PipelineError line."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.params import PipelineError


def git(*args: str, repo: Path = Path("."), stdin: bytes | None = None) -> bytes:
    """`git -C repo args...`'s stdout; a failure is a PipelineError naming the command and git's last line."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True)
    except OSError as exc:
        raise PipelineError(f"cannot run git: {exc.strerror}") from None
    if done.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} failed: {(done.stderr.decode().strip().splitlines() or ['?'])[-1]}")
    return done.stdout
