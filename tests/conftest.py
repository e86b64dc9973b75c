"""Shared fixtures: the project root, the synthetic archive, and the real mirror from ../shared."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline  # noqa: F401  (sets the backend environment before anything imports keras)
from tests import archives
from tests.project import run_main

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MIRROR_TOOL = SHARED / "tools" / "make-cifar10-mirror"


@pytest.fixture(autouse=True)
def _mutation_stats_stay_in_this_process(monkeypatch):
    """Under `make mutate`, mutmut first counts which tests call which function (MUTANT_UNDER_TEST=stats).
    It counts in this process only: a stage process a test starts would inherit the mode and look for
    mutmut's configuration in its own scratch directory. The process keeps the mode without the variable."""
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        monkeypatch.delenv("MUTANT_UNDER_TEST")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture
def in_process(monkeypatch, capsys):
    """`in_process(project, module, *args)`: a module's command line run in this process, in `project`
    (tests.project.run_main): (exit code, stdout, stderr)."""
    return functools.partial(run_main, monkeypatch=monkeypatch, capsys=capsys)


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> tuple[Path, str]:
    """A synthetic archive in the official layout (200 train, 100 test images) and its md5."""
    path = tmp_path_factory.mktemp("tiny") / "cifar-10-python.tar.gz"
    return path, archives.write_archive(path, archives.official_members())


@pytest.fixture(scope="session")
def real_mirror(tmp_path_factory) -> tuple[Path, str]:
    """A small archive of real CIFAR-10 images (1,000 train, 100 test per class) and its md5.

    Uses $CIFAR10_SMALL_MIRROR when it names one (the Makefile builds it), else builds one from
    ../shared; skips when ../shared is absent.
    """
    given = os.environ.get("CIFAR10_SMALL_MIRROR")
    if given and Path(given).is_file():
        path = Path(given)
    else:
        if not MIRROR_TOOL.is_file():
            pytest.skip(f"real-data test needs {MIRROR_TOOL} (the shared folder beside the project)")
        out = tmp_path_factory.mktemp("mirror")
        subprocess.run(
            [sys.executable, str(MIRROR_TOOL), str(out), "--per-class-train", "1000", "--per-class-test", "100"],
            check=True, capture_output=True,
        )
        path = out / "cifar-10-python.tar.gz"
    from pipeline.lib.fetch import md5_of

    return path, md5_of(path)
