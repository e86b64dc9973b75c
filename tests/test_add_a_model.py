"""docs/add-a-model.md, followed to the letter in a scratch copy of the project: its three code blocks are
applied as the page says, then the real tools run on real CIFAR-10 images (the small mirror) and the new
model must show up in each: `dvc repro`, lstm-step, `gate compare` against the two-model baseline, `gate ab
--list`, `history` and `report`.

Slow (about two minutes): `dvc repro` and the tiny collapse study run twice, the second time every stage
again (each depends on pipeline/lib/registry.py).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.project import ROOT, TINY, copy_project, run, run_stage, set_params, stages_ran

PAGE = ROOT / "docs" / "add-a-model.md"


def page_blocks() -> dict[str, str]:
    """The page's fenced blocks by the instruction line just above them: 'Append to ...', 'Add under ...'."""
    blocks = {}
    # an instruction paragraph (one or more lines), a blank line, then its block
    for match in re.finditer(r"^(Append to|Add under|Add one line under)\b(?:[^\n]+\n)+\n```\w+\n(.*?)^```",
                             PAGE.read_text(), re.MULTILINE | re.DOTALL):
        blocks[match.group(1)] = match.group(2)
    return blocks


def follow_the_page(project) -> str:
    """Apply the page's three steps to `project`; returns the new model's name."""
    blocks = page_blocks()
    assert set(blocks) == {"Append to", "Add under", "Add one line under"}, "the page's three steps"
    code = blocks["Append to"]
    name = re.search(r"^def (\w+)\(\):", code, re.MULTILINE).group(1)
    registry = project / "pipeline" / "lib" / "registry.py"
    registry.write_text(registry.read_text().rstrip("\n") + "\n\n\n" + code)
    params = project / "params.yaml"
    text = params.read_text()
    assert text.count("\nmodels:") == 1
    params.write_text(re.sub(r"^(models:[^\n]*\n)", lambda m: m.group(1) + blocks["Add under"], text, count=1,
                             flags=re.MULTILINE))
    dvc_yaml = project / "dvc.yaml"
    text = dvc_yaml.read_text()
    head, plots = text.split("\nplots:\n", 1)
    charts = re.split(r"(?m)^(?=  - )", plots)
    given = {}  # column -> charts drawing it that already have their line, in order
    for line in blocks["Add one line under"].splitlines():
        column = line.rsplit(": ", 1)[1]
        drawing = [i for i, chart in enumerate(charts) if re.search(rf"^ +\S+\.csv: {column}$", chart, re.MULTILINE)]
        i = drawing[given.setdefault(column, 0)]
        given[column] += 1
        # after the last curve line of the chart
        last = list(re.finditer(rf"^ +\S+\.csv: {column}\n", charts[i], re.MULTILINE))[-1]
        charts[i] = charts[i][:last.end()] + line + "\n" + charts[i][last.end():]
    dvc_yaml.write_text(head + "\nplots:\n" + "".join(charts))
    return name


@pytest.mark.slow
def test_a_model_added_as_the_page_says_is_trained_scored_timed_gated_drawn_and_reported(root, tmp_path, real_mirror):
    archive, md5 = real_mirror
    project = copy_project(root, tmp_path / "project")
    (project / ".mirror").mkdir()  # a URL relative to the project, as make repro-mirror records it (lockcheck)
    (project / ".mirror" / archive.name).symlink_to(archive)
    small = {**TINY, "preprocess.train_limit": 200, "preprocess.test_limit": 100}
    set_params(project, **{"download.url": f"file:.mirror/{archive.name}", "download.md5": md5, **small})
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "two models"], project)
    run(["dvc", "repro"], project)
    run(["dvc", "repro", "studies/dvc.yaml"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "two-model baseline"], project)
    assert run_stage(project, "pipeline.lockcheck")[0] == 0

    name = follow_the_page(project)
    assert name == "pool4"
    set_params(project, **{f"models.{name}.epochs": 1})  # the tiny profile's one epoch, as for the others
    charts = yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
    assert [{curve.split("/")[-1] for curve in chart["y"]} for plot in charts for chart in plot.values()] == [
        {f"{kind}-{m}.csv" for m in ("sequential", "parallel", name)} for kind in ("heldout",) * 2 + ("train",) * 2]
    mapping = yaml.safe_load((project / "params.yaml").read_text())
    assert list(mapping["models"]) == [name, "sequential", "parallel"]
    assert mapping["models"][name] == {"epochs": 1, "max_accuracy_drop": 0.03, "evals_per_epoch": 4,
                                       "target_accuracy": 0.25}

    ran = stages_ran(run(["dvc", "repro"], project))
    assert {f"train@{name}", f"evaluate@{name}", "lstm-step"} <= set(ran)
    metrics = {p.name: json.loads(p.read_text()) for p in (project / "metrics").glob("*.json")}
    trained, scored = metrics[f"train-{name}.json"], metrics[f"evaluate-{name}.json"]
    assert (trained["model"], trained["param_count"], trained["epochs"], trained["train_images"]) == (name, 22_110, 1, 200)
    assert scored["test_images"] == 100 and 0 <= scored["test_accuracy"] <= 1
    assert scored["reported_test_accuracy"] is None and scored["reported_epochs"] is None
    core = metrics["lstm-step.json"][name]
    assert (core["steps"], core["features"]) == (64, 50) and core["cpu_generic"]["step_time_ms_median"] > 0
    assert stages_ran(run(["dvc", "repro"], project)) == []
    code, out, err = run_stage(project, "pipeline.lockcheck")
    # dvc.lock is fresh; the collapse study depends on the registry too
    assert code == 1 and "studies/dvc.lock is stale: collapse: " in err and "pipeline/lib/registry.py modified" in err
    assert stages_ran(run(["dvc", "repro", "studies/dvc.yaml"], project)) == ["studies/dvc.yaml:collapse"]
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", f"Add the {name} model"], project)
    code, out, err = run_stage(project, "pipeline.lockcheck")
    assert code == 0, err

    # as make gate-accuracy runs it
    code, out, err = run_stage(project, "pipeline.gate", "compare", "--baseline", "HEAD~1", "--allow-new-settings")
    assert code == 0, err
    assert f"| {name} test_accuracy | not in baseline | {scored['test_accuracy']:.4f} (" in out
    assert "not gated: new model | advisory |" in out and "**PASS**: 0 of 2 checks failed." in out
    for model in ("sequential", "parallel"):  # retrained from the same seeds: gated, and unchanged
        assert re.search(rf"^\| {model} test_accuracy \| .* \| \+0\.0000 \(\+0 images\) \| .* \| pass \|$", out, re.MULTILINE)

    code, out, err = run_stage(project, "pipeline.gate", "ab", "--list")
    assert code == 0, err
    assert out.splitlines() == [f"{m} {kind}" for m in ("sequential", "parallel", name)
                                for kind in ("fit loop", "inference batch")]

    code, out, err = run_stage(project, "pipeline.history", "--out", "history.html")
    assert code == 0, err
    page = (project / "history.html").read_text()
    assert f'"name":"{name}, settings 1"' in page and '"name":"sequential, settings 1"' in page

    code, out, err = run_stage(project, "pipeline.runs", "export", "HEAD", "--name", "with-pool4", "--out", "runs")
    assert code == 0, err
    code, out, err = run_stage(project, "pipeline.report", "--runs", "runs", "--out", "seeds")
    assert code == 0, err
    table = (project / "seeds.md").read_text()
    assert re.search(rf"^\| {name} +\| train-{name} +\|", table, re.MULTILINE), table
