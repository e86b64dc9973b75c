"""The real `dvc repro` in a temporary git copy of the project, downloading from a real HTTP server.

Slow (about a minute): it runs every stage three times over, with TensorFlow starting in each.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project import set_params
from tests.servers import serve

PROJECT_FILES = ["pipeline", "params.yaml", "dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore"]
STAGES = ["download", "preprocess", "train-sequential", "train-parallel", "evaluate@sequential",
          "evaluate@parallel", "lstm-step"]


def run(cmd, cwd):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def stages_ran(output):
    return re.findall(r"Running stage '([\w@-]+)'", output)


@pytest.fixture
def project(root, tmp_path):
    project = tmp_path / "project"
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


@pytest.mark.slow
def test_dvc_repro_end_to_end(project, tiny_archive):
    archive, md5 = tiny_archive
    with serve(archive.parent) as (url, server):
        set_params(
            project,
            **{"download.url": f"{url}/{archive.name}", "download.md5": md5,
               "train.sequential.epochs": 1, "train.parallel.epochs": 1,
               "lstm_step.warmup_steps": 1, "lstm_step.rounds": 3},
        )
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "tiny"], project)

        assert stages_ran(run(["dvc", "repro"], project)) == STAGES
        assert server.requests == [""]

        metrics = {p.name: json.loads(p.read_text()) for p in (project / "metrics").glob("*.json")}
        assert set(metrics) == {"train-sequential.json", "train-parallel.json", "evaluate-sequential.json",
                                "evaluate-parallel.json", "lstm-step.json"}
        assert metrics["lstm-step.json"]["sequential"]["cpu_generic"]["rounds"] == 3
        assert metrics["train-sequential.json"]["param_count"] == 22_110
        assert metrics["train-parallel.json"]["param_count"] == 1_299_410
        for name in ("sequential", "parallel"):
            trained = metrics[f"train-{name}.json"]
            assert trained["epochs"] == 1 and trained["train_images"] == 200
            assert trained["train_images_per_s"] > 0 and trained["device"].startswith("cpu")
            scored = metrics[f"evaluate-{name}.json"]
            assert 0 <= scored["test_accuracy"] <= 1 and scored["test_images"] == 100
            assert scored["inference_images_per_s"] > 0
            assert len((project / "plots" / f"confusion-{name}.csv").read_text().splitlines()) == 101

        assert stages_ran(run(["dvc", "repro"], project)) == []
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "one epoch"], project)

        set_params(project, **{"train.parallel.epochs": 2})
        assert stages_ran(run(["dvc", "repro"], project)) == ["train-parallel", "evaluate@parallel"]
        assert len(server.requests) == 1  # nothing downloaded again

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "two epochs"], project)
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "--json"], project))
    epochs = diff["metrics/train-parallel.json"]["epochs"]
    assert (epochs["old"], epochs["new"], epochs["diff"]) == (1, 2, 1)
