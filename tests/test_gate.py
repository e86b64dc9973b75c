"""The gate's decision rules, its report and its exit codes (0 pass, 1 fail, 2 usage error)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline import gate, params
from tests import gate_sim
from tests.project import ROOT

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


def test_allow_new_settings_passes_a_profile_change_with_a_notice_but_still_gates_same_settings(tmp_path, in_root, capsys):
    base = _metrics(tmp_path, "base")
    other = _metrics(tmp_path, "other", changes={"train": {"epochs": 10}})
    assert gate.main(["compare", "--baseline-dir", str(base), "--current-dir", str(other), "--allow-new-settings"]) == 0
    out = capsys.readouterr().out
    assert out.count("not gated: new settings") == 2 and "its accuracy is not gated at this commit" in out
    # Only the parallel model's settings changed: the sequential model's accuracy drop still fails.
    mixed = _metrics(tmp_path, "mixed", accuracy=0.1)
    trained = json.loads((mixed / "train-parallel.json").read_text())
    (mixed / "train-parallel.json").write_text(json.dumps({**trained, "epochs": 10}))
    assert gate.main(["compare", "--baseline-dir", str(base), "--current-dir", str(mixed), "--allow-new-settings"]) == 1
    out = capsys.readouterr().out
    assert "| sequential test_accuracy | 0.5000 | 0.1000 | -0.4000 | >= -0.0300 | **FAIL** |" in out
    assert "| parallel test_accuracy | 0.5000 | 0.1000 | -0.4000 | not gated: new settings | advisory |" in out


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


# ---------------------------------------------------------------- A/B mode, real workers

# The last commit before pipeline/speed.py: its workers offer the LSTM cores only.
BEFORE_SPEED_MODULE = "c19b58b"
BENCHMARKS = [f"{model} {what}" for model in ("sequential", "parallel")
              for what in ("train step", "inference batch", "LSTM core step")]


def _real_ab(tmp_path, base: str) -> tuple[subprocess.CompletedProcess, dict]:
    record = tmp_path / f"ab-{base}.json"
    result = subprocess.run([sys.executable, "-m", "pipeline.gate", "ab", "--base", base, "--processes", "2",
                             "--min-pairs", "6", "--max-pairs", "6", "--record", str(record)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr  # pass or fail is timing: not this test's business
    return result, json.loads(record.read_text())


@pytest.mark.slow
def test_a_real_ab_run_times_every_benchmark_side_by_side(tmp_path):
    result, record = _real_ab(tmp_path, "HEAD")
    assert sorted(record["times"]) == sorted(BENCHMARKS)
    for name in BENCHMARKS:
        assert f"| {name} |" in result.stdout
        for side in ("base", "head"):
            per_process = record["times"][name][side]
            assert [len(times) for times in per_process] == [3, 3]  # 6 pairs over 2 worker pairs
            assert all(ms > 0 for times in per_process for ms in times)
    assert record["stopped"] == "undecided at ab_max_pairs (6 pairs)" or record["stopped"].startswith("decided")
    assert "gate ab: 6 pairs of 6 benchmarks" in result.stderr  # progress


@pytest.mark.slow
def test_a_base_that_predates_the_benchmarks_is_gated_on_what_it_has(tmp_path):
    result, record = _real_ab(tmp_path, BEFORE_SPEED_MODULE)
    assert sorted(record["times"]) == ["parallel LSTM core step", "sequential LSTM core step"]
    assert (f"not in base {BEFORE_SPEED_MODULE}, so not gated: sequential train step, sequential inference batch"
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
    assert gate.main(["ab", "--base", "HEAD", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


# ---------------------------------------------------------------- the statistic, on the gate's own noise
# tests/gate_sim.py draws process offsets and step noise from the gate's recorded A/A runs
# (reports/gate-power/runs): heavy tails and slow processes as they happen on this machine.

TRAIN_STEPS = ["sequential train step", "parallel train step"]


@pytest.fixture(scope="module")
def noise():
    return gate_sim.recorded_noise()


@pytest.fixture(scope="module")
def defaults():
    return params.load(ROOT / "params.yaml").gate


def _coverage(noise, processes, pairs, pool=gate.pooled_slowdown, sims=300):
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
        p = gate.pooled_slowdown(groups, confidence, seed)
        ratios = np.concatenate([np.asarray(h) / np.asarray(b) for b, h in groups])
        return dataclasses.replace(p, low=float(ratios.min() - 1), high=float(ratios.max() - 1))
    assert _coverage(noise, defaults.ab_processes, 8, pool=min_max) > 0.94


def test_an_interval_twice_as_wide_is_caught_by_the_coverage_test(noise, defaults):
    def doubled(groups, confidence, seed=0):
        p = gate.pooled_slowdown(groups, confidence, seed)
        return dataclasses.replace(p, low=p.slowdown - 2 * (p.slowdown - p.low), high=p.slowdown + 2 * (p.high - p.slowdown))
    assert _coverage(noise, defaults.ab_processes, 8, pool=doubled) > 0.94


def _gate_rate(noise, cfg, names, slowdown: float, runs: int, seed: int) -> float:
    """How often simulated gate runs fail, with `slowdown` on the train steps."""
    rng = np.random.default_rng(seed)
    return float(np.mean([gate_sim.run_gate(noise, names, {n: slowdown for n in TRAIN_STEPS}, cfg, rng)[0]
                          for _ in range(runs)]))


def test_the_gate_rarely_fails_identical_code(noise, defaults):
    # all six rows, as the real gate has them: any one failing is a false alarm
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
        assert gate.ab_verdict("t", groups, max_slowdown=0.10, confidence=0.95).passed is passes


def test_a_large_slowdown_on_wildly_noisy_pairs_is_no_evidence():
    # estimate +20% beyond the allowance, but the interval reaches below 0: the interval is what passes it
    groups = [([100, 100, 100], [60, 120, 300]), ([100, 100, 100], [70, 125, 250])]
    pooled = gate.pooled_slowdown(groups, 0.95)
    assert pooled.slowdown > 0.10 and pooled.low < 0
    assert gate.ab_verdict("t", groups, max_slowdown=0.10, confidence=0.95).passed


def test_one_slow_worker_pair_does_not_fail_identical_code_and_one_fast_one_does_not_hide_a_regression():
    rng = np.random.default_rng(6)
    noisy = lambda: 100 * np.exp(0.03 * rng.standard_normal(12))  # noqa: E731
    # A/A with one worker pair +12% slower for its whole life: pooled about +4%, passes
    assert gate.ab_verdict("t", [(noisy(), noisy() * 1.12), (noisy(), noisy()), (noisy(), noisy())], 0.10, 0.95).passed
    # +20% everywhere but one worker pair 10% fast, so that pair alone shows about +8%: pooled, the gate
    # fails it; a rule that needs every worker pair past the allowance (this gate's earlier one) did not
    slow = [(noisy(), noisy() * 1.2 * offset) for offset in (0.90, 1.0, 1.0)]
    pooled = gate.pooled_slowdown(slow, 0.95)
    assert min(pooled.per_process) < 0.10 < pooled.slowdown
    assert not gate.ab_verdict("t", slow, 0.10, 0.95).passed


def test_worker_pairs_of_unequal_length_get_the_same_interval_as_equal_ones():
    # the bootstrap has a fast path for equal lengths; the general one must agree with it
    rng = np.random.default_rng(7)
    groups = [(100 * np.exp(0.05 * rng.standard_normal(16)), 110 * np.exp(0.05 * rng.standard_normal(16)))
              for _ in range(3)]
    equal = gate.pooled_slowdown(groups, 0.95)
    unequal = gate.pooled_slowdown([(b[:15], h[:15]) if i == 0 else (b, h) for i, (b, h) in enumerate(groups)], 0.95)
    assert abs(unequal.slowdown - equal.slowdown) < 0.01
    assert abs(unequal.low - equal.low) < 0.015 and abs(unequal.high - equal.high) < 0.015


# A commit with neither pipeline/speed.py nor make_train_step: nothing to benchmark.
BEFORE_ANY_BENCHMARK = "65e3e80"


@pytest.mark.slow
def test_a_base_with_nothing_to_benchmark_is_one_line_or_a_notice(in_root, capsys):
    args = ["ab", "--base", BEFORE_ANY_BENCHMARK, "--processes", "2", "--min-pairs", "6"]
    assert gate.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if not line.startswith("gate ab: ")]) == 1  # progress lines, then one error
    assert f"base ({BEFORE_ANY_BENCHMARK}): benchmark worker exited: this rev has neither pipeline.speed" in err[-1]
    assert gate.main(args + ["--allow-missing-baseline"]) == 0
    assert "no A/B baseline" in capsys.readouterr().out


def test_a_rev_that_does_not_exist_is_one_line_and_leaves_no_worktree(in_root, capsys):
    def worktrees():
        return subprocess.run(["git", "worktree", "list"], capture_output=True, text=True, check=True).stdout
    before = worktrees()
    assert gate.main(["ab", "--base", "HEAD", "--head", "no-such-rev"]) == 2
    assert capsys.readouterr().err.strip().endswith("git rev 'no-such-rev': cannot check out: fatal: invalid reference: no-such-rev")
    assert worktrees() == before  # the base worktree made first is removed again


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
               for side in gate.SIDES}
    samples, stopped = gate.sample(workers, ["a", "b"], cfg, clock=clock)
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
    assert gate.main(["compare", "--baseline-dir", str(base), "--current-dir", str(current)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluate-sequential.json: metric test_accuracy is" in err and "not a number" in err


def test_a_metrics_file_that_is_not_an_object_is_one_line(tmp_path, in_root, capsys):
    base, current = _metrics(tmp_path, "base"), _metrics(tmp_path, "cur")
    (current / "train-parallel.json").write_text("[1, 2]")
    assert gate.main(["compare", "--baseline-dir", str(base), "--current-dir", str(current)]) == 2
    assert "train-parallel.json is not a metrics object (a JSON list)" in capsys.readouterr().err


# Stand-in workers for the gate's error paths: (name, script). Each reads the gate's protocol like
# pipeline/ab_worker.py and misbehaves in one way.
WORKERS = {
    "chatter": 'import sys; print("Loading weights...", flush=True); sys.stdin.readline()',
    "silent": "import time; time.sleep(60)",
    "dies": 'import json, sys\nprint(json.dumps({"benchmarks": ["x"], "backend": "tensorflow", "warmup_s": 0}), flush=True)\n'
            'sys.stdin.readline(); sys.exit(1)',
    "backend": 'import json, os, sys\nside = os.path.basename(os.getcwd())\n'
               'print(json.dumps({"benchmarks": ["x"], "backend": "jax" if side == "base" else "tensorflow", '
               '"warmup_s": 0}), flush=True)\nsys.stdin.readline()',
}


@pytest.mark.parametrize("kind,message", [
    ("chatter", "benchmark worker answered 'Loading weights...'"),
    ("silent", "benchmark worker gave no answer in 2 s"),
    ("dies", "benchmark worker exited"),
    ("backend", "base runs on jax, head on tensorflow: an A/B comparison needs one backend"),
])
def test_a_worker_that_misbehaves_is_one_line_and_exit_2(tmp_path, in_root, monkeypatch, capsys, kind, message):
    script = tmp_path / "worker.py"
    script.write_text(WORKERS[kind] + "\n")
    monkeypatch.setattr(gate, "WORKER", script)
    monkeypatch.setattr(gate, "START_TIMEOUT_S", 2)
    # both sides in worktrees named base and head (the backend worker tells them apart by its cwd)
    assert gate.main(["ab", "--base", "HEAD", "--head", "HEAD", "--processes", "2", "--min-pairs", "6"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("gate ab: ")]
    assert len(err) == 1 and message in err[0], err
