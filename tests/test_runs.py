"""Runs on main (pipeline/runs.py): exporting a finished run into reports/runs/<name>/, and `make report`
rebuilding reports/seeds.md from those files alone (the working tree's code over the files git tracks)."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import report, runs

from pipeline.lib import params
from pipeline.lib.params import PipelineError
from tests.project import ROOT, run


def commit(repo, message, files):
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)
    return run(["git", "rev-parse", "HEAD"], repo).strip()


@pytest.fixture
def repo(tmp_path):
    where = tmp_path / "repo"
    where.mkdir()
    run(["git", "init", "-q"], where)
    run(["git", "config", "user.email", "t@example.org"], where)
    run(["git", "config", "user.name", "t"], where)
    trained = {"model": "sequential", "seed": 0, "epochs": 3, "train_images": 10000}
    commit(where, "baseline", {"params.yaml": (ROOT / "params.yaml").read_text(), "dvc.lock": "schema: '2.0'\n",
                               "metrics/train-sequential.json": json.dumps(trained),
                               "metrics/evaluate-sequential.json": json.dumps({"test_accuracy": 0.2})})
    return where


def test_export_takes_what_the_run_wrote_and_never_overwrites(repo, in_process):
    sha = commit(repo, "seed 1", {"metrics/train-sequential.json": json.dumps({"model": "sequential", "seed": 1}),
                                  "plots/train-sequential.csv": "epoch,loss\n1,2.0\n", "README.md": "not a result\n"})
    code, out, err = in_process(repo, runs, "export", "HEAD", "--name", "seed-1")
    assert code == 0, err
    dest = repo / "reports" / "runs" / "seed-1"
    record = yaml.safe_load((dest / "run.yaml").read_text())
    assert record["rev"] == sha and record["files"] == ["metrics/train-sequential.json", "plots/train-sequential.csv"]
    assert record["baseline"] == run(["git", "rev-parse", "HEAD~1"], repo).strip()
    assert (dest / "params.yaml").read_text() == (ROOT / "params.yaml").read_text()
    assert (dest / "dvc.lock").is_file() and not (dest / "studies").exists()  # that commit had no studies lock
    assert json.loads((dest / "metrics/train-sequential.json").read_text())["seed"] == 1
    assert not (dest / "metrics/evaluate-sequential.json").exists()  # unchanged: another run's result
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))

    code, _, err = in_process(repo, runs, "export", "HEAD~1", "--name", "seed-1")
    assert code == 1 and err.count("\n") == 1 and "already exists" in err
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    assert [p.name for p in (repo / "reports" / "runs").iterdir()] == ["seed-1"]  # no staging left behind

    commit(repo, "docs", {"README.md": "still not a result\n"})
    code, _, err = in_process(repo, runs, "export", "HEAD")
    assert code == 1 and "wrote no metrics or plots file" in err and err.count("\n") == 1
    code, _, err = in_process(repo, runs, "export", "HEAD", "--files", "metrics/evaluate-sequential.json")
    assert code == 0, err
    code, _, err = in_process(repo, runs, "export", "no-such-experiment")
    assert code == 1 and "neither an experiment" in err
    code, _, err = in_process(repo, runs, "export", "--", "--output=written")
    assert code == 2 and "'--output=written': not a revision" in err and not (repo / "written").exists()

    loaded = {r["name"]: r for r in runs.load(repo / "reports" / "runs")}
    assert set(loaded) == {"seed-1", run(["git", "rev-parse", "--short=7", "HEAD"], repo).strip()}
    assert loaded["seed-1"]["metrics"] == {"metrics/train-sequential.json": {"model": "sequential", "seed": 1}}


def test_an_unreadable_run_is_one_line(repo, in_process):
    broken = repo / "reports" / "runs" / "broken"
    (broken / "metrics").mkdir(parents=True)
    (broken / "run.yaml").write_text("name: broken\nrev: abc\ntimestamp: '2026-11-30'\n")
    (broken / "metrics" / "train-sequential.json").write_text("{not json")
    code, _, err = in_process(repo, report, "--runs", "reports/runs")
    assert code == 1 and err.count("\n") == 1 and "reports/runs/broken: unreadable (JSONDecodeError" in err
    (broken / "metrics" / "train-sequential.json").write_text(json.dumps({"model": "sequential"}))
    (broken / "metrics" / "evaluate-sequential.json").write_text(json.dumps({"test_accuracy": 0.3}))
    code, _, err = in_process(repo, report, "--runs", "reports/runs")
    assert code == 1 and err.count("\n") == 1 and "run broken (abc): its metrics files lack" in err and "seed" in err
    (repo / "afile").write_text("")
    code, _, err = in_process(repo, runs, "export", "HEAD", "--out", "afile")
    assert code == 1 and err.count("\n") == 1 and "--out afile:" in err


def test_make_report_rebuilds_seeds_md_from_the_runs_on_main(tmp_path, monkeypatch):
    # The working tree's report code over the working tree's runs, so a change to either is tested before it
    # is committed; every file under reports/runs is in git, so a clone rebuilds the same table.
    untracked = run(["git", "ls-files", "--others", "--exclude-standard", "reports/runs"], ROOT)
    assert untracked == "", f"files under reports/runs that git does not track: {untracked}"
    monkeypatch.chdir(ROOT)
    report.main(["--runs", "reports/runs", "--out", str(tmp_path / "seeds")])
    for suffix in (".md", ".csv", "-runs.csv"):
        assert (tmp_path / f"seeds{suffix}").read_text() == (ROOT / "reports" / f"seeds{suffix}").read_text(), suffix
    # Every row comes from a run directory that holds its metrics, and the tutorial's rows are there.
    table = pd.read_csv(tmp_path / "seeds.csv")
    assert set(pd.read_csv(tmp_path / "seeds-runs.csv")["experiment"]) <= {p.name for p in (ROOT / "reports" / "runs").iterdir()}
    tutorial = table.dropna(subset=["tutorial"])
    assert sorted(set(tutorial["model"])) == ["parallel", "sequential"]


def test_an_experiment_is_found_by_its_name_or_its_ref_and_a_branch_is_no_experiment(repo, monkeypatch):
    monkeypatch.chdir(repo)
    base = run(["git", "rev-parse", "HEAD"], repo).strip()
    exp = commit(repo, "seed 3", {"metrics/train-sequential.json": json.dumps({"seed": 3})})
    run(["git", "update-ref", "refs/exps/ab/cdef0123/seed-3", exp], repo)
    run(["git", "update-ref", "refs/exps/ab/cdef0123/other", base], repo)
    run(["git", "branch", "a-branch", base], repo)
    assert runs.resolve("seed-3") == (exp, "seed-3")
    assert runs.resolve("refs/exps/ab/cdef0123/seed-3") == (exp, "seed-3")
    assert runs.resolve("HEAD~1") == (base, "") and runs.resolve("a-branch") == (base, "")
    for missing in ("cdef0123/seed-3", "seed-4"):
        with pytest.raises(PipelineError) as refused:
            runs.resolve(missing)
        assert str(refused.value) == f"{missing}: neither an experiment (git for-each-ref refs/exps) nor a commit"


def test_the_files_a_run_wrote_are_those_added_or_changed_in_the_metrics_and_plots(repo, monkeypatch):
    monkeypatch.chdir(repo)
    paths = params.load(ROOT / "params.yaml").paths
    root = run(["git", "rev-parse", "HEAD"], repo).strip()
    assert runs.first_parent(root) is None
    assert runs.written_files(root, None, paths) == ["metrics/evaluate-sequential.json", "metrics/train-sequential.json"]
    run(["git", "mv", "metrics/evaluate-sequential.json", "metrics/evaluate-renamed.json"], repo)
    run(["git", "rm", "-q", "metrics/train-sequential.json"], repo)
    renamed = commit(repo, "rename one, delete one, add a curve", {"plots/curve.csv": "epoch\n1\n", "notes.md": "x\n"})
    assert runs.first_parent(renamed) == root
    # a renamed file is a new file of the run; a deleted one is no result; files outside metrics/ and plots/ are not
    assert runs.written_files(renamed, root, paths) == ["metrics/evaluate-renamed.json", "plots/curve.csv"]
    commit(repo, "later", {"plots/later.csv": "epoch\n2\n"})
    assert runs.written_files(renamed, root, paths) == ["metrics/evaluate-renamed.json", "plots/curve.csv"]


@pytest.mark.parametrize("record, message", [
    ("name: a\nrev: b\n", "{path}: needs name, rev and timestamp"),
    ("- name\n- rev\n- timestamp\n", "{path}: needs name, rev and timestamp"),
    ("name: [a\n", "{dir}: unreadable (ParserError: while parsing a flow sequence)"),
])
def test_a_run_record_without_what_the_report_needs_is_one_line(tmp_path, record, message):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.yaml").write_text(record)
    with pytest.raises(PipelineError) as refused:
        runs.load(tmp_path)
    assert str(refused.value) == message.format(path=tmp_path / "r" / "run.yaml", dir=tmp_path / "r")
    (tmp_path / "r" / "run.yaml").write_text("name: a\nrev: b\ntimestamp: 2026-12-01\n")
    assert runs.load(tmp_path) == [{"name": "a", "rev": "b", "timestamp": "2026-12-01", "metrics": {}}]


def test_the_run_record_word_for_word_and_what_export_refuses(repo, in_process):
    sha = commit(repo, "seed 4", {"metrics/train-sequential.json": json.dumps({"seed": 4}),
                                  "plots/deep/curve.csv": "epoch\n1\n"})
    parent = run(["git", "rev-parse", "HEAD~1"], repo).strip()
    date = run(["git", "log", "-1", "--format=%cI", sha], repo).strip()
    run(["git", "update-ref", "refs/exps/ab/cdef0123/seed-4", sha], repo)
    assert in_process(repo, runs, "export", "seed-4")[0] == 0
    assert (repo / "reports/runs/seed-4/run.yaml").read_text() == (
        f"name: seed-4\nexperiment: seed-4\nrev: {sha}\nbaseline: {parent}\ntimestamp: '{date}'\n"
        "files:\n- metrics/train-sequential.json\n- plots/deep/curve.csv\n"
        "exported_with: python -m pipeline.runs export seed-4\n")
    assert (repo / "reports/runs/seed-4/plots/deep/curve.csv").read_text() == "epoch\n1\n"
    assert in_process(repo, runs, "export", "HEAD", "--name", "again")[0] == 0
    record = yaml.safe_load((repo / "reports/runs/again/run.yaml").read_text())
    assert record["experiment"] is None and record["exported_with"] == "python -m pipeline.runs export HEAD --name again"
    short = sha[:7]
    for args, message in (
            (["HEAD", "--name", "a/b"], "--name 'a/b': a run's name is one plain directory name"),
            (["HEAD", "--name", ".hidden"], "--name '.hidden': a run's name is one plain directory name"),
            (["HEAD", "--name", "x", "--files", "metrics/none.json"], f"metrics/none.json is not in {short}")):
        code, _, err = in_process(repo, runs, "export", *args)
        assert (code, err) == (1, f"pipeline.runs: error: {message}\n")
    assert sorted(p.name for p in (repo / "reports/runs").iterdir()) == ["again", "seed-4"]  # nothing half-written
    commit(repo, "docs", {"README.md": "no result\n"})
    head = run(["git", "rev-parse", "HEAD"], repo).strip()
    code, _, err = in_process(repo, runs, "export", "HEAD")
    assert err == (f"pipeline.runs: error: HEAD ({head[:7]}) wrote no metrics or plots file that differs from its parent "
                   f"{short}: it repeated that run; export the parent, or name the files with --files\n")


def test_list_shows_each_exported_run_and_a_revision_like_an_option_is_refused(repo, in_process):
    sha = commit(repo, "seed 5", {"metrics/train-sequential.json": json.dumps({"seed": 5})})
    assert in_process(repo, runs, "export", "HEAD", "--name", "seed-5", "--out", "elsewhere")[0] == 0
    date = run(["git", "log", "-1", "--format=%cI", sha], repo).strip()
    assert in_process(repo, runs, "list", "--out", "elsewhere") == (0, f"seed-5\t{sha[:7]}\t{date}\t1 metrics files\n", "")
    code, _, err = in_process(repo, runs, "export", "--", "-q")
    assert code == 2 and err.startswith("pipeline.runs: error: run '-q': not a revision")


def test_export_stages_inside_out_and_records_the_commits_own_date(repo, in_process, tmp_path, monkeypatch, request):
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2001-02-03T04:05:06+00:00")  # neither now nor HEAD's date
    older = commit(repo, "seed 6", {"metrics/train-sequential.json": json.dumps({"seed": 6})})
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2030-01-01T00:00:00+00:00")
    commit(repo, "seed 7", {"metrics/train-sequential.json": json.dumps({"seed": 7})})
    monkeypatch.delenv("GIT_COMMITTER_DATE")
    # A staging folder outside --out would land in the system's temporary folder: put that on another file
    # system where there is one, so that moving it into place would fail (os.replace is atomic only within one).
    shm = Path("/dev/shm")
    other = shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != repo.stat().st_dev
    elsewhere = Path(tempfile.mkdtemp(dir=shm)) if other else tmp_path / "system-tmp"
    elsewhere.mkdir(exist_ok=True)
    request.addfinalizer(lambda: shutil.rmtree(elsewhere, ignore_errors=True))
    monkeypatch.setattr("tempfile.tempdir", str(elsewhere))
    assert in_process(repo, runs, "export", "HEAD~1")[0] == 0
    record = yaml.safe_load((repo / "reports/runs" / older[:7] / "run.yaml").read_text())
    assert record["timestamp"] == "2001-02-03T04:05:06+00:00"
    assert record["exported_with"] == "python -m pipeline.runs export HEAD~1" and list(elsewhere.iterdir()) == []


def test_a_root_commit_without_results_is_refused(tmp_path, in_process):
    run(["git", "init", "-q"], tmp_path)
    run(["git", "config", "user.email", "t@example.org"], tmp_path)
    run(["git", "config", "user.name", "t"], tmp_path)
    sha = commit(tmp_path, "no results", {"params.yaml": (ROOT / "params.yaml").read_text()})
    code, _, err = in_process(tmp_path, runs, "export", "HEAD")
    assert (code, err) == (1, f"pipeline.runs: error: HEAD ({sha[:7]}) wrote no metrics or plots file that differs from its "
                              "parent : it repeated that run; export the parent, or name the files with --files\n")
