"""Scratch projects and stage processes, for tests that run the real stages or the real `dvc repro`.

Scratch projects: `copy_project` (a git copy of the pipeline for `dvc repro`), `scratch_params` (just a
params.yaml, for running stages directly) and `set_params` (change one). Processes: `start_stage`,
`wait_stage` and `run_stage` for `python -m <module>` with this checkout's package, `run_main` for a
module's command line in this process; `run` for dvc and git, and `stages_ran` to read what a `dvc repro` ran.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline import profiles

from pipeline.lib import cli, registry

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ["pipeline", "params.yaml", "dvc.yaml", "studies/dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore"]
# What the scratch-project tests override, so that every stage runs in seconds on the tiny archive.
TINY = {"preprocess.train_limit": 0, "preprocess.test_limit": 0, **{f"models.{m}.epochs": 1 for m in registry.names()},
        "lstm_step.warmup_steps": 1,
        "lstm_step.rounds": 3, "collapse.seeds": 1, "collapse.epochs": 1, "collapse.train_limit": 0,
        "collapse.test_limit": 0, "collapse.probe_images": 20, "collapse.probe_every": 2, "collapse.keras2": False}
# What a plain `dvc repro` of a fresh scratch project runs, in order (the studies are not in dvc.yaml).
STAGES = ["download", "preprocess", *(f"{stage}@{m}" for stage in ("train", "evaluate") for m in registry.names()),
          "lstm-step"]


def run(cmd, cwd) -> str:
    """Run `cmd` (dvc, git, python) in `cwd` with this venv first on PATH; fail the test on non-zero exit."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def stages_ran(output: str) -> list[str]:
    """The stages a `dvc repro` ran, in order, read from its output, as DVC addresses them: `train@parallel`
    in dvc.yaml, `studies/dvc.yaml:collapse` in another file."""
    return re.findall(r"Running stage '([^']+)'", output)


def start_stage(project: Path, *args: str, **env: str) -> subprocess.Popen:
    """`python -m <args>` (a stage, or any module) in `project`, with this checkout's `pipeline` package
    importable and `env` on top of this process's environment; stdout and stderr are pipes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen([sys.executable, "-m", *args], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_stage(proc: subprocess.Popen, timeout: float | None = 300) -> tuple[int, str, str]:
    """Wait for a process from `start_stage`: (exit code, stdout, stderr). One still running after
    `timeout` seconds is killed, and the test fails with `subprocess.TimeoutExpired`."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


def run_main(project: Path, module, *args: str, monkeypatch, capsys) -> tuple[int, str, str]:
    """`python -m <module> ARGS` in `project`, run in this process (`cli.run`, as `cli.main` runs it):
    (exit code, stdout, stderr). What it calls is seen by coverage and by the mutation tester, which a
    stage process hides from them."""
    monkeypatch.chdir(project)
    handler = signal.getsignal(signal.SIGTERM)  # cli.run installs its own; the test process keeps pytest's
    try:
        code = cli.run(module.main, list(args), prog=module.__name__)
    finally:
        signal.signal(signal.SIGTERM, handler)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_stage(project: Path, *args: str, timeout: float | None = 300, **env: str) -> tuple[int, str, str]:
    """`start_stage`, waited for: (exit code, stdout, stderr); see `wait_stage` for `timeout`."""
    return wait_stage(start_stage(project, *args, **env), timeout)


def copy_project(root: Path, project: Path) -> Path:
    """A fresh git repository at `project` holding the pipeline's code and configuration."""
    for name in PROJECT_FILES:
        src, dst = root / name, project / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    run(["git", "init", "-q"], project)
    run(["git", "config", "user.email", "test@example.org"], project)
    run(["git", "config", "user.name", "test"], project)
    return project


def scratch_params(project: Path, **changes) -> Path:
    """`project`/params.yaml (`project` made if need be): this checkout's params.yaml with the dotted-key
    `changes` of `set_params`. Returns `project`."""
    project.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    if changes:
        set_params(project, **changes)
    return project


def set_params(project: Path, **changes) -> None:
    """Set dotted keys (`"models.parallel.epochs": 2`) in `project`/params.yaml; new keys too."""
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(profiles.apply(yaml.safe_load(path.read_text()), changes, allow_new=True), sort_keys=False))
