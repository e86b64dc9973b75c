"""The gate's decision rules, its report and its exit codes (0 pass, 1 fail, 2 usage error)."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import gate

from pipeline.lib import cli, metrics, params, registry
from pipeline.gate import ab as gate_ab, command as gate_command, compare as gate_compare
from pipeline.gate import report as gate_report, statistics as gate_statistics, workers as gate_workers
from tests import gate_sim
from tests.project import ROOT, set_params

TIGHT = dict(iqr_ms=1.0, n=50)


def _scored(accuracy, images=2000):
    return gate_compare.Scored(round(accuracy * images), images)


def test_accuracy_drop_beyond_tolerance_fails():
    assert not gate_compare.accuracy_verdict("acc", _scored(0.50), _scored(0.47), max_drop=0.02).passed


def test_accuracy_change_within_tolerance_passes():
    assert gate_compare.accuracy_verdict("acc", _scored(0.50), _scored(0.485), max_drop=0.02).passed
    assert gate_compare.accuracy_verdict("acc", _scored(0.50), _scored(0.60), max_drop=0.02).passed


@pytest.mark.parametrize("images, max_drop, allowed", [(2000, 0.03, 60), (10000, 0.03, 300), (2000, 0.0305, 61),
                                                       (2000, 0.0304, 60), (1000, 0.001, 1), (2000, 0.0, 0)])
def test_the_boundary_is_exact_in_images_for_every_baseline(images, max_drop, allowed):
    # Every baseline count of the test set, as the evaluate stage records it (5 decimals) and the gate reads
    # it back: a drop of exactly the tolerance passes, one image more fails (0.3115 -> 0.2815 used to fail).
    assert gate_compare.allowed_drop_images(max_drop, images) == allowed
    for correct in range(allowed, images + 1):
        base = {"e.json": {"test_accuracy": round(correct / images, 5), "test_images": images}}
        at = {"e.json": {"test_accuracy": round((correct - allowed) / images, 5), "test_images": images}}
        verdict = gate_compare.accuracy_verdict("acc", gate_compare.scored(base, "e.json"), gate_compare.scored(at, "e.json"), max_drop)
        assert verdict.passed, (correct, verdict)
        if correct - allowed >= 1:
            past = {"e.json": {"test_accuracy": round((correct - allowed - 1) / images, 5), "test_images": images}}
            assert not gate_compare.accuracy_verdict("acc", gate_compare.scored(base, "e.json"), gate_compare.scored(past, "e.json"),
                                             max_drop).passed, correct


def test_the_accuracy_row_shows_counts():
    row = gate_compare.accuracy_verdict("acc", _scored(0.3115), _scored(0.2815), 0.03)
    assert (row.baseline, row.current, row.change, row.allowed, row.passed) == (
        "0.3115 (623 of 2000)", "0.2815 (563 of 2000)", "-0.0300 (-60 images)", ">= -0.0300 (-60 images)", True)


@pytest.mark.parametrize("evaluate, message", [
    ({"test_accuracy": 0.5, "test_images": 0}, "metric test_images is 0, not a count of images >= 1"),
    ({"test_accuracy": 0.5, "test_images": 2000.0}, "metric test_images is 2000.0, not a count"),
    ({"test_accuracy": 1.5, "test_images": 2000}, "metric test_accuracy is 1.5, not in 0 .. 1"),
    ({"test_accuracy": -0.1, "test_images": 2000}, "metric test_accuracy is -0.1, not in 0 .. 1"),
    ({"test_accuracy": 0.5}, "missing metric test_images"),
    ({"test_accuracy": 0.31234, "test_images": 2000},
     "metric test_accuracy is 0.31234, not a whole number of the 2000 test images"),  # 624.68 images
    ({"test_accuracy": 0.3106, "test_images": 2000},
     "metric test_accuracy is 0.3106, not a whole number of the 2000 test images"),  # 621.2
])
def test_an_accuracy_that_is_no_count_is_refused(evaluate, message):
    with pytest.raises(gate.GateUsageError) as info:
        gate_compare.scored({"e.json": evaluate}, "e.json")
    assert str(info.value).startswith(f"e.json: {message}")


@pytest.mark.parametrize("accuracy, images, count", [(0.3105, 2000, 621), (0.1234, 10000, 1234), (0.0001, 10000, 1),
                                                      (1.0, 2000, 2000), (0.0, 2000, 0), (0.33333, 3, 1), (0.66667, 3, 2)])
def test_an_accuracy_is_the_count_behind_it(accuracy, images, count):
    # recorded to 5 decimals, an accuracy is within 0.05 of its whole count (1/3 -> 0.33333 -> 0.99999 images)
    assert gate_compare.scored({"e.json": {"test_accuracy": accuracy, "test_images": images}}, "e.json") == \
        gate_compare.Scored(count, images)


def test_timing_across_runs_is_advisory_however_large_the_change():
    # compare mode: a 2x slower step in another run is reported, never failed
    row = gate_compare.timing_advisory("t", gate_compare.Timing(100, **TIGHT), gate_compare.Timing(200, **TIGHT), z=3)
    assert row.passed and row.advisory and row.change == "+100.0%" and "within-run noise" in row.allowed


def test_report_is_a_markdown_table_with_separate_sections():
    rows = {"Accuracy": [gate_compare.accuracy_verdict("sequential test_accuracy", _scored(0.5), _scored(0.4), 0.02)],
            "Timing": [gate_compare.timing_advisory("t", gate_compare.Timing(100, **TIGHT), gate_compare.Timing(101, **TIGHT), 3)]}
    text = gate_report.markdown("Gate", rows, ["a note"])
    assert "| metric | baseline | current | change | allowed | verdict |" in text
    assert "### Accuracy" in text and "### Timing" in text and "**FAIL**" in text and "- a note" in text
    assert "| advisory |" in text and "1 of 1 checks failed" in text  # the advisory row is no check


TRAIN = {"model": None, "epochs": 2, "epochs_completed": 2, "train_images": 5000, "batch_size": 100,
         "learning_rate": 0.001, "loss": "crossentropy", "seed": 0, "normalize": "raw", "distribution": "none",
         "replicas": 1, "processes": 1, "time_limit_s": None, "backend": "tensorflow", "timed_steps": 99,
         "step_time_ms_iqr": 1.0, "device_name": "cpu"}
LSTM_STEP = {"batch_size": 100, "units": 50, "warmup_steps": 3, "rounds": 20, "backend": "tensorflow", "float32": "ieee",
             "cpu_sgemm_n": 1024, "gpu_sgemm_n": 8192}


def _core(step_ms):
    """An LSTM core's record in lstm-step.json."""
    return {"cpu_generic": {"step_time_ms_median": step_ms, "step_time_ms_iqr": 1.0, "rounds": 20}}


def _write_model(out, model, accuracy, step_ms, changes=None):
    """One model's train and evaluate files in `out`, with `changes` = {"train"/"evaluate": {key: value}} on top."""
    changes = changes or {}
    train = {**TRAIN, "model": model, "step_time_ms_median": step_ms, **changes.get("train", {})}
    evaluate = {"model": model, "test_accuracy": accuracy, "test_images": 2000, "backend": "tensorflow",
                **changes.get("evaluate", {})}
    (out / f"train-{model}.json").write_text(json.dumps(train))
    (out / f"evaluate-{model}.json").write_text(json.dumps(evaluate))


def _metrics(tmp_path, name, accuracy=0.5, step_ms=80.0, changes=None):
    """A metrics folder as the pipeline writes it, for every registered model; `accuracy` is one for every model
    or {model: accuracy} (0.5 for a model it leaves out); `changes` = {file kind: {key: value}} on top, or
    {model: {file kind: {key: value}}} for one model."""
    changes = changes or {}
    out = tmp_path / name
    out.mkdir()
    for model in registry.names():
        own = changes.get(model, {})
        acc = accuracy.get(model, 0.5) if isinstance(accuracy, dict) else accuracy
        _write_model(out, model, acc, step_ms, {kind: {**changes.get(kind, {}), **own.get(kind, {})}
                                                for kind in ("train", "evaluate")})
    lstm = {**LSTM_STEP, **{model: _core(step_ms) for model in registry.lstm_cores()}, **changes.get("lstm-step", {})}
    (out / "lstm-step.json").write_text(json.dumps(lstm))
    return out


@pytest.fixture
def in_root(root, monkeypatch):
    monkeypatch.chdir(root)


def test_exit_codes(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    args = ["compare", "--baseline-dir", str(base), "--current-dir"]
    assert gate_command.main(args + [str(_metrics(tmp_path, "same"))]) == 0
    assert gate_command.main(args + [str(_metrics(tmp_path, "worse", accuracy=0.4))]) == 1
    # timing across runs is advisory: a 2x slower step in another run passes, and the report says so
    assert gate_command.main(args + [str(_metrics(tmp_path, "slower", step_ms=160.0))]) == 0
    assert "+100.0%" in capsys.readouterr().out


# Every setting compare checks, with a value that differs from the one _metrics writes.
OTHER = {"epochs": 3, "epochs_completed": 1, "train_images": 10000, "batch_size": 50, "learning_rate": 0.01,
         "loss": "clipped_crossentropy", "seed": 1, "normalize": "unit", "distribution": "data_parallel",
         "replicas": 2, "processes": 2, "time_limit_s": 60.0, "backend": "jax", "test_images": 10000,
         "units": 64, "warmup_steps": 1, "rounds": 10, "float32": "tf32", "cpu_sgemm_n": 512, "gpu_sgemm_n": 4096}
DIFFERENT = [(kind, key) for kind in ("train", "evaluate", "lstm-step") for key in metrics.settings(kind) if key != "model"]


@pytest.mark.parametrize("kind,key", DIFFERENT, ids=[f"{k}.{key}" for k, key in DIFFERENT])
def test_compare_refuses_runs_of_different_settings(tmp_path, in_root, capsys, kind, key):
    base = _metrics(tmp_path, "base")
    other = _metrics(tmp_path, "other", changes={kind: {key: OTHER[key]}})
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different settings" in err and f"{key} " in err


def test_allow_new_settings_passes_a_profile_change_with_a_notice_but_still_gates_same_settings(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    other = _metrics(tmp_path, "other", changes={"train": {"epochs": 10}})
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(other), "--allow-new-settings"]) == 0
    out = capsys.readouterr().out
    assert out.count("not gated: new settings") == len(registry.names()) and "its accuracy is not gated" in out
    # Only the parallel model's settings changed: the sequential model's accuracy drop still fails.
    mixed = _metrics(tmp_path, "mixed", accuracy=0.1)
    trained = json.loads((mixed / "train-parallel.json").read_text())
    (mixed / "train-parallel.json").write_text(json.dumps({**trained, "epochs": 10}))
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(mixed), "--allow-new-settings"]) == 1
    out = capsys.readouterr().out
    assert ("| sequential test_accuracy | 0.5000 (1000 of 2000) | 0.1000 (200 of 2000) | -0.4000 (-800 images) | "
            ">= -0.0300 (-60 images) | **FAIL** |") in out
    assert ("| parallel test_accuracy | 0.5000 (1000 of 2000) | 0.1000 (200 of 2000) | -0.4000 (-800 images) | "
            "not gated: new settings | advisory |") in out


# ---------------------------------------------------------------- compare, one model at a time

PER_MODEL = {"sequential": 0.31, "parallel": 0.36}


def _compare(tmp_path, base, current, *extra):
    return gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(current), *extra])


def _row(out, model):
    return next(line for line in out.splitlines() if line.startswith(f"| {model} test_accuracy |"))


def test_each_model_is_compared_with_its_own_baseline(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base", accuracy=PER_MODEL)
    assert _compare(tmp_path, base, _metrics(tmp_path, "same", accuracy=PER_MODEL)) == 0
    out = capsys.readouterr().out
    assert "| 0.3100 (620 of 2000) | 0.3100 (620 of 2000) | +0.0000 (+0 images) |" in _row(out, "sequential")
    assert "| 0.3600 (720 of 2000) | 0.3600 (720 of 2000) | +0.0000 (+0 images) |" in _row(out, "parallel")
    # the models swapped: each has moved by 0.05 against its own baseline, one down (fails), one up
    assert _compare(tmp_path, base, _metrics(tmp_path, "swapped", accuracy={"sequential": 0.36, "parallel": 0.31})) == 1
    out = capsys.readouterr().out
    assert _row(out, "sequential").endswith("| +0.0500 (+100 images) | >= -0.0300 (-60 images) | pass |")
    assert _row(out, "parallel").endswith("| -0.0500 (-100 images) | >= -0.0300 (-60 images) | **FAIL** |")


def _with_model(directory, model, accuracy, step_ms=80.0):
    """`directory` (a metrics folder) with the train and evaluate files of one more model, and its LSTM core."""
    lstm = json.loads((directory / "lstm-step.json").read_text())
    lstm[model] = _core(step_ms)
    (directory / "lstm-step.json").write_text(json.dumps(lstm))
    _write_model(directory, model, accuracy, step_ms)
    return directory


TUTORIAL = ("sequential", "parallel")


@pytest.fixture
def two_models(tmp_path, root, monkeypatch):
    """The tutorial's two models alone, in the registry (swapped, not edited) and in a scratch params.yaml in
    a scratch working directory: for the reports pinned word for word, which a model that the repository
    adds must leave as they are. Returns the scratch params.yaml's mapping."""
    monkeypatch.setattr(registry, "MODELS", {m: registry.MODELS[m] for m in TUTORIAL})
    mapping = params.load_mapping(root / "params.yaml")
    mapping["models"] = {m: mapping["models"][m] for m in TUTORIAL}
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(mapping))
    copy_reference(work)
    monkeypatch.chdir(work)
    return mapping


def copy_reference(work):
    """The committed convergence reference (gate.convergence_reference), which `gate compare` reads, into `work`."""
    reference = params.load(ROOT / "params.yaml").gate.convergence_reference
    (work / reference).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / reference, work / reference)


@pytest.fixture
def third_model(two_models, monkeypatch):
    """The tutorial's two models and a third, `extra` (the sequential model's entry under another name), in
    the registry and the scratch params.yaml."""
    monkeypatch.setitem(registry.MODELS, "extra", dataclasses.replace(registry.MODELS["sequential"], name="extra"))
    two_models["models"]["extra"] = {"epochs": 1, "max_accuracy_drop": 0.01, "evals_per_epoch": 4, "target_accuracy": 0.25}
    Path("params.yaml").write_text(yaml.safe_dump(two_models))
    return "extra"


def _without_model(directory, model):
    """`directory` (a metrics folder) as a run before `model` existed: none of its files, no LSTM core of it."""
    for kind in ("train", "evaluate"):
        (directory / f"{kind}-{model}.json").unlink()
    lstm = json.loads((directory / "lstm-step.json").read_text())
    lstm.pop(model, None)
    (directory / "lstm-step.json").write_text(json.dumps(lstm))
    return directory


def test_a_model_the_baseline_lacks_is_a_new_advisory_row_and_the_others_stay_gated(tmp_path, third_model, capsys):
    base = _without_model(_metrics(tmp_path, "base", accuracy=PER_MODEL), third_model)
    current = _with_model(_metrics(tmp_path, "cur", accuracy=PER_MODEL), third_model, 0.2)
    assert _compare(tmp_path, base, current) == 0
    out = capsys.readouterr().out
    assert _row(out, third_model) == ("| extra test_accuracy | not in baseline | 0.2000 (400 of 2000) | - | "
                                      "not gated: new model | advisory |")
    assert "**PASS**: 0 of 2 checks failed." in out and "- new since the baseline, so not gated: extra\n" in out
    assert "train-extra step time" not in out and "lstm-step extra core" not in out  # nothing to compare them with
    assert "| train-sequential step time |" in out and "| lstm-step sequential core, CPU step |" in out
    # the others are still gated: a drop of one of them fails as before
    worse = _with_model(_metrics(tmp_path, "worse", accuracy={"sequential": 0.25, "parallel": 0.36}), third_model, 0.2)
    assert _compare(tmp_path, base, worse) == 1
    assert capsys.readouterr().err == "pipeline.gate: FAIL: sequential test_accuracy\n"
    # once the baseline has it, it is gated with its own allowance (0.01: 20 images of 2,000)
    with_it = _with_model(_metrics(tmp_path, "with", accuracy=PER_MODEL), third_model, 0.2)
    assert _compare(tmp_path, with_it, _with_model(_metrics(tmp_path, "d20", accuracy=PER_MODEL), third_model, 0.19)) == 0
    out = capsys.readouterr().out
    assert _row(out, third_model).endswith("| -0.0100 (-20 images) | >= -0.0100 (-20 images) | pass |")
    assert "| train-extra step time |" in out and "| lstm-step extra core, CPU step |" in out
    assert _compare(tmp_path, with_it, _with_model(_metrics(tmp_path, "d21", accuracy=PER_MODEL), third_model, 0.1895)) == 1
    assert capsys.readouterr().err == "pipeline.gate: FAIL: extra test_accuracy\n"
    # a baseline with only one of its two files is broken, not new: one line naming the missing file
    (with_it / "train-extra.json").unlink()
    assert _compare(tmp_path, with_it, current) == 2
    assert capsys.readouterr().err.endswith(f"baseline {with_it}: cannot read train-extra.json: "
                                            f"[Errno 2] No such file or directory: '{with_it / 'train-extra.json'}'\n")


def test_a_baseline_revision_without_a_model_makes_it_new_not_an_error(tmp_path, third_model, capsys):
    # the baseline's models are read from the file names committed at the revision
    for cmd in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], check=True)
    _without_model(_metrics(Path.cwd(), "metrics", accuracy=PER_MODEL), third_model)
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "commit", "-qm", "two models"], check=True)
    current = _with_model(_metrics(tmp_path, "cur", accuracy=PER_MODEL), third_model, 0.2)
    assert gate_command.main(["compare", "--baseline", "HEAD", "--current-dir", str(current)]) == 0
    assert _row(capsys.readouterr().out, third_model).startswith("| extra test_accuracy | not in baseline | 0.2000 ")


def test_a_model_that_gained_an_lstm_core_is_noted_not_an_error(tmp_path, third_model, capsys):
    base = _metrics(tmp_path, "base", accuracy=PER_MODEL)
    lstm = json.loads((base / "lstm-step.json").read_text())
    del lstm[third_model], lstm["sequential"]  # the baseline's `extra` and `sequential` had no LSTM core
    (base / "lstm-step.json").write_text(json.dumps(lstm))
    assert _compare(tmp_path, base, _metrics(tmp_path, "cur", accuracy=PER_MODEL)) == 0
    out = capsys.readouterr().out
    assert "lstm-step extra" not in out and "lstm-step sequential" not in out
    assert "| lstm-step parallel core, CPU step |" in out
    assert "- LSTM cores the baseline's lstm-step did not time: sequential, extra\n" in out


def test_a_model_without_an_lstm_core_has_no_lstm_step_row_and_needs_none(tmp_path, third_model, capsys):
    registry.MODELS[third_model] = dataclasses.replace(registry.MODELS[third_model], lstm_core=None)
    base = _metrics(tmp_path, "base", accuracy=PER_MODEL)  # lstm-step.json of the cores only: none for `extra`
    assert "extra" not in json.loads((base / "lstm-step.json").read_text())
    assert _compare(tmp_path, base, _metrics(tmp_path, "cur", accuracy=PER_MODEL)) == 0
    out = capsys.readouterr().out
    assert "| train-extra step time |" in out and "lstm-step extra" not in out
    assert "| lstm-step sequential core, CPU step |" in out and "| lstm-step parallel core, CPU step |" in out


def test_every_new_and_every_removed_model_gets_its_row_and_its_name_in_the_notes(tmp_path, root):
    cfg = params.load(root / "params.yaml").gate
    names = ["sequential", "parallel", "new1", "new2"]
    files = gate_compare.metric_files(params.load(root / "params.yaml").paths, names)
    base_dir = _with_model(_with_model(_metrics(tmp_path, "base", accuracy=PER_MODEL), "old1", 0.3), "old2", 0.4)
    cur_dir = _with_model(_with_model(_metrics(tmp_path, "cur", accuracy=PER_MODEL), "new1", 0.2), "new2", 0.25)
    base = gate_compare.metrics_in_dir(base_dir, [f.name for f in sorted(base_dir.iterdir())], "b")
    cur = gate_compare.metrics_in_dir(cur_dir, [f.name for f in sorted(cur_dir.iterdir())], "c")
    sections, notes = gate_compare.compare(base, cur, cfg, files, {m: 0.03 for m in names},
                                           removed={"old1": "evaluate-old1.json", "old2": "evaluate-old2.json"})
    rows = {r.metric: (r.baseline, r.current, r.allowed) for r in sections["Accuracy"]}
    assert rows["new1 test_accuracy"] == ("not in baseline", "0.2000 (400 of 2000)", "not gated: new model")
    assert rows["new2 test_accuracy"] == ("not in baseline", "0.2500 (500 of 2000)", "not gated: new model")
    assert rows["old1 test_accuracy"] == ("0.3000 (600 of 2000)", "removed", "not gated: removed model")
    assert rows["old2 test_accuracy"] == ("0.4000 (800 of 2000)", "removed", "not gated: removed model")
    assert "new since the baseline, so not gated: new1, new2" in notes
    assert "in the baseline but no longer in the registry: old1, old2" in notes


def test_a_model_the_registry_no_longer_has_is_reported_as_removed(tmp_path, in_root, capsys):
    base = _with_model(_metrics(tmp_path, "base", accuracy=PER_MODEL), "retired", 0.4)
    assert _compare(tmp_path, base, _metrics(tmp_path, "cur", accuracy=PER_MODEL)) == 0
    out = capsys.readouterr().out
    assert _row(out, "retired") == ("| retired test_accuracy | 0.4000 (800 of 2000) | removed | - | "
                                    "not gated: removed model | advisory |")
    assert "- in the baseline but no longer in the registry: retired\n" in out
    assert _compare(tmp_path, base, _metrics(tmp_path, "worse", accuracy={"sequential": 0.31, "parallel": 0.2})) == 1
    assert capsys.readouterr().err == "pipeline.gate: FAIL: parallel test_accuracy\n"
    # only its score is shown, so only its evaluate file is read: a removed model's train file may be gone
    (base / "train-retired.json").unlink()
    assert _compare(tmp_path, base, _metrics(tmp_path, "same", accuracy=PER_MODEL)) == 0
    assert _row(capsys.readouterr().out, "retired").endswith("| removed | - | not gated: removed model | advisory |")
    (base / "evaluate-retired.json").write_text("[]")
    assert _compare(tmp_path, base, _metrics(tmp_path, "again", accuracy=PER_MODEL)) == 2
    assert capsys.readouterr().err.endswith(f"baseline {base}: evaluate-retired.json is not a metrics object (a JSON list)\n")


def test_the_models_of_a_baseline_are_read_from_its_file_names(root):
    paths = params.load(root / "params.yaml").paths
    files = {"train-sequential.json", "evaluate-parallel.json", "evaluate-old.json", "lstm-step.json",
             "train-.json", "evaluate-.json", "notes.txt", "train-x.csv"}
    assert gate_compare.models_in(files, paths) == ["sequential", "parallel", "old"]
    assert gate_compare.models_in(set(), paths) == []


def test_a_baseline_rev_lists_its_metrics_files(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "metrics").mkdir(parents=True)
    for cmd in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    (repo / "metrics" / "evaluate-a.json").write_text("{}")
    (repo / "metrics" / "train-b.json").write_text("{}")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "m"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    assert gate_compare.files_at_rev("HEAD", "metrics") == {"evaluate-a.json", "train-b.json"}
    assert gate_compare.files_at_rev("HEAD", "nothing") == set() and gate_compare.files_at_rev("no-such-rev", "metrics") == set()
    (repo / "evaluate-c.json").write_text("{}")  # a metrics_dir of "." lists the top level: names without a slash
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "top"], cwd=repo, check=True)
    assert gate_compare.files_at_rev("HEAD", ".") == {"evaluate-c.json", "metrics"}


# The whole compare report for one case that uses every part of it: one model 61 images down (fails), the
# other with new settings (advisory), every timing 10% slower, and the timings from another device.
COMPARE_REPORT = (
    '\n'
    '**FAIL**: 1 of 1 checks failed.\n'
    '\n'
    '### Accuracy\n'
    '\n'
    '| metric | baseline | current | change | allowed | verdict |\n'
    '|---|---|---|---|---|---|\n'
    '| sequential test_accuracy | 0.3100 (620 of 2000) | 0.2795 (559 of 2000) | -0.0305 (-61 images) | >= -0.0300 (-60 images) | **FAIL** |\n'
    '| parallel test_accuracy | 0.3600 (720 of 2000) | 0.3000 (600 of 2000) | -0.0600 (-120 images) | not gated: new settings | advisory |\n'
    '\n'
    '### Convergence (against reports/gate-convergence/reference.json)\n'
    '\n'
    '| metric | baseline | current | change | allowed | verdict |\n'
    '|---|---|---|---|---|---|\n'
    '| sequential images_to_target | - | no held-out curve | - | not gated: the run recorded no curve | advisory |\n'
    '| parallel images_to_target | - | no held-out curve | - | not gated: the run recorded no curve | advisory |\n'
    '\n'
    '### Timing (advisory, across runs)\n'
    '\n'
    '| metric | baseline | current | change | allowed | verdict |\n'
    '|---|---|---|---|---|---|\n'
    '| train-sequential step time | 80.00 ms (IQR 1.00, n=99) | 88.00 ms (IQR 1.00, n=99) | +10.0% | within-run noise 0.5%; run-to-run not known | advisory |\n'
    '| train-parallel step time | 80.00 ms (IQR 1.00, n=99) | 88.00 ms (IQR 1.00, n=99) | +10.0% | within-run noise 0.5%; run-to-run not known | advisory |\n'
    '| lstm-step sequential core, CPU step | 80.00 ms (IQR 1.00, n=20) | 88.00 ms (IQR 1.00, n=20) | +10.0% | within-run noise 1.1%; run-to-run not known | advisory |\n'
    '| lstm-step parallel core, CPU step | 80.00 ms (IQR 1.00, n=20) | 88.00 ms (IQR 1.00, n=20) | +10.0% | within-run noise 1.1%; run-to-run not known | advisory |\n'
    '\n'
    '- timing rows are advisory: times from two different runs differ by more than their within-run noise on identical code; `python -m pipeline.gate ab` gates speed side by side\n'
    '- train-parallel.json: baseline and current come from different settings (epochs 2 vs 3): its accuracy is not gated at this commit\n'
    '- timings come from different devices (cpu vs other cpu)\n'
)


def test_the_compare_report_word_for_word(tmp_path, two_models, capsys):
    base = _metrics(tmp_path, "base", accuracy=PER_MODEL)
    cur = _metrics(tmp_path, "cur", accuracy={"sequential": 0.2795, "parallel": 0.30}, step_ms=88.0,
                   changes={"train": {"device_name": "other cpu"}, "parallel": {"train": {"epochs": 3}}})
    assert _compare(tmp_path, base, cur, "--allow-new-settings") == 1
    captured = capsys.readouterr()
    assert captured.out == f"## Gate: {cur} against {base}\n" + COMPARE_REPORT + "\n"
    assert captured.err == "pipeline.gate: FAIL: sequential test_accuracy\n"


def test_compare_refuses_new_settings_unless_allowed_and_names_a_device_change_of_either_model(tmp_path):
    files = gate_compare.metric_files(params.load(ROOT / "params.yaml").paths, registry.names())
    read = lambda d: gate_compare.metrics_in_dir(d, list(files.values()), "x")  # noqa: E731
    base = read(_metrics(tmp_path, "base"))
    newer = read(_metrics(tmp_path, "newer", changes={"parallel": {"train": {"epochs": 3}}}))
    drops = {m: 0.03 for m in registry.names()}
    with pytest.raises(gate_compare.SettingsChanged, match="train-parallel.json: .*epochs 2 vs 3"):
        gate_compare.compare(base, newer, params.load(ROOT / "params.yaml").gate, files, drops)
    for model, devices in (("sequential", "cpu vs cpu, other cpu"), ("parallel", "cpu vs cpu, other cpu")):
        moved = read(_metrics(tmp_path, f"moved-{model}", changes={model: {"train": {"device_name": "other cpu"}}}))
        _, notes = gate_compare.compare(base, moved, params.load(ROOT / "params.yaml").gate, files, drops)
        assert notes[-1] == f"timings come from different devices ({devices})"
    _, notes = gate_compare.compare(base, base, params.load(ROOT / "params.yaml").gate, files, drops)
    assert not any("devices" in note for note in notes)


@pytest.mark.parametrize("dropped", ["sequential", "parallel"])
def test_a_drop_of_one_model_alone_fails_the_gate(tmp_path, in_root, capsys, dropped):
    base = _metrics(tmp_path, "base", accuracy=PER_MODEL)
    worse = {**PER_MODEL, dropped: PER_MODEL[dropped] - 0.0305}  # 61 images
    assert _compare(tmp_path, base, _metrics(tmp_path, "worse", accuracy=worse)) == 1
    captured = capsys.readouterr()
    assert _row(captured.out, dropped).endswith("| **FAIL** |")
    other = next(m for m in PER_MODEL if m != dropped)
    assert _row(captured.out, other).endswith("| pass |")
    assert captured.err.strip() == f"pipeline.gate: FAIL: {dropped} test_accuracy"
    at_tolerance = {**PER_MODEL, dropped: PER_MODEL[dropped] - 0.03}  # 60 images: allowed
    assert _compare(tmp_path, base, _metrics(tmp_path, "at", accuracy=at_tolerance)) == 0


@pytest.mark.parametrize("changed", ["sequential", "parallel"])
def test_one_models_new_settings_leave_the_other_model_gated(tmp_path, in_root, capsys, changed):
    base = _metrics(tmp_path, "base", accuracy=PER_MODEL)
    other = next(m for m in PER_MODEL if m != changed)
    both_dropped = {m: a - 0.1 for m, a in PER_MODEL.items()}
    current = _metrics(tmp_path, "cur", accuracy=both_dropped, changes={changed: {"train": {"epochs": 10}}})
    assert _compare(tmp_path, base, current) == 2
    assert f"train-{changed}.json: baseline and current come from different settings (epochs 2 vs 10)" in capsys.readouterr().err
    assert _compare(tmp_path, base, current, "--allow-new-settings") == 1
    captured = capsys.readouterr()
    assert _row(captured.out, changed).endswith("| not gated: new settings | advisory |")
    assert _row(captured.out, other).endswith("| **FAIL** |")
    assert captured.err.strip() == f"pipeline.gate: FAIL: {other} test_accuracy"
    # its evaluate settings alone (the test images) count as new settings too
    scored_again = _metrics(tmp_path, "images", accuracy=PER_MODEL, changes={changed: {"evaluate": {"test_images": 1000}}})
    assert _compare(tmp_path, base, scored_again, "--allow-new-settings") == 0
    assert _row(capsys.readouterr().out, changed).endswith("| not gated: new settings | advisory |")


@pytest.mark.parametrize("missing", ["train-sequential.json", "evaluate-sequential.json", "train-parallel.json",
                                     "evaluate-parallel.json", "lstm-step.json"])
@pytest.mark.parametrize("side", ["base", "cur"])
def test_one_missing_metrics_file_is_one_line_naming_it(tmp_path, in_root, capsys, missing, side):
    dirs = {name: _metrics(tmp_path, name, accuracy=PER_MODEL) for name in ("base", "cur")}
    (dirs[side] / missing).unlink()
    assert _compare(tmp_path, dirs["base"], dirs["cur"]) == 2
    err = capsys.readouterr().err
    label = "baseline" if side == "base" else "current"
    assert err.count("\n") == 1 and f"{label} {dirs[side]}: cannot read {missing}" in err


def test_compare_refuses_a_setting_only_one_run_recorded(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    newer = _metrics(tmp_path, "newer")
    for model in ("sequential", "parallel"):
        train = json.loads((base / f"train-{model}.json").read_text())
        del train["batch_size"]
        (base / f"train-{model}.json").write_text(json.dumps(train))
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(newer)]) == 2
    assert "batch_size (not recorded) vs 100" in capsys.readouterr().err


def test_a_setting_an_older_writer_left_out_is_the_value_it_implied(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    newer = _metrics(tmp_path, "newer")
    for model in ("sequential", "parallel"):  # written before the loss, the processes and the limit existed
        train = json.loads((base / f"train-{model}.json").read_text())
        for key in ("loss", "processes", "time_limit_s", "distribution", "epochs_completed"):
            del train[key]
        (base / f"train-{model}.json").write_text(json.dumps(train))
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(newer)]) == 0
    capsys.readouterr()
    clipped = _metrics(tmp_path, "clipped", changes={"train": {"loss": "clipped_crossentropy"}})
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(clipped)]) == 2
    assert "loss crossentropy vs clipped_crossentropy" in capsys.readouterr().err


@pytest.mark.parametrize("recorded", [{"time_limit_s": None}, {}])
def test_a_setting_recorded_as_null_and_one_left_unrecorded(tmp_path, recorded):
    # no time limit recorded (an older writer) reads as null (no limit); a setting with no implied value
    # that one run left out differs; differing settings are listed in the schema's order
    files = gate_compare.metric_files(params.load(ROOT / "params.yaml").paths, registry.names())
    read = lambda d: gate_compare.metrics_in_dir(d, list(files.values()), "x")  # noqa: E731
    base, cur = read(_metrics(tmp_path, "base")), read(_metrics(tmp_path, "cur"))
    for model in ("sequential", "parallel"):
        del cur[f"train-{model}.json"]["time_limit_s"]
        cur[f"train-{model}.json"].update(recorded, seed=5)
    changed = gate_compare.changed_settings(base, cur, files)
    assert changed == {f"train-{m}": f"train-{m}.json: baseline and current come from different settings (seed 0 vs 5)"
                       for m in ("sequential", "parallel")}
    for model in ("sequential", "parallel"):
        del cur[f"train-{model}.json"]["batch_size"]
    what = "batch_size 100 vs (not recorded); seed 0 vs 5"
    assert gate_compare.changed_settings(base, cur, files)["train-sequential"].endswith(f"({what})")
    # and the other way round
    assert gate_compare.changed_settings(cur, base, files)["train-parallel"].endswith(
        "(batch_size (not recorded) vs 100; seed 5 vs 0)")


def test_the_error_lines_name_the_source_the_file_and_the_nested_key(tmp_path, root):
    with pytest.raises(gate.GateUsageError) as exc:
        gate_compare.metrics_at_rev("HEAD", "no-such-dir", ["train-sequential.json"])
    assert str(exc.value).startswith("baseline HEAD: cannot read train-sequential.json: ")
    assert str(exc.value).count("\n") == 0 and not str(exc.value).endswith(": ?")
    with pytest.raises(gate.GateUsageError, match=r"^label: cannot read x.json: Expecting value: line 1 column 1 \(char 0\)$"):
        (tmp_path / "x.json").write_text("not json")
        gate_compare.metrics_in_dir(tmp_path, ["x.json"], "label")
    metrics = {"lstm-step.json": {"sequential": {"cpu_generic": {"rounds": "20"}}}}
    with pytest.raises(gate.GateUsageError, match=r"^lstm-step.json: missing metric sequential.cpu_generic.median$"):
        gate_compare._get(metrics, "lstm-step.json", "sequential", "cpu_generic", "median")
    with pytest.raises(gate.GateUsageError, match=r"^lstm-step.json: metric sequential.cpu_generic.rounds is '20', not a number$"):
        gate_compare._get(metrics, "lstm-step.json", "sequential", "cpu_generic", "rounds")


def test_a_test_set_of_one_image_counts_and_the_count_tolerance_is_inclusive():
    assert gate_compare.scored({"e": {"test_images": 1, "test_accuracy": 1.0}}, "e") == gate_compare.Scored(1, 1)
    # 0.05 of an image away from a whole count is the most the recorded decimals may be off
    assert gate_compare.scored({"e": {"test_images": 1, "test_accuracy": 0.05}}, "e") == gate_compare.Scored(0, 1)
    with pytest.raises(gate.GateUsageError, match="not a whole number of the 1 test images"):
        gate_compare.scored({"e": {"test_images": 1, "test_accuracy": 0.0500001}}, "e")


def test_an_accuracy_row_on_different_test_sets_shows_no_image_counts():
    row = gate_compare.accuracy_verdict("m", gate_compare.Scored(600, 2000), gate_compare.Scored(2900, 10000), 0.03)
    assert (row.change, row.allowed, row.passed) == ("-0.0100", ">= -0.0300", True)


def test_compare_reads_the_baseline_committed_on_main_by_default(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    copy_reference(repo)
    _metrics(repo, params.load(repo / "params.yaml").paths.metrics_dir, accuracy=PER_MODEL)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "metrics"], cwd=repo, check=True)
    subprocess.run(["git", "checkout", "-q", "-b", "work"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    current = _metrics(tmp_path, "cur", accuracy={"sequential": 0.2, "parallel": 0.36})
    assert gate_command.main(["compare", "--current-dir", str(current)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"## Gate: {current} against main\n") and "| 0.3100 (620 of 2000) | 0.2000 (400 of 2000) |" in out
    # without --current-dir: the workspace's metrics directory (params.yaml's paths.metrics_dir)
    shutil.rmtree(repo / "metrics")
    shutil.copytree(current, repo / "metrics")
    assert gate_command.main(["compare"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("## Gate: metrics against main\n") and "| 0.3100 (620 of 2000) | 0.2000 (400 of 2000) |" in out


def test_missing_baseline_exits_2(tmp_path, in_root, capsys):
    current = _metrics(tmp_path, "cur")
    assert gate_command.main(["compare", "--baseline-dir", str(tmp_path / "none"), "--current-dir", str(current)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read train-sequential.json" in err
    assert gate_command.main(["compare", "--baseline", "no-such-rev", "--current-dir", str(current)]) == 2


def test_missing_metric_exits_2(tmp_path, in_root, capsys):
    base, current = _metrics(tmp_path, "base"), _metrics(tmp_path, "cur")
    evaluate = json.loads((current / "evaluate-sequential.json").read_text())
    del evaluate["test_accuracy"]
    (current / "evaluate-sequential.json").write_text(json.dumps(evaluate))
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(current)]) == 2
    assert "evaluate-sequential.json: missing metric test_accuracy" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    (tmp_path / "a-file").write_text("")
    args = ["compare", "--baseline-dir", str(base), "--current-dir", str(base)]
    assert gate_command.main(args + ["--report", str(tmp_path / "a-file" / "gate.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a-file/gate.md: cannot create its folder" in err
    assert gate_command.main(args + ["--report", str(tmp_path / "gate.md")]) == 0
    assert (tmp_path / "gate.md").read_text().startswith("## Gate:")


def test_a_command_line_the_gate_cannot_take_exits_2(in_root, capsys):
    assert gate_command.main(["compare", "--no-such-option"]) == 2
    assert gate_command.main([]) == 2
    assert "pipeline.gate: error: unrecognized arguments: --no-such-option" in capsys.readouterr().err


# ---------------------------------------------------------------- A/B mode, real workers

# The last commit whose pipeline/lib/speed.py also had the LSTM-core rows.
WITH_LSTM_CORE_ROWS = "b811c27"
BENCHMARKS = [f"{model} {what}" for model in ("sequential", "parallel") for what in ("fit loop", "inference batch")]


def _real_ab(tmp_path, base: str) -> tuple[subprocess.CompletedProcess, dict]:
    record = tmp_path / f"ab-{base}.json"
    result = subprocess.run([sys.executable, "-m", "pipeline.gate", "ab", "--base", base, "--processes", "2",
                             "--min-pairs", "6", "--max-pairs", "6", "--record", str(record)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr  # pass or fail is timing: not this test's business
    return result, json.loads(record.read_text())


@pytest.mark.slow
@pytest.mark.xdist_group("worktrees of the repository")  # one at a time under make test
def test_a_real_ab_run_times_every_row_in_common_side_by_side(tmp_path):
    # one real run (about 50 s) against a base that also had the LSTM-core rows: the rows both revs
    # have are timed on every worker, the base's extra rows are named as no longer gated
    result, record = _real_ab(tmp_path, WITH_LSTM_CORE_ROWS)
    assert sorted(record["times"]) == sorted(BENCHMARKS)
    for name in BENCHMARKS:
        assert f"| {name} |" in result.stdout
        for side in ("base", "head"):
            per_process = record["times"][name][side]
            assert [len(times) for times in per_process] == [3, 3]  # 6 pairs over 2 worker pairs
            assert all(ms > 0 for times in per_process for ms in times)
    assert record["stopped"] == "undecided at ab_max_pairs (6 pairs)" or record["stopped"].startswith("decided")
    assert f"gate ab: 6 pairs of {len(BENCHMARKS)} benchmarks" in result.stderr  # progress
    assert ("not in head working tree, so no longer gated: sequential LSTM core step, parallel LSTM core step\n"
            in result.stdout)


@pytest.mark.parametrize("flag,value,message", [
    ("--processes", "1", "gate.ab_processes = 1 is invalid; allowed: >= 2"),
    ("--min-pairs", "5", "gate.ab_min_pairs = 5 is invalid; allowed: >= 3 * ab_processes"),
    ("--max-pairs", "4", "gate.ab_max_pairs = 4 is invalid; allowed: >= ab_min_pairs"),
    ("--budget-s", "0", "gate.ab_budget_s = 0.0 is invalid; allowed: > 0"),
    ("--processes", "two", "argument --processes: invalid int value: 'two'"),
])
def test_every_ab_override_is_checked_like_params_yaml(in_root, capsys, flag, value, message):
    # refused before any worker starts: one line, exit 2
    assert gate_command.main(["ab", "--base", "HEAD", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    if not message.startswith("argument"):  # a value argparse took, refused by params' checks
        assert err.startswith(f"pipeline.gate: error: params.yaml with the command-line overrides: {message}")


# ---------------------------------------------------------------- the statistic, on the gate's own noise
# tests/gate_sim.py draws process offsets and step noise from the gate's recorded A/A runs
# (tests/fixtures/gate-noise-74f8242.json, from reports/gate-power/runs: the six rows of 74f8242: train steps, inference batches, LSTM cores): heavy
# tails and slow processes as they happen on this machine. These tests hold the sampling loop, the
# interval and the verdict to their measured rates on that noise; the rows of today's gate (fit loops
# instead of train steps) have their own real-run rates in docs/gates.md.

TRAIN_STEPS = ["sequential train step", "parallel train step"]


@pytest.fixture(scope="module")
def noise():
    return gate_sim.recorded_noise()


@pytest.fixture(scope="module")
def defaults():
    return params.load(ROOT / "params.yaml").gate


def _coverage(noise, processes, pairs, pool=gate_statistics.pooled_slowdown, sims=300):
    return gate_sim.coverage(noise, processes, pairs, pool, sims)


def test_the_pooled_interval_covers_the_true_slowdown_at_its_measured_rate(noise, defaults):
    # 95% nominal, 89% measured at the defaults (reports/gate-power/coverage.csv). Too narrow (pooling
    # dropped: pairs treated as independent of their process) falls below the band; too wide (a 99% or
    # 99.9% interval, min..max, a doubled spread) rises above it.
    coverage = _coverage(noise, defaults.ab_processes, 8)
    assert 0.85 <= coverage <= 0.94, coverage


def test_an_interval_that_ignores_the_worker_pairs_is_caught_by_the_coverage_test(noise, defaults):
    assert _coverage(noise, defaults.ab_processes, 8, pool=gate_sim.unpooled) < 0.85


def test_a_min_to_max_interval_is_caught_by_the_coverage_test(noise, defaults):
    def min_max(groups, confidence, seed=0):
        p = gate_statistics.pooled_slowdown(groups, confidence, seed)
        ratios = np.concatenate([np.asarray(h) / np.asarray(b) for b, h in groups])
        return dataclasses.replace(p, low=float(ratios.min() - 1), high=float(ratios.max() - 1))
    assert _coverage(noise, defaults.ab_processes, 8, pool=min_max) > 0.94


def test_an_interval_twice_as_wide_is_caught_by_the_coverage_test(noise, defaults):
    def doubled(groups, confidence, seed=0):
        p = gate_statistics.pooled_slowdown(groups, confidence, seed)
        return dataclasses.replace(p, low=p.slowdown - 2 * (p.slowdown - p.low), high=p.slowdown + 2 * (p.high - p.slowdown))
    assert _coverage(noise, defaults.ab_processes, 8, pool=doubled) > 0.94


def _gate_rate(noise, cfg, names, slowdown: float, runs: int, seed: int) -> float:
    """How often simulated gate runs fail, with `slowdown` on the train steps."""
    rng = np.random.default_rng(seed)
    return float(np.mean([gate_sim.run_gate(noise, names, {n: slowdown for n in TRAIN_STEPS}, cfg, rng)[0]
                          for _ in range(runs)]))


def test_the_gate_rarely_fails_identical_code(noise, defaults):
    # all six recorded rows: any one failing is a false alarm
    assert _gate_rate(noise, defaults, sorted(noise.offsets), 0.0, 100, seed=2) <= 0.02


def test_the_gate_catches_a_15_percent_slowdown(noise, defaults):
    assert _gate_rate(noise, defaults, TRAIN_STEPS, 0.15, 100, seed=3) >= 0.95


def test_without_the_threshold_identical_code_would_fail_often(noise, defaults):
    # the threshold is what keeps A/A quiet: at max_slowdown 0 the same noise fails far more often
    loose = dataclasses.replace(defaults, max_slowdown=1e-9)
    assert _gate_rate(noise, loose, TRAIN_STEPS, 0.0, 60, seed=4) > 0.05


def test_a_precise_small_slowdown_within_the_allowance_passes_and_one_beyond_it_fails():
    rng = np.random.default_rng(5)
    base = [100 * np.exp(0.01 * rng.standard_normal(20)) for _ in range(3)]
    for slowdown, passes in ((0.06, True), (0.14, False)):
        groups = [(b, b * (1 + slowdown) * np.exp(0.01 * rng.standard_normal(20))) for b in base]
        assert gate_ab.ab_verdict("t", groups, max_slowdown=0.10, confidence=0.95).passed is passes


def test_a_large_slowdown_on_wildly_noisy_pairs_is_no_evidence():
    # estimate +20% beyond the allowance, but the interval reaches below 0: the interval is what passes it
    groups = [([100, 100, 100], [60, 120, 300]), ([100, 100, 100], [70, 125, 250])]
    pooled = gate_statistics.pooled_slowdown(groups, 0.95)
    assert pooled.slowdown > 0.10 and pooled.low < 0
    assert gate_ab.ab_verdict("t", groups, max_slowdown=0.10, confidence=0.95).passed


def test_one_slow_worker_pair_does_not_fail_identical_code_and_one_fast_one_does_not_hide_a_regression():
    rng = np.random.default_rng(6)
    noisy = lambda: 100 * np.exp(0.03 * rng.standard_normal(12))  # noqa: E731
    # A/A with one worker pair +12% slower for its whole life: pooled about +4%, passes
    assert gate_ab.ab_verdict("t", [(noisy(), noisy() * 1.12), (noisy(), noisy()), (noisy(), noisy())], 0.10, 0.95).passed
    # +20% everywhere but one worker pair 10% fast, so that pair alone shows about +8%: pooled, the gate
    # fails it; a rule that needs every worker pair past the allowance (this gate's earlier one) did not
    slow = [(noisy(), noisy() * 1.2 * offset) for offset in (0.90, 1.0, 1.0)]
    pooled = gate_statistics.pooled_slowdown(slow, 0.95)
    assert min(pooled.per_process) < 0.10 < pooled.slowdown
    assert not gate_ab.ab_verdict("t", slow, 0.10, 0.95).passed


def test_worker_pairs_of_unequal_length_get_the_same_interval_as_equal_ones():
    # the bootstrap has a fast path for equal lengths; the general one must agree with it
    rng = np.random.default_rng(7)
    groups = [(100 * np.exp(0.05 * rng.standard_normal(16)), 110 * np.exp(0.05 * rng.standard_normal(16)))
              for _ in range(3)]
    equal = gate_statistics.pooled_slowdown(groups, 0.95)
    unequal = gate_statistics.pooled_slowdown([(b[:15], h[:15]) if i == 0 else (b, h) for i, (b, h) in enumerate(groups)], 0.95)
    assert abs(unequal.slowdown - equal.slowdown) < 0.01
    assert abs(unequal.low - equal.low) < 0.015 and abs(unequal.high - equal.high) < 0.015


# A commit with neither pipeline/lib/speed.py nor make_train_step: nothing to benchmark.
BEFORE_ANY_BENCHMARK = "65e3e80"


@pytest.mark.slow
def test_a_base_with_nothing_to_benchmark_is_one_line_or_a_notice(in_root, capsys):
    args = ["ab", "--base", BEFORE_ANY_BENCHMARK, "--processes", "2", "--min-pairs", "6"]
    assert gate_command.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if not line.startswith("gate ab: ")]) == 1  # progress lines, then one error
    assert f"base ({BEFORE_ANY_BENCHMARK}): benchmark worker exited: this rev has no speed module (pipeline.lib.speed, pipeline.speed)" in err[-1]
    assert gate_command.main(args + ["--allow-missing-baseline"]) == 0
    assert "no A/B baseline" in capsys.readouterr().out


def test_a_rev_that_does_not_exist_is_one_line_and_leaves_no_worktree(in_root, capsys):
    def worktrees():
        return subprocess.run(["git", "worktree", "list"], capture_output=True, text=True, check=True).stdout
    before = worktrees()
    assert gate_command.main(["ab", "--base", "HEAD", "--head", "no-such-rev"]) == 2
    assert capsys.readouterr().err.strip().endswith("git rev 'no-such-rev': cannot check out: fatal: invalid reference: no-such-rev")
    assert worktrees() == before  # the base worktree made first is removed again


# A rev whose pipeline/lib/speed.py has one benchmark that times itself and one that does not; the first
# answers, then waits for the file `go` before it returns (as a fit loop winds down after its epoch).
SELF_TIMED_SPEED = """
import pathlib, time

class Own:
    reports_own_time = True

    def __call__(self, report=None):
        if report:
            report(7.25)
        while not pathlib.Path("go").exists():
            time.sleep(0.01)
        return 7.25

class Quiet(Own):
    def __call__(self, report=None):
        return 3.5  # never reports early: the worker answers with what it returns

class Twice(Own):
    def __call__(self, report=None):
        if report:  # the warm-up calls have none
            report(1.0)
            report(2.0)
        return 1.0

def benchmarks(*args):
    return {"own": Own(), "wall": lambda: time.sleep(0.05), "quiet": Quiet(), "twice": Twice()}
"""


def test_the_worker_answers_a_self_timed_benchmark_with_its_own_time_before_it_returns(tmp_path):
    import select

    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "speed.py").write_text(SELF_TIMED_SPEED)
    (tmp_path / "go").write_text("")  # the warm-up calls return at once
    worker = subprocess.Popen(
        [sys.executable, str(gate_workers.WORKER), "--batch", "1", "--inference-batch", "1", "--learning-rate", "0.1",
         "--loss", "crossentropy", "--warmup", "1"], cwd=tmp_path, text=True, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "KERAS_BACKEND": "numpy"})

    def ask(name: str) -> dict:
        worker.stdin.write(name + "\n")
        worker.stdin.flush()
        assert select.select([worker.stdout], [], [], 60)[0], f"no answer to {name}"
        return json.loads(worker.stdout.readline())

    try:
        assert select.select([worker.stdout], [], [], 120)[0]
        assert json.loads(worker.stdout.readline())["benchmarks"] == ["own", "wall", "quiet", "twice"]
        (tmp_path / "go").unlink()
        assert ask("own") == {"ms": 7.25}  # answered while the benchmark still waits for `go`
        (tmp_path / "go").write_text("")
        assert ask("wall")["ms"] >= 50  # timed by the worker, after `own` returned
        assert ask("quiet") == {"ms": 3.5}
        assert ask("twice") == {"ms": 1.0}  # the first report is the answer; the second ends the worker
        assert worker.wait(timeout=60) == 1
        assert worker.stderr.read().strip().splitlines()[-1] == "twice: the benchmark reported its time twice"
    finally:
        worker.kill()
        worker.wait()


# ---------------------------------------------------------------- the sampling loop, with scripted workers


class Scripted:
    """A worker whose steps take `ms` (head: times `ratio`) and advance a shared clock; logs its calls."""

    def __init__(self, side, proc, ms, ratio, clock, log):
        self.side, self.proc, self.ms, self.ratio, self.clock, self.log = side, proc, ms, ratio, clock, log

    def step(self, name):
        ms = self.ms * (self.ratio if self.side == "head" else 1.0) * (1 + 0.01 * (len(self.log) % 3))
        self.clock.now += ms / 1000
        self.log.append((self.proc, name, self.side))
        return ms


def _scripted(cfg, ratio, ms=100.0):
    clock, log = gate_sim.Clock(), []
    workers = {side: [Scripted(side, p, ms, ratio, clock, log) for p in range(cfg.ab_processes)]
               for side in gate_ab.SIDES}
    samples, stopped = gate_ab.sample(workers, ["a", "b"], cfg, clock=clock)
    return samples, stopped, log, clock.now


def test_sampling_alternates_which_side_goes_first(defaults):
    _, _, log, _ = _scripted(defaults, ratio=1.0)
    first = [(proc, side) for i, (proc, name, side) in enumerate(log) if i % 2 == 0 and name == "a"]
    rounds = [first[i:i + defaults.ab_processes] for i in range(0, len(first), defaults.ab_processes)]
    # worker pair 0 starts with base, pair 1 with head, ...; the next round swaps them all
    assert [side for _, side in rounds[0]] == ["base", "head", "base"][:defaults.ab_processes]
    assert [side for _, side in rounds[1]] == ["head", "base", "head"][:defaults.ab_processes]


def test_sampling_stops_once_decided_but_not_before_the_minimum(defaults):
    # equal times: every interval is near 0, far below the allowance, from the first look
    samples, stopped, _, _ = _scripted(defaults, ratio=1.0)
    assert samples.pairs() == defaults.ab_min_pairs and stopped == f"decided after {defaults.ab_min_pairs} pairs"


def test_sampling_stops_at_the_budget_when_undecided(defaults):
    # a slowdown right at the allowance never gets an interval wholly on one side of it
    cfg = dataclasses.replace(defaults, ab_budget_s=20.0, ab_max_pairs=1000)
    samples, stopped, _, elapsed = _scripted(cfg, ratio=1 + cfg.max_slowdown)
    assert stopped == f"undecided at the 20 s budget ({samples.pairs()} pairs)"
    assert elapsed <= 20.0 and samples.pairs() > cfg.ab_min_pairs  # stopped before the round that would pass it


class Exact:
    """A worker whose every step takes exactly 0.125 s of a shared clock; head steps alternate 90 and 130 ms
    against base's 100, round by round, so no interval ever lies wholly on one side of a 10% allowance."""

    def __init__(self, side, clock):
        self.side, self.clock, self.steps = side, clock, 0

    def step(self, name):
        self.clock.now += 0.125
        self.steps += 1
        return 100.0 if self.side == "base" else (90.0, 130.0)[self.steps // 2 % 2]  # by round, for both benchmarks


def test_the_budget_is_spent_to_the_last_round_that_fits_on_a_clock_that_does_not_start_at_zero(defaults):
    # a round is 3 worker pairs x 2 benchmarks x 2 sides x 0.125 s = 1.5 s; a 10.5 s budget fits 7 rounds
    # exactly (21 pairs): sampling stops when the next round would pass it, not when it would reach it
    cfg = dataclasses.replace(defaults, ab_processes=3, ab_min_pairs=9, ab_max_pairs=1000, ab_budget_s=10.5)
    clock = gate_sim.Clock()
    clock.now = 1000.0
    workers = {side: [Exact(side, clock) for _ in range(3)] for side in gate_ab.SIDES}
    samples, stopped = gate_ab.sample(workers, ["a", "b"], cfg, clock=clock)
    assert stopped == "undecided at the 10.5 s budget (21 pairs)" and clock.now == 1010.5


UNEQUAL = [([100.0, 101.0, 99.0, 100.0], [110.0, 112.0, 108.0, 111.0]), ([100.0, 100.0, 102.0], [104.0, 120.0, 101.0])]


def test_the_pooled_interval_is_seeded_so_a_verdict_can_be_recomputed_exactly():
    # recorded once from this seeded bootstrap: a change of seed, resampling or pooling moves these digits
    pooled = gate_statistics.pooled_slowdown(UNEQUAL, 0.95)
    assert pooled == gate_statistics.pooled_slowdown(UNEQUAL, 0.95, seed=0)
    assert (round(pooled.slowdown, 6), round(pooled.low, 6), round(pooled.high, 6)) == (0.071739, 0.014793, 0.15384)
    assert [round(v, 6) for v in pooled.per_process] == [0.104446, 0.04] and pooled.pairs == 7
    assert gate_ab.ab_verdict("t", UNEQUAL, 0.10, 0.95) == gate_report.Row(
        "t", "100.00 ms", "110.00 ms", "+7.2% [+1.5% .. +15.4%] (7 pairs; per worker pair +10.4%, +4.0%)", "<= +10.0%", True)
    # one pair per worker pair is enough; none is not
    assert gate_statistics.pooled_slowdown([([100.0], [120.0]), ([100.0], [110.0])], 0.9).pairs == 2
    with pytest.raises(ValueError, match=r"^every worker pair needs at least one \(base, head\) pair$"):
        gate_statistics.pooled_slowdown([([100.0], [120.0]), ([], [])], 0.9)


def test_a_report_without_notes_ends_in_one_newline():
    rows = {"Accuracy": [gate_compare.accuracy_verdict("m", gate_compare.Scored(5, 10), gate_compare.Scored(5, 10), 0.03)]}
    assert gate_report.markdown("T", rows, []).endswith("| pass |\n")


def test_the_verdict_and_the_stopping_rule_at_their_lines():
    def pooled(slowdown, low, high):
        return gate_statistics.Pooled(slowdown, low, high, (slowdown,), 12)
    # a slowdown of exactly the allowance is no regression, nor is an interval that starts at exactly 0
    assert not gate_statistics.regressed(pooled(0.10, 0.05, 0.2), 0.10) and gate_statistics.regressed(pooled(0.1001, 0.05, 0.2), 0.10)
    assert not gate_statistics.regressed(pooled(0.2, 0.0, 0.3), 0.10) and gate_statistics.regressed(pooled(0.2, 0.0001, 0.3), 0.10)
    # an interval that touches the allowance is not decided
    assert not gate_statistics.decided(pooled(0.05, 0.0, 0.10), 0.10) and gate_statistics.decided(pooled(0.05, 0.0, 0.0999), 0.10)
    assert not gate_statistics.decided(pooled(0.2, 0.10, 0.3), 0.10) and gate_statistics.decided(pooled(0.2, 0.1001, 0.3), 0.10)


def test_sampling_stops_at_the_most_pairs_when_undecided(defaults):
    cfg = dataclasses.replace(defaults, ab_budget_s=1e6, ab_max_pairs=24)
    samples, stopped, _, _ = _scripted(cfg, ratio=1 + cfg.max_slowdown)
    assert samples.pairs() == 24 and stopped == "undecided at ab_max_pairs (24 pairs)"


@pytest.mark.parametrize("value", [None, "0.5", True, float("nan")])
def test_a_metric_that_is_not_a_number_is_one_line(tmp_path, in_root, capsys, value):
    base, current = _metrics(tmp_path, "base"), _metrics(tmp_path, "cur")
    evaluate = json.loads((current / "evaluate-sequential.json").read_text())
    evaluate["test_accuracy"] = value
    (current / "evaluate-sequential.json").write_text(json.dumps(evaluate))
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(current)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluate-sequential.json: metric test_accuracy is" in err and "not a number" in err


def test_a_metrics_file_that_is_not_an_object_is_one_line(tmp_path, in_root, capsys):
    base, current = _metrics(tmp_path, "base"), _metrics(tmp_path, "cur")
    (current / "train-parallel.json").write_text("[1, 2]")
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(current)]) == 2
    assert "train-parallel.json is not a metrics object (a JSON list)" in capsys.readouterr().err


# Stand-in workers for the gate's error paths: (name, script). Each reads the gate's protocol like
# pipeline/gate/ab_worker.py and misbehaves in one way.
WORKERS = {
    "chatter": 'import sys; print("Loading weights...", flush=True); sys.stdin.readline()',
    "long": 'import sys; print("x" * 100, flush=True); sys.stdin.readline()',
    "silent": "import time; time.sleep(60)",
    "dies": 'import json, sys\nprint(json.dumps({"benchmarks": ["x"], "backend": "tensorflow", "warmup_s": 0}), flush=True)\n'
            'sys.stdin.readline(); sys.exit(1)',
    "backend": 'import json, os, sys\nside = os.path.basename(os.getcwd())\n'
               'print(json.dumps({"benchmarks": ["x"], "backend": "jax" if side == "base" else "tensorflow", '
               '"warmup_s": 0}), flush=True)\nsys.stdin.readline()',
}


@pytest.mark.parametrize("kind,message", [
    ("chatter", "benchmark worker answered 'Loading weights...'"),
    ("long", f"benchmark worker answered '{'x' * 80}': "),
    ("silent", "benchmark worker gave no answer in 2 s"),
    ("dies", "benchmark worker exited"),
    ("backend", "base runs on jax, head on tensorflow: an A/B comparison needs one backend"),
])
def test_a_worker_that_misbehaves_is_one_line_and_exit_2(tmp_path, in_root, monkeypatch, capsys, kind, message):
    script = tmp_path / "worker.py"
    script.write_text(WORKERS[kind] + "\n")
    monkeypatch.setattr(gate_workers, "WORKER", script)
    monkeypatch.setattr(gate_workers, "START_TIMEOUT_S", 2)
    # both sides in worktrees named base and head (the backend worker tells them apart by its cwd)
    assert gate_command.main(["ab", "--base", "HEAD", "--head", "HEAD", "--processes", "2", "--min-pairs", "6"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("gate ab: ")]
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("kind", ["answers nonsense", "stays silent"])
def test_a_worker_that_misbehaves_and_then_says_nothing_to_benchmark_is_still_an_error(
        tmp_path, in_root, monkeypatch, capsys, kind):
    # killed at once: it never gets to exit with NOTHING_TO_BENCHMARK, which --allow-missing-baseline forgives
    # it exits 0.5 s after its nonsense, or 0.5 s after the 1 s start timeout: within any wait but none
    first, wait = ('print("nonsense", flush=True); ', 0.5) if kind == "answers nonsense" else ("", 1.5)
    script = tmp_path / "worker.py"
    script.write_text(f"import sys, time\n{first}time.sleep({wait}); sys.exit(3)\n")
    monkeypatch.setattr(gate_workers, "WORKER", script)
    monkeypatch.setattr(gate_workers, "START_TIMEOUT_S", 1)
    args = ["ab", "--base", "HEAD", "--head", "HEAD", "--processes", "2", "--min-pairs", "6", "--allow-missing-baseline"]
    assert gate_command.main(args) == 2


# ---------------------------------------------------------------- A/B mode end to end, with stand-in workers
# tests/ab_standin.py answers scripted step times through the gate's real protocol, worktrees and report; the
# verdict comes from params.yaml's gate section of a scratch repository.

STANDIN = ROOT / "tests" / "ab_standin.py"


@pytest.fixture
def scratch_repo(tmp_path, monkeypatch):
    """A git repository holding this checkout's params.yaml, as the current directory; `gate_workers.WORKER` is
    the stand-in. Returns a function that sets gate keys in params.yaml and commits them."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (["init", "-q"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(gate_workers, "WORKER", STANDIN)

    def commit(**gate_keys):
        set_params(repo, **{f"gate.{key}": value for key, value in gate_keys.items()})
        subprocess.run(["git", "add", "params.yaml"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-qm", "params", "--allow-empty"], cwd=repo, check=True)

    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    commit()
    return commit


def _standin_ab(tmp_path, monkeypatch, capsys, base_ms, head_ms, names=("t1", "t2"), processes=2, fail=None, extra=(),
                head="HEAD", **misbehave):
    """`gate ab --base HEAD --head HEAD` (`head` None: no --head, the working tree) with stand-in workers:
    worker i of a side answers `ms[i]` (a list cycled over its steps), the same for every benchmark;
    `names`: the benchmarks, or {side: names}; `fail`: {side: [exit status, stderr]}; `misbehave`: closes
    or hangs=[sides] (tests/ab_standin.py). Returns (exit,
    stdout, stderr); what each worker was given is in tmp_path's last claims-N."""
    claims = tmp_path / f"claims-{len(list(tmp_path.glob('claims-*')))}"
    claims.mkdir()
    every = sorted(set().union(*names.values())) if isinstance(names, dict) else list(names)
    monkeypatch.setenv("AB_STANDIN", json.dumps({
        "benchmarks": names if isinstance(names, dict) else list(names), "claims": str(claims), "fail": fail or {}, **misbehave,
        "ms": {"base": {n: base_ms for n in every}, "head": {n: head_ms for n in every}}}))
    code = gate_command.main(["ab", "--base", "HEAD", *(["--head", head] if head else []), "--processes", str(processes), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _verdicts(out):
    return [line.rsplit("|", 2)[1].strip() for line in out.splitlines() if line.startswith("| t")]


def test_ab_fails_a_head_13x_slower_and_passes_identical_timings(tmp_path, scratch_repo, monkeypatch, capsys):
    scratch_repo(ab_min_pairs=6, ab_max_pairs=6)
    base = [[100.0, 101.0, 99.0]] * 2
    code, out, err = _standin_ab(tmp_path, monkeypatch, capsys, base, [[130.0, 131.3, 128.7]] * 2)
    assert code == 1 and _verdicts(out) == ["**FAIL**", "**FAIL**"]
    assert "**FAIL**: 2 of 2 checks failed" in out and "| +30.0% [+30.0% .. +30.0%] (6 pairs;" in out
    assert err.splitlines()[-1] == "pipeline.gate: FAIL: t1, t2"
    code, out, _ = _standin_ab(tmp_path, monkeypatch, capsys, base, base)
    assert code == 0 and _verdicts(out) == ["pass", "pass"] and "**PASS**: 0 of 2 checks failed" in out


@pytest.mark.parametrize("max_slowdown, code", [(0.19, 1), (0.21, 0)])
def test_ab_takes_its_allowance_from_params_yaml(tmp_path, scratch_repo, monkeypatch, capsys, max_slowdown, code):
    scratch_repo(max_slowdown=max_slowdown, ab_min_pairs=6, ab_max_pairs=6)
    result, out, _ = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[120.0]] * 2)
    assert result == code and f"| <= {max_slowdown:+.1%} |" in out


@pytest.mark.parametrize("confidence, code", [(0.95, 0), (0.90, 1)])
def test_ab_takes_its_confidence_from_params_yaml(tmp_path, scratch_repo, monkeypatch, capsys, confidence, code):
    # worker pairs at +40%, +40% and -5%: pooled +23%, beyond the 10% allowance. One bootstrap draw in 27
    # takes the -5% pair three times, so the 95% interval reaches -5% (no evidence: pass) while the 90%
    # one starts at +8% (fail).
    scratch_repo(ab_confidence=confidence, ab_min_pairs=9, ab_max_pairs=9)
    result, out, _ = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 3, [[140.0], [140.0], [95.0]],
                                 processes=3)
    assert result == code, out
    assert "+23.0% [" in out and f"change: pooled slowdown [{confidence:.0%} hierarchical-bootstrap interval]" in out


def test_ab_that_measures_no_benchmark_is_an_error(tmp_path, scratch_repo, monkeypatch, capsys):
    code, out, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, names=())
    assert code == 2 and "checks failed" not in out
    lines = [line for line in err.splitlines() if not line.startswith("gate ab: ")]
    assert len(lines) == 1 and "have no benchmark in common" in lines[0]


def test_every_worker_gets_params_yaml_settings_and_runs_its_own_revision(tmp_path, scratch_repo, monkeypatch, capsys):
    scratch_repo(ab_min_pairs=9, ab_max_pairs=9, ab_warmup=4)
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # what the workers see comes from the gate
    code, _, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 3, [[100.0]] * 3, processes=3)
    assert code == 0, err
    p = params.load(Path("params.yaml"))
    given = {f.name: json.loads(f.read_text()) for f in sorted(tmp_path.glob("claims-*/*"))}
    assert sorted(given) == ["base-0", "base-1", "base-2", "head-0", "head-1", "head-2"]
    for name, worker in given.items():
        assert worker["args"] == {"batch": p.train.batch_size, "inference_batch": p.evaluate.batch_size,
                                  "learning_rate": p.train.learning_rate, "loss": p.train.loss, "warmup": 4}
        # its own side's worktree, first on the import path, replies unbuffered
        assert Path(worker["cwd"]).name == name.split("-")[0]
        assert Path(worker["PYTHONPATH"]).resolve() == Path(worker["cwd"]).resolve()
        assert worker["PYTHONUNBUFFERED"] == "1"


def test_ab_against_the_working_tree_reports_and_records_what_it_measured(tmp_path, scratch_repo, monkeypatch, capsys):
    scratch_repo(ab_min_pairs=6, ab_max_pairs=6)
    record = tmp_path / "record.json"
    names = {"base": ["t0", "t1", "t2"], "head": ["t1", "t2", "t3"]}
    code, out, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, names=names, head=None,
                                 extra=("--record", str(record)))
    assert code == 0 and out.startswith("## Gate (A/B): working tree against HEAD\n") and "### Timing (A/B, same machine)" in out
    notes = [line for line in out.splitlines() if line.startswith("- ")]
    assert re.fullmatch(r"- base HEAD vs head working tree, interleaved on this machine with 2 worker processes per side "
                        r"\(backend stand-in\); sampling decided after 6 pairs; (\d+) s in all \((\d+) s starting the "
                        r"workers, (\d+) s measuring\)", notes[0]), notes[0]
    assert notes[-2:] == ["- not in base HEAD, so not gated: t3",
                          "- not in head working tree, so no longer gated: t0"]  # a row the change removed
    # progress goes to stderr, the report alone to stdout
    progress = err.splitlines()
    assert progress[0] == "gate ab: starting 4 benchmark workers (import, build, warm-up)"
    assert re.fullmatch(r"gate ab: 6 pairs of 2 benchmarks, \d+ s of 40 s", progress[-1]), progress
    saved = json.loads(record.read_text())
    assert record.read_text().endswith("}\n") and record.read_text().count("\n") == 1
    assert sorted(saved) == ["base", "gate", "head", "measured_s", "stopped", "times", "verdicts", "wall_s", "warmup_s"]
    assert (saved["base"], saved["head"], saved["stopped"]) == ("HEAD", None, "decided after 6 pairs")
    assert saved["verdicts"] == {"t1": True, "t2": True} and saved["gate"]["ab_min_pairs"] == 6
    assert saved["times"]["t1"]["head"] == [[100.0] * 3] * 2
    assert 0 <= saved["warmup_s"] <= saved["wall_s"] < 120 and 0 <= saved["measured_s"] <= saved["wall_s"]
    # with nothing in common, or a head worker that fails, the working tree is named as such
    code, _, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, head=None,
                               names={"base": ["t1", "t3"], "head": ["t2"]})
    assert code == 2 and err.splitlines()[-1] == ("pipeline.gate: error: base HEAD and head working tree have no benchmark "
                                                  "in common (base: t1, t3)")
    code, _, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, head=None,
                               fail={"head": [1, ""]})
    assert code == 2 and err.splitlines()[-1] == "pipeline.gate: error: head (working tree): benchmark worker exited: no output"


def test_a_worker_that_stops_reading_or_hangs_on_a_step_is_one_line(tmp_path, scratch_repo, monkeypatch, capsys):
    code, _, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, closes=["head"])
    assert code == 2 and err.splitlines()[-1] == "pipeline.gate: error: head (HEAD): benchmark worker exited: stdin closed"
    # a step gets STEP_TIMEOUT_S, not the start's START_TIMEOUT_S
    monkeypatch.setattr(gate_workers, "STEP_TIMEOUT_S", 1)
    code, _, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, hangs=["base"])
    assert code == 2 and err.splitlines()[-1] == "pipeline.gate: error: base (HEAD): benchmark worker gave no answer in 1 s: no output"


NOTHING = [3, "a warning\nanother warning\nthis rev has nothing to benchmark\n"]


def test_a_base_with_nothing_to_benchmark_is_one_line_or_with_the_flag_a_notice(tmp_path, scratch_repo, monkeypatch, capsys):
    for fail, flag, code in (({"base": NOTHING}, (), 2), ({"base": NOTHING}, ("--allow-missing-baseline",), 0),
                             ({"base": [1, NOTHING[1]]}, ("--allow-missing-baseline",), 2),
                             ({"head": NOTHING}, ("--allow-missing-baseline",), 2)):
        result, out, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, fail=fail, extra=flag)
        side = next(iter(fail))
        message = f"{side} (HEAD): benchmark worker exited: this rev has nothing to benchmark"
        lines = [line for line in err.splitlines() if not line.startswith("gate ab: ")]
        assert result == code, (fail, flag, out, err)
        if code == 2:
            assert lines == [f"pipeline.gate: error: {message}"]
        else:
            assert lines == [] and f"- no A/B baseline: {message}" in out


def test_a_missing_baseline_notice_is_also_the_report_file(tmp_path, scratch_repo, monkeypatch, capsys):
    report = tmp_path / "gate.md"
    code, out, _ = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, fail={"base": NOTHING},
                               extra=("--allow-missing-baseline", "--report", str(report)))
    assert code == 0 and report.read_text() == out.removesuffix("\n")
    assert "- no A/B baseline: base (HEAD): benchmark worker exited: this rev has nothing to benchmark; speed not gated.\n" in out


def test_a_bad_params_yaml_is_named_with_overrides_only_when_there_are_some(tmp_path, root, monkeypatch, capsys):
    mapping = params.load_mapping(root / "params.yaml")
    mapping["models"]["parallel"]["epochs"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(mapping))
    monkeypatch.chdir(tmp_path)
    problem = "models.parallel.epochs = 0 is invalid; allowed: >= 1"
    assert gate_command.main(["compare", "--baseline-dir", "b", "--current-dir", "c"]) == 2
    assert capsys.readouterr().err == f"pipeline.gate: error: params.yaml: {problem}\n"
    assert gate_command.main(["ab", "--processes", "2"]) == 2
    assert capsys.readouterr().err == f"pipeline.gate: error: params.yaml with the command-line overrides: {problem}\n"


def test_a_worker_that_exits_without_a_word_says_so(tmp_path, scratch_repo, monkeypatch, capsys):
    code, _, err = _standin_ab(tmp_path, monkeypatch, capsys, [[100.0]] * 2, [[100.0]] * 2, fail={"head": [1, ""]})
    assert code == 2 and err.splitlines()[-1] == "pipeline.gate: error: head (HEAD): benchmark worker exited: no output"


# ---------------------------------------------------------------- hardening


@pytest.mark.parametrize("args", [["compare", "--baseline=--output=written"], ["ab", "--base=-q"],
                                  ["ab", "--head=--output=written"], ["compare", "--baseline="]])
def test_a_revision_that_git_would_read_as_an_option_is_refused(scratch_repo, capsys, args):
    # in a git repository (scratch_repo), where git could have written the file
    repo = Path.cwd()
    before = sorted(p.name for p in repo.iterdir())
    assert gate_command.main(args) == 2
    err = capsys.readouterr().err
    option, value = args[1].split("=", 1)
    assert err == (f"pipeline.gate: error: {option} {value!r}: not a revision (a revision never starts with '-' and is "
                   "not empty)\n")
    assert sorted(p.name for p in repo.iterdir()) == before  # git wrote nothing


def test_the_help_of_each_command_word_for_word(in_root, capsys, monkeypatch):
    """tests/fixtures/gate-help.txt: `--help` of the gate, compare, reference and ab at 100 columns, as Python 3.11's
    argparse lays it out (regenerate it when a help text changes on purpose)."""
    monkeypatch.setenv("COLUMNS", "100")
    shown = []
    for args in ([], ["compare"], ["reference"], ["ab"]):
        with pytest.raises(SystemExit):
            gate_command.main([*args, "--help"])
        shown.append(capsys.readouterr().out)
    assert "\n".join(shown) == (ROOT / "tests" / "fixtures" / "gate-help.txt").read_text()


def test_the_ab_help_says_both_revisions_code_is_run(in_root, capsys):
    with pytest.raises(SystemExit):
        gate_command.main(["ab", "--help"])
    assert "runs the code of BOTH revisions" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("accuracy, code", [(0.5, 0), (0.4, 1)])
def test_a_closed_stdout_ends_quietly_with_the_verdict(tmp_path, accuracy, code):
    # `python -m pipeline.gate compare ... | head -0`: the reader is gone before the report is written
    base, current = _metrics(tmp_path, "base"), _metrics(tmp_path, "cur", accuracy=accuracy)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.gate", "compare", "--baseline-dir", str(base),
                             "--current-dir", str(current)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == code
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    failed = ", ".join(f"{m} test_accuracy" for m in registry.names())
    assert err == ("" if code == 0 else f"pipeline.gate: FAIL: {failed}\n")


def test_any_command_whose_reader_has_gone_ends_quietly_with_141():
    # a write outside cli.emit (a stage's print) that meets a closed pipe: no traceback, the shell's SIGPIPE status
    script = "import sys; from pipeline.lib import cli; sys.exit(cli.run(lambda argv: print('x' * 100_000), prog='p'))"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == cli.BROKEN_PIPE_EXIT == 141 and err == ""


def test_ab_list_prints_the_working_trees_rows_and_measures_nothing(in_root, capsys):
    from pipeline.lib import speed

    assert gate_command.main(["ab", "--list"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == speed.names() == [
        f"{model} {kind}" for model in registry.names() for kind in ("fit loop", "inference batch")]
    assert speed.names()[:4] == [
        "sequential fit loop", "sequential inference batch", "parallel fit loop", "parallel inference batch"]
    assert captured.err == ""


def test_the_revisions_compared_by_default():
    # ab: this commit against the one before it (CI's gate-ab); compare: the committed metrics of main
    parser = gate_command._parser()
    assert parser.parse_args(["ab"]).base == "HEAD~1" and parser.parse_args(["ab"]).head is None
    assert parser.parse_args(["compare"]).baseline == "main"


def test_a_metrics_file_that_fails_without_a_message_is_still_one_line_naming_it():
    def read(name):
        raise OSError()  # e.g. an interrupted read: no strerror, no message

    with pytest.raises(gate.GateUsageError) as refused:
        gate_compare._read_metrics("baseline HEAD~1", ["train-sequential.json"], read)
    assert str(refused.value) == "baseline HEAD~1: cannot read train-sequential.json: ?"
