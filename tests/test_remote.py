"""The shared cache: a second machine pulls what the first one computed instead of redoing it.

The real DVC against a local-directory remote (the same commands as S3, GCS or SSH, README "Share the
cache"): `dvc repro`, `dvc push`, a fresh `git clone`, `dvc pull`, and then nothing left to run. The
HTTP server that served the archive is gone by then, so the clone cannot have downloaded it.

Slow (about two minutes): every stage runs once on the tiny archive, evaluate once more in the clone.
"""

import json

import pytest

from tests.project import TINY, copy_project, run, set_params
from tests.servers import serve
from tests.test_pipeline_e2e import STAGES, stages_ran

PUSHED = ["data/cifar-10-python.tar.gz", "data/prepared/train.npz", "data/prepared/test.npz",
          "models/sequential.keras", "models/parallel.keras"]


@pytest.mark.slow
def test_a_fresh_clone_pulls_data_and_models_and_retrains_nothing(root, tmp_path, tiny_archive):
    archive, md5 = tiny_archive
    project = copy_project(root, tmp_path / "first")
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--default", "shared", str(remote)], project)
    with serve(archive.parent) as (url, server):
        set_params(project, **{"download.url": f"{url}/{archive.name}", "download.md5": md5, **TINY})
        assert stages_ran(run(["dvc", "repro"], project)) == STAGES
    assert server.requests == [""]
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "tiny run"], project)
    pushed = run(["dvc", "push"], project)
    assert f"{len(PUSHED)} files pushed" in pushed, pushed
    assert not run(["dvc", "status", "--cloud"], project).count("new:")  # everything cached is in the remote

    clone = tmp_path / "second"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not any((clone / path).exists() for path in PUSHED)
    run(["dvc", "pull"], clone)
    for path in PUSHED:
        assert (clone / path).read_bytes() == (project / path).read_bytes(), path
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone)
    assert stages_ran(run(["dvc", "repro"], clone)) == []  # nothing to download, prepare or train

    # Scoring the pulled model needs no training: only evaluate runs, and it scores what the first machine did.
    assert stages_ran(run(["dvc", "repro", "--force", "--single-item", "evaluate@sequential"], clone)) == [
        "evaluate@sequential"]
    first, second = (json.loads((p / "metrics" / "evaluate-sequential.json").read_text()) for p in (project, clone))
    assert second["test_accuracy"] == first["test_accuracy"] and second["test_images"] == first["test_images"]
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone)
