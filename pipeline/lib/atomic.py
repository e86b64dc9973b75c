"""Output files that appear whole or not at all: written to a temporary name, renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pipeline.lib.params import PipelineError


@contextlib.contextmanager
def atomic_output(path: Path | str):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    The temporary name keeps the suffix, because Keras picks the save format from it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"{path}: cannot create its folder: {exc.strerror}") from None
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path | str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: Path | str, text: str) -> None:
    """Write `text` to `path` atomically; a failure is one PipelineError naming the file."""
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"{path}: cannot write: {exc.strerror}") from None
