"""pipeline/report.py's reading of experiments, on hand-made `dvc exp show` records (no DVC needed);
tests/test_seeds.py runs it over a real queue."""

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import report

from pipeline.lib import params
from tests.project import ROOT, run

PATHS = params.load().paths
ENV = {"backend": "tensorflow", "keras_version": "3.15.1", "device_name": "cpu"}
SETTING = {"normalize": "raw", "train_images": 10_000, "epochs": 3, "batch_size": 100, "learning_rate": 0.001}


def exp(name, timestamp, **files):
    return {"name": name, "rev": name * 7, "timestamp": timestamp, "metrics": {f"metrics/{k}.json": v for k, v in files.items()}}


def trained(seed, loss="crossentropy"):
    return {"seed": seed, "loss": loss, **SETTING, **ENV}


def study(accuracies, loss="clipped_crossentropy"):
    per_seed = {str(s): {"test_accuracy": a} for s, a in enumerate(accuracies)}
    return {"model": "parallel", "loss": loss, **SETTING, **ENV,
            "keras3": {"keras_version": "3.15.1", "per_seed": per_seed},
            "keras2": {"keras_version": "2.21.0", "per_seed": per_seed}}


def test_runs_count_each_setting_and_seed_once_and_the_newest_wins():
    found = [
        exp("base", "1", **{"train-sequential": trained(0), "evaluate-sequential": {"test_accuracy": 0.40},
                            "train-parallel": trained(0), "evaluate-parallel": {"test_accuracy": 0.30}}),
        # an experiment on the parallel model carries the sequential metrics along unchanged
        exp("seed1", "2", **{"train-sequential": trained(0), "evaluate-sequential": {"test_accuracy": 0.40},
                             "train-parallel": trained(1), "evaluate-parallel": {"test_accuracy": 0.34}}),
        # the same seed again, later (e.g. rerun on another machine): it replaces the older row
        exp("seed1-again", "3", **{"train-parallel": trained(1), "evaluate-parallel": {"test_accuracy": 0.36}}),
        # training without scoring (target train-parallel, not evaluate@parallel) is not a run
        exp("unscored", "4", **{"train-parallel": trained(5)}),
        exp("study", "5", collapse=study([0.10, 0.10, 0.52])),
    ]
    table = report.runs(found, PATHS)
    sources = table.groupby("source")["seed"].apply(list).to_dict()
    assert sources == {"train-sequential": [0], "train-parallel": [0, 1],
                       "collapse keras3": [0, 1, 2], "collapse keras2": [0, 1, 2]}
    assert table[(table.source == "train-parallel") & (table.seed == 1)]["test_accuracy"].tolist() == [0.36]
    assert set(table[table.source == "collapse keras2"]["keras_version"]) == {"2.21.0"}

    summary = report.aggregate(table).set_index("source")
    assert summary.loc["train-parallel", "runs"] == 2
    assert summary.loc["train-parallel", "mean"] == pytest.approx(0.33)
    assert summary.loc["train-parallel", "std"] == pytest.approx(pd.Series([0.30, 0.36]).std())
    assert summary.loc["collapse keras3", "collapsed"] == 2  # below 0.15
    assert summary.loc["collapse keras3", "seeds"] == "0,1,2"
    assert pd.isna(summary.loc["train-parallel", "tutorial"])  # 10k images, 3 epochs: not the protocol
    markdown = report.markdown(report.aggregate(table))
    assert "0.3300 ± 0.0424" in markdown and "clipped_crossentropy" in markdown


def test_the_tutorial_column_appears_only_for_its_protocol():
    protocol = {**trained(0), "train_images": 50_000, "epochs": 10}
    found = [exp("p", "1", **{"train-parallel": protocol, "evaluate-parallel": {"test_accuracy": 0.49}})]
    summary = report.aggregate(report.runs(found, PATHS))
    assert summary["tutorial"].tolist() == [0.10000001]


def test_metrics_from_before_a_setting_existed_read_as_its_default_and_missing_values_stay_rows():
    old = {k: v for k, v in trained(0).items() if k not in ("loss", "replicas")}  # before the loss and replicas keys
    no_device = {k: v for k, v in trained(1).items() if k != "device_name"}        # a setting left unrecorded (NaN)
    legacy_study = {k: v for k, v in study([params.COLLAPSED_BELOW, 0.5]).items() if k != "loss"}
    found = [exp("old", "1", **{"train-sequential": old, "evaluate-sequential": {"test_accuracy": 0.4}}),
             exp("nodev", "2", **{"train-sequential": no_device, "evaluate-sequential": {"test_accuracy": 0.3}}),
             exp("study", "3", collapse=legacy_study)]
    table = report.runs(found, PATHS)
    old_row = table[table.experiment == "old"].iloc[0]
    assert (old_row["loss"], old_row["replicas"]) == ("crossentropy", 1)
    assert set(table[table.source.str.startswith("collapse")]["loss"]) == {"crossentropy"}
    summary = report.aggregate(table)
    # the run without a device is its own row, not dropped for its missing value
    assert sorted(summary[summary.source == "train-sequential"]["runs"]) == [1, 1] and len(summary) == 4
    # an accuracy exactly at the line is not a collapse: only those below it are
    assert set(summary[summary.source.str.startswith("collapse")]["collapsed"]) == {0}
    # the table has no index column
    assert report.markdown(summary).splitlines()[0].startswith("| model ")


def test_an_unreadable_run_names_itself_and_what_is_missing():
    broken = exp("broken", "1", **{"train-sequential": {"loss": "crossentropy"}, "evaluate-sequential": {"test_accuracy": 0.4}})
    with pytest.raises(params.PipelineError) as refused:
        report.runs([broken], PATHS)
    assert str(refused.value) == ("run broken (brokenb): its metrics files lack what the report needs "
                                  "(KeyError: 'seed')")


def test_a_setting_recorded_in_the_metrics_is_read_as_recorded():
    found = [exp("new", "1", **{"train-sequential": {**trained(0, loss="clipped_crossentropy"), "replicas": 2},
                                "evaluate-sequential": {"test_accuracy": 0.4}})]
    row = report.runs(found, PATHS).iloc[0]
    assert (row["loss"], row["replicas"]) == ("clipped_crossentropy", 2)


def test_the_report_command_writes_its_three_files_and_refuses_what_it_cannot_read(tmp_path, in_process):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    code, out, err = in_process(tmp_path, report, "--runs", "nowhere")
    assert (code, out, err) == (1, "", "pipeline.report: error: --runs nowhere: no such directory\n")
    (tmp_path / "runs").mkdir()
    code, _, err = in_process(tmp_path, report, "--runs", "runs")
    assert err == ("pipeline.report: error: no run has train-<model>.json with evaluate-<model>.json or a held-out curve, or collapse.json; "
                   "run some first (dvc exp run) and export them into runs\n")
    record = tmp_path / "runs" / "seed-0"
    (record / "metrics").mkdir(parents=True)
    (record / "run.yaml").write_text("name: seed-0\nrev: abcdef1234\ntimestamp: '2026-12-01'\n")
    (record / "metrics" / "train-sequential.json").write_text(json.dumps(trained(0)))
    (record / "metrics" / "evaluate-sequential.json").write_text(json.dumps({"test_accuracy": 0.25}))
    code, out, err = in_process(tmp_path, report, "--runs", "runs")
    table = (tmp_path / "reports" / "seeds.md").read_text()
    assert code == 0 and out == table + "report: 1 runs in 1 settings -> reports/seeds.md, .csv, -runs.csv\n"
    assert "| 0.2500 " in table and (tmp_path / "reports" / "seeds.csv").read_text().startswith("model,source,")
    assert (tmp_path / "reports" / "seeds-runs.csv").read_text().startswith("model,source,")


@pytest.mark.parametrize("args, command", [((), "dvc exp show --json --no-fetch"),
                                           (("--all-commits",), "dvc exp show --json --no-fetch --all-commits")])
def test_without_runs_the_report_asks_dvc_and_names_the_command_that_failed(tmp_path, in_process, monkeypatch, args, command):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")  # no git, no DVC: dvc exp show fails
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    code, out, err = in_process(tmp_path, report, *args)
    assert (code, out) == (1, "") and err.count("\n") == 1  # DVC's own last line, as text (the mount point varies)
    assert err.startswith(f"pipeline.report: error: {command} failed: ERROR: you are not inside of a DVC repository"), err


def test_without_dvc_on_path_the_report_says_which_command_it_could_not_run(tmp_path, in_process, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert in_process(tmp_path, report) == (1, "", "pipeline.report: error: cannot run dvc: No such file or directory "
                                                   "(is the venv's bin on PATH? `make report` sets it)\n")
    # a dvc that fails without a word: the message still ends in one line
    (tmp_path / "bin" / "dvc").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "dvc").chmod(0o755)
    assert in_process(tmp_path, report) == (1, "", "pipeline.report: error: dvc exp show --json --no-fetch failed: ?\n")


SCRATCH_WRITE = """import json, yaml
seed = yaml.safe_load(open("params.yaml"))["seed"]
json.dump({"seed": seed}, open("metrics/train-sequential.json", "w"))
open("metrics/evaluate-sequential.json", "w").write(%s)
"""


@pytest.fixture(scope="module")
def scratch_experiments(tmp_path_factory):
    """A scratch DVC project with three commits (the middle one's evaluate metrics unreadable JSON) and one
    experiment on the last (`dvc exp run -S seed=1`): (project, the commits' revs oldest first)."""
    project = tmp_path_factory.mktemp("experiments")
    (project / "metrics").mkdir()
    (project / "params.yaml").write_text("seed: 0\n")
    (project / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python write.py\n    deps: [write.py]\n    params: [seed]\n"
        "    metrics: [{metrics/train-sequential.json: {cache: false}}, {metrics/evaluate-sequential.json: {cache: false}}]\n")
    run(["git", "init", "-q", "-b", "main"], project)
    for key, value in (("user.name", "t"), ("user.email", "t@t")):  # dvc exp run commits too
        run(["git", "config", key, value], project)
    run(["dvc", "init", "-q"], project)
    run(["dvc", "config", "core.analytics", "false"], project)
    revs = []
    for accuracy in ("'{\"test_accuracy\": 0.5}'", "'{'", "'{\"test_accuracy\": 0.75}'"):
        (project / "write.py").write_text(SCRATCH_WRITE % accuracy)
        run(["dvc", "repro", "-q"], project)
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "run"], project)
        revs.append(run(["git", "rev-parse", "HEAD"], project).strip())
    run(["dvc", "exp", "run", "-q", "-S", "seed=1", "-n", "seed1"], project)
    return project, revs


def test_the_report_reads_every_commit_and_experiment_that_dvc_lists(scratch_experiments, monkeypatch):
    project, (first, broken, last) = scratch_experiments
    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    head = report.experiments(all_commits=False)
    refs = run(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"], project).splitlines()
    (exp_rev,) = [ref.split()[1] for ref in refs if ref.split()[0].endswith("/seed1")]  # DVC keeps other refs there too
    times = {e["rev"]: e.pop("timestamp") for e in head}
    assert head == [  # the workspace (seed 1 after the experiment) is not a run
        {"name": "main", "rev": last, "metrics": {"metrics/train-sequential.json": {"seed": 0},
                                                  "metrics/evaluate-sequential.json": {"test_accuracy": 0.75}}},
        {"name": "seed1", "rev": exp_rev, "metrics": {"metrics/train-sequential.json": {"seed": 1},
                                                      "metrics/evaluate-sequential.json": {"test_accuracy": 0.75}}},
    ]
    assert all(len(t) == 19 and t[10] == "T" for t in times.values()) and times[last] <= times[exp_rev], times
    every = report.experiments(all_commits=True)
    assert [(e["name"], e["rev"]) for e in every] == [("main", last), ("seed1", exp_rev), (broken[:7], broken),
                                                        (first[:7], first)]
    # an unreadable metrics file is an empty one, which the report then refuses by name (runs)
    assert every[2]["metrics"] == {"metrics/train-sequential.json": {"seed": 0}, "metrics/evaluate-sequential.json": {}}
    assert every[3]["metrics"]["metrics/evaluate-sequential.json"] == {"test_accuracy": 0.5}
    assert every[0]["timestamp"] == times[last] and every[3]["timestamp"] <= every[2]["timestamp"] <= times[last]


def test_a_project_without_runs_says_to_run_some(tmp_path, in_process, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    for key, value in (("user.name", "t"), ("user.email", "t@t")):
        run(["git", "config", key, value], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "no runs"], tmp_path)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert in_process(tmp_path, report) == (1, "", "pipeline.report: error: no run has train-<model>.json with "
                                                   "evaluate-<model>.json or a held-out curve, or collapse.json; run some first (dvc exp run)\n")


def _curve(correct_by_point, images=2000, per_point=2500):
    return [{"images_seen": per_point * (i + 1), "epoch": (i + 1) / 4, "train_seconds": 2.0 * (i + 1),
             "heldout_correct": c, "heldout_accuracy": c / images, "heldout_loss": 2.0}
            for i, c in enumerate(correct_by_point)]


def curved(seed, correct_by_point, **settings):
    """A train record with a held-out curve over 2,000 test images (SETTING's 10,000 training images)."""
    return {**trained(seed), "heldout_images": 2000, "heldout_curve": _curve(correct_by_point), **settings}


def test_time_to_target_is_read_from_each_curve_at_the_given_target_and_aggregated_over_seeds():
    found = [
        exp("s0", "1", **{"train-parallel": curved(0, [400, 600, 700])}),        # 0.30 after 5,000 images
        exp("s1", "2", **{"train-parallel": curved(1, [600, 610, 720])}),        # after 2,500
        exp("s2", "3", **{"train-parallel": curved(2, [400, 500, 599])}),        # one image short: never
        exp("s3", "4", **{"train-parallel": curved(3, [400, 500, 600])}),        # after 7,500
        # a run without a curve counts for accuracy, not for time to target
        exp("old", "5", **{"train-parallel": trained(4), "evaluate-parallel": {"test_accuracy": 0.33,
                                                                               "test_images": 2000}}),
    ]
    table = report.runs(found, PATHS, {"parallel": 0.3})
    # with no evaluate file, a run's accuracy is its curve's last point: the final model on the test images
    assert table.set_index("seed")["test_accuracy"].to_dict() == {0: 0.35, 1: 0.36, 2: 0.2995, 3: 0.3, 4: 0.33}
    (row,) = report.aggregate(table).to_dict("records")
    assert row["runs"] == 5 and row["target"] == "0.3" and row["not_reached"] == "1"
    assert row["epochs_to_target"] == "0.50 ± 0.25 (3 seeds)"
    assert (row["fastest"], row["slowest"]) == ("0.25 (seed 1)", "0.75 (seed 3)")
    markdown = report.markdown(report.aggregate(table))
    assert "| 0.3      | 0.50 ± 0.25 (3 seeds) | 0.25 (seed 1) | 0.75 (seed 3) | 1 " in markdown
    # an evaluate file, where there is one, gives the accuracy and the test-image count (10,000 here)
    scored = [exp("s0", "1", **{"train-parallel": curved(0, [400, 600, 700]),
                                "evaluate-parallel": {"test_accuracy": 0.41, "test_images": 10000}})]
    row = report.runs(scored, PATHS, {"parallel": 0.3}).iloc[0]
    assert (row["test_accuracy"], row["test_images"], row["epochs_to_target"]) == (0.41, 10000, 0.5)
    assert set(table["test_images"]) == {2000}  # the curve's runs: their held-out images; the old one's evaluate
    # `dvc exp show` leaves the curve (a list) out: the record's own time to target counts if it timed this target
    bare = {k: v for k, v in curved(5, [400, 600, 700]).items() if k != "heldout_curve"}
    timed = [exp("x", "9", **{"train-parallel": bare | {"target_accuracy": 0.3, "target_reached": True,
                                                        "epochs_to_target": 0.5},
                              "evaluate-parallel": {"test_accuracy": 0.35, "test_images": 2000}})]
    assert report.runs(timed, PATHS, {"parallel": 0.3}).iloc[0]["epochs_to_target"] == 0.5
    assert pd.isna(report.runs(timed, PATHS, {"parallel": 0.31}).iloc[0]["target_accuracy"])  # another target
    # no target given: the curve still gives the accuracy, the time-to-target cells stay empty
    (row,) = report.aggregate(report.runs(found, PATHS)).to_dict("records")
    assert row["runs"] == 5 and row["target"] == row["epochs_to_target"] == row["not_reached"] == ""


def test_the_tutorials_protocol_is_read_at_the_tutorials_own_accuracy_where_its_run_learned():
    protocol = {"train_images": 50_000, "epochs": 100}
    rising = [1000 + 20 * i for i in range(12)]  # of 2000: 0.5 .. 0.61; 0.5927 needs 1186: first 1200, point 11
    found = [exp("t", "1", **{"train-sequential": curved(0, rising, **protocol),
                              "train-parallel": curved(0, rising, train_images=50_000, epochs=10)})]
    rows = report.aggregate(report.runs(found, PATHS, {"sequential": 0.3, "parallel": 0.3})).set_index("model")
    assert rows.loc["sequential", "target"] == "0.5927"  # the tutorial's reported accuracy, not params.yaml's 0.3
    assert rows.loc["sequential", "epochs_to_target"] == "0.55 (1 seed)"  # 27,500 of 50,000 images
    assert rows.loc["parallel", "target"] == "0.3"  # its tutorial run collapsed (0.10): no target to chase
    assert rows.loc["parallel", "epochs_to_target"] == "0.05 (1 seed)"  # 0.5 at the first point: 2,500 images


def test_a_setting_whose_seeds_never_reached_the_target_reads_a_dash():
    found = [exp("s0", "1", **{"train-parallel": curved(0, [400, 500, 599])}),
             exp("s1", "2", **{"train-parallel": curved(1, [400, 450, 500])})]
    (row,) = report.aggregate(report.runs(found, PATHS, {"parallel": 0.3})).to_dict("records")
    assert (row["target"], row["epochs_to_target"], row["not_reached"]) == ("0.3", "-", "2")
    assert row["fastest"] == row["slowest"] == ""


def test_a_model_with_nothing_to_score_is_skipped_and_the_next_model_still_counts():
    # sequential: a train record with neither a curve nor an evaluate file; parallel: scored
    found = [exp("s0", "1", **{"train-sequential": trained(0), "train-parallel": curved(0, [400, 600, 700])})]
    table = report.runs(found, PATHS, {"sequential": 0.3, "parallel": 0.3})
    assert table["model"].tolist() == ["parallel"] and table["test_accuracy"].tolist() == [0.35]


@pytest.mark.parametrize("reported, target", [(params.COLLAPSED_BELOW, "0.15"), (0.1499, "0.3")])
def test_a_tutorial_run_is_read_at_the_reported_accuracy_unless_that_run_collapsed(monkeypatch, reported, target):
    """At exactly COLLAPSED_BELOW the reported run did not collapse (collapsed is below it)."""
    monkeypatch.setitem(report.REPORTED_ACCURACY, "parallel", reported)
    found = [exp("t", "1", **{"train-parallel": curved(0, [200, 300, 400], train_images=50_000, epochs=10)})]
    (row,) = report.aggregate(report.runs(found, PATHS, {"parallel": 0.3})).to_dict("records")
    assert row["target"] == target
