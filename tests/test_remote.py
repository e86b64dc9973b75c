"""The shared cache and a CI fan-out: machines pull what another computed instead of redoing it.

The real DVC against a local-directory remote and a git remote (the same commands as S3, GCS or SSH and
a hosted git, docs/scale-out.md):
- `dvc repro`, `dvc push`, a fresh `git clone`, `dvc pull`, and then nothing left to run. The HTTP
  server that served the archive is gone by then, so the clone cannot have downloaded it.
- A CI job in that clone runs one seed as a named experiment and `dvc exp push`es it; a gathering job
  in another clone `dvc exp pull`s it, with its model, and the seeds report counts it.

Slow (about two and a half minutes): every stage runs once on the tiny archive; evaluate once more, and
one seed's training, in the clones.
"""

import json

import pandas as pd
import pytest

from tests.project import STAGES, TINY, copy_project, run, set_params, stages_ran
from tests.servers import serve

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
    assert "Cache and remote 'shared' are in sync" in run(["dvc", "status", "--cloud"], project)

    clone = tmp_path / "second"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not any((clone / path).exists() for path in PUSHED)
    run(["dvc", "pull"], clone)
    for path in PUSHED:
        assert (clone / path).read_bytes() == (project / path).read_bytes(), path
    assert "Data and pipelines are up to date" in run(["dvc", "status", "dvc.yaml"], clone)  # the benchmark; the study never ran
    assert stages_ran(run(["dvc", "repro"], clone)) == []  # nothing to download, prepare or train

    # Scoring the pulled model needs no training: only evaluate runs, and it scores what the first machine did.
    assert stages_ran(run(["dvc", "repro", "--force", "--single-item", "evaluate@sequential"], clone)) == [
        "evaluate@sequential"]
    first, second = (json.loads((p / "metrics" / "evaluate-sequential.json").read_text()) for p in (project, clone))
    assert second["test_accuracy"] == first["test_accuracy"] and second["test_images"] == first["test_images"]
    assert "Data and pipelines are up to date" in run(["dvc", "status", "dvc.yaml"], clone)  # the benchmark; the study never ran

    # CI fan-out: this clone is one job of a seed matrix; it shares its experiment through git and the remote.
    run(["dvc", "exp", "run", "evaluate@sequential", "-S", "train.seed=1", "-n", "seed-1"], clone)
    run(["dvc", "exp", "push", "origin", "seed-1"], clone)  # the exp's git ref to origin, its model to the remote

    gather = tmp_path / "gather"  # the job that collects the matrix
    run(["git", "clone", "-q", str(project), str(gather)], tmp_path)
    run(["dvc", "exp", "pull", "origin", "seed-1"], gather)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], gather))
    names = [rev.get("name") for base in shown for exp in base.get("experiments") or [] for rev in exp["revs"]]
    assert names == ["seed-1"]
    run(["dvc", "exp", "apply", "seed-1"], gather)
    # Its model came too: the seed's stages are up to date (train@parallel, not in the exp, is not).
    assert "Data and pipelines are up to date" in run(["dvc", "status", "evaluate@sequential"], gather)
    run(["git", "reset", "-q", "--hard"], gather)
    run(["python", "-m", "pipeline.report"], gather)
    seeds = pd.read_csv(gather / "reports" / "seeds-runs.csv")
    assert sorted(seeds.loc[seeds["model"] == "sequential", "seed"]) == [0, 1]  # the baseline and the job's seed
