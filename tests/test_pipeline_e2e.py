"""The real `dvc repro` in a temporary git copy of the project, downloading from a real HTTP server:
a plain `dvc repro` runs the benchmark and leaves the studies alone; `dvc repro studies/dvc.yaml` runs them.

Slow (about a minute): it runs every stage three times over, with TensorFlow starting in each.
"""

import json

import pytest

from pipeline.lib import registry
from tests.project import STAGES, TINY, copy_project, run, set_params, stages_ran
from tests.servers import serve


@pytest.fixture
def project(root, tmp_path):
    return copy_project(root, tmp_path / "project")


@pytest.mark.slow
def test_dvc_repro_end_to_end(project, tiny_archive):
    archive, md5 = tiny_archive
    with serve(archive.parent) as (url, server):
        set_params(
            project,
            **{"download.url": f"{url}/{archive.name}", "download.md5": md5, **TINY},
        )
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "tiny"], project)

        assert stages_ran(run(["dvc", "repro"], project)) == STAGES
        assert server.requests == [""]
        assert not (project / "metrics" / "collapse.json").exists()
        assert stages_ran(run(["dvc", "repro", "studies/dvc.yaml"], project)) == ["studies/dvc.yaml:collapse"]

        metrics = {p.name: json.loads(p.read_text()) for p in (project / "metrics").glob("*.json")}
        assert set(metrics) == {f"{kind}-{m}.json" for kind in ("train", "evaluate") for m in registry.names()} | {
            "lstm-step.json", "collapse.json"}
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
        assert stages_ran(run(["dvc", "repro", "studies/dvc.yaml"], project)) == []
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "one epoch"], project)

        set_params(project, **{"models.parallel.epochs": 2})
        assert stages_ran(run(["dvc", "repro"], project)) == ["train@parallel", "evaluate@parallel"]
        assert len(server.requests) == 1  # nothing downloaded again

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "two epochs"], project)
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "--json"], project))
    epochs = diff["metrics/train-parallel.json"]["epochs"]
    assert (epochs["old"], epochs["new"], epochs["diff"]) == (1, 2, 1)
