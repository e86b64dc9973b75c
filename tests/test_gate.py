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


def test_throughput_drop_inside_the_noise_passes():
    # 15% slower, but each median has an IQR of 30 ms over 10 steps: the noise is ~37%.
    row = gate.timing_verdict("t", gate.Timing(100, 30, 10), gate.Timing(115, 30, 10), max_slowdown=0.10, z=3)
    assert row.passed and "+15.0%" in row.change


def test_25_percent_slowdown_with_tight_spread_fails():
    row = gate.timing_verdict("t", gate.Timing(100, **TIGHT), gate.Timing(125, **TIGHT), max_slowdown=0.10, z=3)
    assert not row.passed


def test_slowdown_beyond_noise_but_within_threshold_passes():
    row = gate.timing_verdict("t", gate.Timing(100, **TIGHT), gate.Timing(105, **TIGHT), max_slowdown=0.10, z=3)
    assert row.passed


def _ab(*groups):
    return gate.ab_verdict("t", list(groups), max_slowdown=0.10, confidence=0.95)


def test_ab_verdict_on_pairs():
    rng = np.random.default_rng(0)
    base = 100 * (1 + 0.05 * rng.standard_normal(12))
    same = 100 * (1 + 0.05 * rng.standard_normal(12))
    assert _ab((base, same), (same, base)).passed
    assert not _ab((base, base * 1.25), (same, same * 1.25)).passed
    assert not _ab((base, base * 1.15), (same, same * 1.15)).passed
    # A large slowdown measured on three wildly noisy pairs is not evidence.
    assert _ab(([100, 100, 100], [60, 130, 300])).passed


def test_ab_slowdown_in_one_process_pair_only_is_not_a_regression():
    base = np.full(12, 100.0) + np.arange(12) % 3
    assert _ab((base, base * 1.2), (base, base)).passed
    assert not _ab((base, base * 1.2), (base, base * 1.2)).passed


def test_report_is_a_markdown_table_with_separate_sections():
    rows = {"Accuracy": [gate.accuracy_verdict("sequential test_accuracy", 0.5, 0.4, 0.02)],
            "Timing": [gate.timing_verdict("t", gate.Timing(100, **TIGHT), gate.Timing(101, **TIGHT), 0.1, 3)]}
    text = gate.markdown("Gate", rows, ["a note"])
    assert "| metric | baseline | current | change | allowed | verdict |" in text
    assert "### Accuracy" in text and "### Timing" in text and "**FAIL**" in text and "- a note" in text


def _metrics(tmp_path, name, accuracy=0.5, step_ms=80.0, epochs=2):
    out = tmp_path / name
    out.mkdir()
    for model in ("sequential", "parallel"):
        (out / f"train-{model}.json").write_text(json.dumps({
            "epochs": epochs, "train_images": 5000, "batch_size": 100, "learning_rate": 0.001, "seed": 0,
            "normalize": "raw", "step_time_ms_median": step_ms, "step_time_ms_iqr": 1.0, "timed_steps": 99,
            "device_name": "cpu"}))
        (out / f"evaluate-{model}.json").write_text(json.dumps({"test_accuracy": accuracy}))
    core = {"cpu_generic": {"step_time_ms_median": step_ms, "step_time_ms_iqr": 1.0, "rounds": 20}}
    (out / "lstm-step.json").write_text(json.dumps({"sequential": core, "parallel": core}))
    return out


@pytest.fixture
def in_root(root, monkeypatch):
    monkeypatch.chdir(root)


def test_exit_codes(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    args = ["compare", "--baseline-dir", str(base), "--current-dir"]
    assert gate.main(args + [str(_metrics(tmp_path, "same"))]) == 0
    assert gate.main(args + [str(_metrics(tmp_path, "worse", accuracy=0.4))]) == 1
    assert gate.main(args + [str(_metrics(tmp_path, "slower", step_ms=110.0))]) == 1
    capsys.readouterr()
    assert gate.main(args + [str(_metrics(tmp_path, "other", epochs=3))]) == 2
    assert "different settings (epochs 2 vs 3)" in capsys.readouterr().err


def test_missing_baseline_exits_2(tmp_path, in_root, capsys):
    current = _metrics(tmp_path, "cur")
    assert gate.main(["compare", "--baseline-dir", str(tmp_path / "none"), "--current-dir", str(current)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read train-sequential.json" in err
    assert gate.main(["compare", "--baseline", "no-such-rev", "--current-dir", str(current)]) == 2


def test_missing_metric_exits_2(tmp_path, in_root, capsys):
    base, current = _metrics(tmp_path, "base"), _metrics(tmp_path, "cur")
    (current / "evaluate-sequential.json").write_text(json.dumps({}))
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
