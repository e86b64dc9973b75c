"""Multi-seed runs through DVC's own queue, and the report over them: real `dvc exp run --queue`,
real `dvc queue start`, real training on the tiny archive."""

import json
import time

import pandas as pd
import pytest

from tests.project import TINY, copy_project, run, run_stage, set_params


def wait_for_queue(project, timeout_s=900):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project)
        if not any(state in status for state in ("Queued", "Running")):
            assert "Failed" not in status, status
            return status
        time.sleep(3)
    raise AssertionError(f"queue still busy after {timeout_s} s:\n{status}")


@pytest.mark.slow
def test_queued_seeds_and_report(root, tmp_path, real_mirror, monkeypatch):
    archive, md5 = real_mirror
    project = copy_project(root, tmp_path / "project")
    # Real images (on the synthetic archive every seed scores exactly 0.1000, which would test little),
    # a 1,000/500 subset, unit-scaled, one epoch.
    set_params(project, **{"download.url": archive.as_uri(), "download.md5": md5, **TINY,
                           "preprocess.normalize": "unit", "preprocess.train_limit": 1000,
                           "preprocess.test_limit": 500})
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "tiny"], project)
    run(["dvc", "repro", "evaluate"], project)  # the baseline, seed 0: both models
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "seed 0"], project)

    # One experiment per seed; seed 0 repeats the baseline, and training is deterministic.
    queued = run(["dvc", "exp", "run", "--queue", "evaluate@sequential", "-S", "train.seed=range(0,3)"], project)
    assert queued.count("Queued experiment") == 3
    run(["dvc", "queue", "start", "-j", "1"], project)
    wait_for_queue(project)

    # The accuracies straight from each experiment's committed metrics, not through the report.
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], project).split()
    by_seed = {}
    for ref in refs:
        trained = json.loads(run(["git", "show", f"{ref}:metrics/train-sequential.json"], project))
        scored = json.loads(run(["git", "show", f"{ref}:metrics/evaluate-sequential.json"], project))
        by_seed[trained["seed"]] = scored["test_accuracy"]
    assert sorted(by_seed) == [0, 1, 2]
    baseline = json.loads((project / "metrics" / "evaluate-sequential.json").read_text())["test_accuracy"]
    assert by_seed[0] == baseline

    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", run(["sh", "-c", "echo $PATH"], project).strip())
    code, _, err = run_stage(project, "pipeline.report", "--out", "reports/seeds")
    assert code == 0, err
    summary = pd.read_csv(project / "reports" / "seeds.csv")
    sequential = summary[summary["source"] == "train-sequential"]
    assert len(sequential) == 1  # one setting: the seeds differ, nothing else
    row = sequential.iloc[0]
    assert row["runs"] == 3 and row["seeds"] == "0,1,2"
    accuracies = pd.Series(list(by_seed.values()))
    assert accuracies.nunique() > 1  # else mean and std below would test little
    assert row["mean"] == pytest.approx(accuracies.mean()) and row["std"] == pytest.approx(accuracies.std())
    # The baseline's parallel metrics came along unchanged in every experiment: still one run.
    assert summary[summary["source"] == "train-parallel"]["runs"].tolist() == [1]
    table = (project / "reports" / "seeds.md").read_text()
    assert "train-sequential" in table and f"{accuracies.mean():.4f} ± {accuracies.std():.4f}" in table
    assert len(pd.read_csv(project / "reports" / "seeds-runs.csv")) == 4

    # Exported to files (what a clone of main gets), the same runs give the same report. Seed 0's
    # experiment repeated the baseline commit's run bit for bit: the baseline commit is exported instead.
    names = {json.loads(run(["git", "show", f"{ref}:metrics/train-sequential.json"], project))["seed"]: ref.rsplit("/", 1)[-1]
             for ref in refs}
    code, _, err = run_stage(project, "pipeline.runs", "export", names[0])
    assert code == 1 and "repeated that run" in err
    for what in (names[1], names[2], "HEAD"):
        code, _, err = run_stage(project, "pipeline.runs", "export", what, *(["--name", "seed-0"] if what == "HEAD" else []))
        assert code == 0, err
    code, _, err = run_stage(project, "pipeline.report", "--runs", "reports/runs", "--out", "reports/from-files")
    assert code == 0, err
    from_files = pd.read_csv(project / "reports" / "from-files.csv")
    pd.testing.assert_frame_equal(from_files, summary)
