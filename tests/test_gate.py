"""The gate's decision rules, its report and its exit codes (0 pass, 1 fail, 2 usage error)."""

import json

import numpy as np
import pytest

from pipeline import gate

TIGHT = dict(iqr_ms=1.0, n=50)


def test_accuracy_drop_beyond_tolerance_fails():
    assert not gate.accuracy_verdict("acc", 0.50, 0.47, max_drop=0.02).passed


def test_accuracy_change_within_tolerance_passes():
    assert gate.accuracy_verdict("acc", 0.50, 0.485, max_drop=0.02).passed
    assert gate.accuracy_verdict("acc", 0.50, 0.60, max_drop=0.02).passed


def test_timing_across_runs_is_advisory_however_large_the_change():
    # compare mode: a 2x slower step in another run is reported, never failed
    row = gate.timing_advisory("t", gate.Timing(100, **TIGHT), gate.Timing(200, **TIGHT), z=3)
    assert row.passed and row.advisory and row.change == "+100.0%" and "within-run noise" in row.allowed


def test_report_is_a_markdown_table_with_separate_sections():
    rows = {"Accuracy": [gate.accuracy_verdict("sequential test_accuracy", 0.5, 0.4, 0.02)],
            "Timing": [gate.timing_advisory("t", gate.Timing(100, **TIGHT), gate.Timing(101, **TIGHT), 3)]}
    text = gate.markdown("Gate", rows, ["a note"])
    assert "| metric | baseline | current | change | allowed | verdict |" in text
    assert "### Accuracy" in text and "### Timing" in text and "**FAIL**" in text and "- a note" in text
    assert "| advisory |" in text and "1 of 1 checks failed" in text  # the advisory row is no check


TRAIN = {"model": None, "epochs": 2, "epochs_completed": 2, "train_images": 5000, "batch_size": 100,
         "learning_rate": 0.001, "loss": "crossentropy", "seed": 0, "normalize": "raw", "distribution": "none",
         "replicas": 1, "processes": 1, "time_limit_s": None, "backend": "tensorflow", "timed_steps": 99,
         "step_time_ms_iqr": 1.0, "device_name": "cpu"}
LSTM_STEP = {"batch_size": 100, "units": 50, "warmup_steps": 3, "rounds": 20, "backend": "tensorflow", "float32": "ieee",
             "cpu_sgemm_n": 1024, "gpu_sgemm_n": 8192}


def _metrics(tmp_path, name, accuracy=0.5, step_ms=80.0, changes=None):
    """A metrics folder as the pipeline writes it; `changes` = {file kind: {key: value}} on top."""
    changes = changes or {}
    out = tmp_path / name
    out.mkdir()
    for model in ("sequential", "parallel"):
        train = {**TRAIN, "model": model, "step_time_ms_median": step_ms, **changes.get("train", {})}
        evaluate = {"model": model, "test_accuracy": accuracy, "test_images": 2000, "backend": "tensorflow",
                    **changes.get("evaluate", {})}
        (out / f"train-{model}.json").write_text(json.dumps(train))
        (out / f"evaluate-{model}.json").write_text(json.dumps(evaluate))
    core = {"cpu_generic": {"step_time_ms_median": step_ms, "step_time_ms_iqr": 1.0, "rounds": 20}}
    lstm = {**LSTM_STEP, "sequential": core, "parallel": core, **changes.get("lstm-step", {})}
    (out / "lstm-step.json").write_text(json.dumps(lstm))
    return out


@pytest.fixture
def in_root(root, monkeypatch):
    monkeypatch.chdir(root)


def test_exit_codes(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    args = ["compare", "--baseline-dir", str(base), "--current-dir"]
    assert gate.main(args + [str(_metrics(tmp_path, "same"))]) == 0
    assert gate.main(args + [str(_metrics(tmp_path, "worse", accuracy=0.4))]) == 1
    # timing across runs is advisory: a 2x slower step in another run passes, and the report says so
    assert gate.main(args + [str(_metrics(tmp_path, "slower", step_ms=160.0))]) == 0
    assert "+100.0%" in capsys.readouterr().out


# Every setting compare checks, with a value that differs from the one _metrics writes.
OTHER = {"epochs": 3, "epochs_completed": 1, "train_images": 10000, "batch_size": 50, "learning_rate": 0.01,
         "loss": "clipped_crossentropy", "seed": 1, "normalize": "unit", "distribution": "data_parallel",
         "replicas": 2, "processes": 2, "time_limit_s": 60.0, "backend": "jax", "test_images": 10000,
         "units": 64, "warmup_steps": 1, "rounds": 10, "float32": "tf32", "cpu_sgemm_n": 512, "gpu_sgemm_n": 4096}
DIFFERENT = [(kind, key) for kind, keys in gate.SETTINGS.items() for key in keys if key != "model"]


@pytest.mark.parametrize("kind,key", DIFFERENT, ids=[f"{k}.{key}" for k, key in DIFFERENT])
def test_compare_refuses_runs_of_different_settings(tmp_path, in_root, capsys, kind, key):
    base = _metrics(tmp_path, "base")
    other = _metrics(tmp_path, "other", changes={kind: {key: OTHER[key]}})
    assert gate.main(["compare", "--baseline-dir", str(base), "--current-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different settings" in err and f"{key} " in err


def test_compare_refuses_a_setting_only_one_run_recorded(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    newer = _metrics(tmp_path, "newer")
    for model in ("sequential", "parallel"):
        train = json.loads((base / f"train-{model}.json").read_text())
        del train["loss"]
        (base / f"train-{model}.json").write_text(json.dumps(train))
    assert gate.main(["compare", "--baseline-dir", str(base), "--current-dir", str(newer)]) == 2
    assert "loss (not recorded) vs crossentropy" in capsys.readouterr().err


def test_missing_baseline_exits_2(tmp_path, in_root, capsys):
    current = _metrics(tmp_path, "cur")
    assert gate.main(["compare", "--baseline-dir", str(tmp_path / "none"), "--current-dir", str(current)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read train-sequential.json" in err
    assert gate.main(["compare", "--baseline", "no-such-rev", "--current-dir", str(current)]) == 2


def test_missing_metric_exits_2(tmp_path, in_root, capsys):
    base, current = _metrics(tmp_path, "base"), _metrics(tmp_path, "cur")
    evaluate = json.loads((current / "evaluate-sequential.json").read_text())
    del evaluate["test_accuracy"]
    (current / "evaluate-sequential.json").write_text(json.dumps(evaluate))
    assert gate.main(["compare", "--baseline-dir", str(base), "--current-dir", str(current)]) == 2
    assert "evaluate-sequential.json: missing metric test_accuracy" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    (tmp_path / "a-file").write_text("")
    args = ["compare", "--baseline-dir", str(base), "--current-dir", str(base)]
    assert gate.main(args + ["--report", str(tmp_path / "a-file" / "gate.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a-file/gate.md: cannot create its folder" in err
    assert gate.main(args + ["--report", str(tmp_path / "gate.md")]) == 0
    assert (tmp_path / "gate.md").read_text().startswith("## Gate:")


def test_a_command_line_the_gate_cannot_take_exits_2(in_root, capsys):
    assert gate.main(["compare", "--no-such-option"]) == 2
    assert gate.main([]) == 2
    assert "pipeline.gate: error: unrecognized arguments: --no-such-option" in capsys.readouterr().err
