"""The convergence gate (pipeline/gate/convergence.py): its reference, its limit in whole images, its rows, and
`gate compare` failing a model that needs more images to its target than the reference allows."""

import json
import re

import pytest
import yaml

from pipeline.gate import GateUsageError, command as gate_command, convergence
from pipeline.gate.report import Row
from pipeline.lib import heldout, metrics, params, registry

TARGET = 0.25
IMAGES = 2000  # held-out images
TRAIN = 10_000


def _curve(first_at: int, points: int = 12, per_point: int = 2500) -> list[dict]:
    """A curve that first reaches TARGET (500 of 2,000 correct) after `first_at` images (None: never)."""
    rows = []
    for i in range(1, points + 1):
        seen = i * per_point
        correct = 500 if first_at is not None and seen >= first_at else 499
        rows.append({"images_seen": seen, "epoch": seen / TRAIN, "train_seconds": i * 2.0,
                     "heldout_correct": correct, "heldout_accuracy": correct / IMAGES, "heldout_loss": 2.0})
    return rows


def _record(model: str, seed: int, first_at, **changes) -> dict:
    """A train record as the train stage writes it: the contract's settings, the curve, and time to TARGET."""
    record = {"model": model, "epochs": 3, "epochs_completed": 3, "train_images": TRAIN, "batch_size": 100,
              "learning_rate": 0.001, "loss": "crossentropy", "seed": seed, "normalize": "raw", "distribution": "none",
              "replicas": 1, "processes": 1, "time_limit_s": None, "backend": "tensorflow",
              "heldout_images": IMAGES, "evals_per_epoch": 4, "heldout_curve": _curve(first_at)}
    record |= heldout.to_target(record["heldout_curve"], TARGET, IMAGES, TRAIN)
    return record | changes


def _runs(tmp_path, firsts: dict[int, int], models=("sequential", "parallel"), **changes) -> list:
    """Run directories, one per seed, each with the train records of `models`."""
    dirs = []
    for seed, first_at in firsts.items():
        run = tmp_path / f"curve-seed{seed}"
        (run / "metrics").mkdir(parents=True)
        (run / "run.yaml").write_text(yaml.safe_dump({"name": run.name}))
        for model in models:
            (run / "metrics" / f"train-{model}.json").write_text(json.dumps(_record(model, seed, first_at, **changes)))
        dirs.append(run)
    return dirs


FIVE = {0: 7500, 1: 10000, 2: 10000, 3: 12500, 4: 15000}


@pytest.mark.parametrize("slowest, slowdown, limit", [
    (15000, 0.25, 18750), (15000, 0.0, 15000), (37500, 0.25, 46875),
    (100, 0.29, 129),   # 0.29 * 100 is 28.999999999999996 in floats: floor would allow 128
    (10000, 1.0, 20000),
])
def test_the_limit_is_the_slowest_seed_plus_a_share_of_it_in_whole_images(slowest, slowdown, limit):
    assert convergence.limit_images(slowest, slowdown) == limit


def test_the_reference_reads_each_runs_curve_at_the_target(tmp_path):
    built = convergence.build(_runs(tmp_path, FIVE), {"sequential": TARGET, "parallel": TARGET})
    for model in ("sequential", "parallel"):
        entry = built["models"][model]
        assert [r["images_to_target"] for r in entry["runs"]] == [7500, 10000, 10000, 12500, 15000]
        assert [r["seed"] for r in entry["runs"]] == [0, 1, 2, 3, 4]
        assert entry["settings"]["target_accuracy"] == TARGET and "seed" not in entry["settings"]
    # a lower target is read from the same curves: every point reaches 499 of 2000
    lower = convergence.build(_runs(tmp_path / "again", FIVE), {"sequential": 0.2495, "parallel": TARGET})
    assert {r["images_to_target"] for r in lower["models"]["sequential"]["runs"]} == {2500}


@pytest.mark.parametrize("firsts, message", [
    ({**FIVE, 4: None}, "sequential: target 0.25 not reached by curve-seed4"),
    ({k: FIVE[k] for k in range(4)}, "sequential: 4 seeds; a reference needs at least 5"),
])
def test_a_reference_of_unreached_targets_or_too_few_seeds_is_refused(tmp_path, firsts, message):
    with pytest.raises(GateUsageError, match=message):
        convergence.build(_runs(tmp_path, firsts), {"sequential": TARGET})
    assert convergence.build(_runs(tmp_path / "five", FIVE), {"sequential": TARGET})["models"]["sequential"]


@pytest.mark.parametrize("changes, message", [
    ({"heldout_images": None}, r"heldout_images is None, not a whole number"),
    ({"seed": "0"}, r"seed is '0', not a whole number"),
    ({"train_images": 0}, r"train_images is 0, not a whole number"),
    ({"heldout_curve": [{"images_seen": 2500}]}, r"heldout_curve\[0\] needs whole images_seen and heldout_correct"),
    ({"heldout_curve": [{"images_seen": 2500.0, "heldout_correct": 5}]}, r"heldout_curve\[0\] needs whole"),
])
def test_a_run_record_that_cannot_be_read_is_one_line_naming_its_file(tmp_path, changes, message):
    dirs = _runs(tmp_path, FIVE, models=("sequential",))
    broken = dirs[2] / "metrics" / "train-sequential.json"
    broken.write_text(json.dumps(json.loads(broken.read_text()) | changes))
    with pytest.raises(GateUsageError, match=rf"curve-seed2/metrics/train-sequential.json: {message}"):
        convergence.build(dirs, {"sequential": TARGET})


def test_no_train_record_of_any_model_is_refused_and_a_model_without_runs_is_left_out(tmp_path):
    dirs = _runs(tmp_path, FIVE, models=("sequential",))
    with pytest.raises(GateUsageError, match="no train record of parallel in 5 run directories"):
        convergence.build(dirs, {"parallel": TARGET})
    assert set(convergence.build(dirs, {"sequential": TARGET, "parallel": TARGET})["models"]) == {"sequential"}


def test_a_reference_of_two_profiles_or_one_seed_twice_is_refused(tmp_path):
    dirs = _runs(tmp_path / "a", FIVE) + _runs(tmp_path / "b", {5: 10000}, learning_rate=0.01)
    with pytest.raises(GateUsageError, match=r"curve-seed5: sequential settings differ from curve-seed0's "
                                             r"\(learning_rate\)"):
        convergence.build(dirs, {"sequential": TARGET})
    twice = _runs(tmp_path / "c", FIVE) + _runs(tmp_path / "d", {4: 10000})
    with pytest.raises(GateUsageError, match=r"two runs of one seed"):
        convergence.build(twice, {"sequential": TARGET})


def test_a_run_without_a_curve_cannot_join_a_reference(tmp_path):
    (run,) = _runs(tmp_path, {0: 7500}, models=("sequential",), heldout_curve=None)
    with pytest.raises(GateUsageError, match="train-sequential.json: no heldout_curve"):
        convergence.build([run], {"sequential": TARGET})


@pytest.fixture
def reference(tmp_path):
    return convergence.build(_runs(tmp_path, FIVE), {"sequential": TARGET, "parallel": TARGET})


def test_at_the_limit_passes_and_one_point_past_it_fails(reference):
    entry = reference["models"]["sequential"]
    limit = convergence.limit_images(15000, 0.25)  # 18750
    at = _record("sequential", 9, 17500)
    row = convergence.verdict("sequential", entry, at, 0.25)
    assert row.passed and not row.advisory and row.allowed == f"<= {limit}"
    assert row.current == "17500 (1.75 epochs)" and row.change == "+17% vs slowest"
    assert row.baseline == "target 0.25: median 10000, slowest 15000 of 5 seeds"
    assert not convergence.verdict("sequential", entry, _record("sequential", 9, 20000), 0.25).passed
    # in counts: a limit of exactly the images needed passes, one image less fails
    assert convergence.verdict("sequential", entry, _record("sequential", 9, 15000), 0.0).passed
    tighter = {**entry, "runs": [{**r, "images_to_target": r["images_to_target"] - 1} for r in entry["runs"]]}
    assert not convergence.verdict("sequential", tighter, _record("sequential", 9, 15000), 0.0).passed


def test_a_run_that_never_reaches_the_target_fails_and_says_how_far_it_got(reference):
    row = convergence.verdict("parallel", reference["models"]["parallel"], _record("parallel", 9, None), 0.25)
    assert not row.passed and row.current == "not reached (best 0.2495)"


@pytest.mark.parametrize("change", [{"learning_rate": 0.01}, {"target_accuracy": 0.3}, {"heldout_images": 10000},
                                    {"evals_per_epoch": 1}, {"backend": "jax"}, {"epochs": 10}])
def test_a_run_of_other_settings_is_not_gated_and_the_row_says_which(reference, change):
    record = _record("sequential", 9, 40000) | change
    row = convergence.verdict("sequential", reference["models"]["sequential"], record, 0.25)
    assert row.passed and row.advisory and row.allowed == f"not gated: reference from other settings ({next(iter(change))})"


def test_the_seed_is_no_setting_of_the_reference(reference):
    assert convergence.verdict("sequential", reference["models"]["sequential"], _record("sequential", 123, 7500),
                               0.25).advisory is False


def test_no_reference_or_no_curve_is_an_advisory_row(reference):
    row = convergence.verdict("extra", None, _record("extra", 0, 7500), 0.25)
    assert row.advisory and row.passed and row.allowed == "not gated: no reference for this model"
    old = {k: v for k, v in _record("sequential", 0, 7500).items() if k not in ("heldout_curve", "target_reached")}
    row = convergence.verdict("sequential", reference["models"]["sequential"], old, 0.25)
    assert row.advisory and row.current == "no held-out curve"


def test_the_reference_keys_are_the_train_contracts_settings_and_the_curves():
    assert set(convergence._comparable(_record("sequential", 0, 7500))) == {
        "model", "epochs", "epochs_completed", "train_images", "batch_size", "learning_rate", "loss", "normalize",
        "distribution", "replicas", "processes", "time_limit_s", "backend",
        "target_accuracy", "heldout_images", "evals_per_epoch"}
    assert "seed" in metrics.settings("train")  # a setting of the record, but not of the reference


# --- the command: gate reference, and gate compare with its convergence section -------------------------------

def _metrics_dir(directory, firsts: dict[str, int | None]):
    """A metrics folder whose train records reach the target after `firsts[model]` images."""
    from tests.test_gate import _metrics
    directory.mkdir()
    out = _metrics(directory, "metrics")
    for model, first_at in firsts.items():
        path = out / f"train-{model}.json"
        (path).write_text(json.dumps(json.loads(path.read_text()) | _record(model, 0, first_at, epochs=3)))
    return out


@pytest.fixture
def project(tmp_path, root, monkeypatch):
    """A scratch working directory: params.yaml with the targets at TARGET, five reference runs of both models."""
    work = tmp_path / "work"
    work.mkdir()
    mapping = params.load_mapping(root / "params.yaml")
    for model in registry.names():
        mapping["models"][model]["target_accuracy"] = TARGET
    (work / "params.yaml").write_text(yaml.safe_dump(mapping))
    _runs(work / "reports" / "runs", FIVE, models=registry.names())
    monkeypatch.chdir(work)
    return work


def test_gate_reference_writes_the_reference_gate_compare_reads(project, capsys):
    assert gate_command.main(["reference", "--runs", "reports/runs/curve-seed*"]) == 0
    assert "reports/gate-convergence/reference.json: sequential 5 runs; parallel 5 runs" in capsys.readouterr().out
    written = json.loads((project / "reports/gate-convergence/reference.json").read_text())
    assert written == convergence.build(sorted((project / "reports/runs").glob("curve-seed*")),
                                        {m: TARGET for m in registry.names()})
    base = _metrics_dir(project / "base", {m: 10000 for m in registry.names()})
    same = _metrics_dir(project / "same", {m: 17500 for m in registry.names()})
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(same)]) == 0
    out = capsys.readouterr().out
    assert "### Convergence (against reports/gate-convergence/reference.json)" in out
    assert "| sequential images_to_target | target 0.25: median 10000, slowest 15000 of 5 seeds | 17500 (1.75 epochs) " \
           "| +17% vs slowest | <= 18750 | pass |" in out
    for model in registry.names():  # the timing section: each model's seconds to target, advisory
        assert f"| train-{model} seconds to 0.25 | 8.0 s | 14.0 s | +75.0% | not gated: images to target are " \
               "| advisory |" in out
    slower = _metrics_dir(project / "slower", {"sequential": 17500, "parallel": 20000})
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(slower)]) == 1
    captured = capsys.readouterr()
    assert "| parallel images_to_target | target 0.25: median 10000, slowest 15000 of 5 seeds | 20000 (2.0 epochs) " \
           "| +33% vs slowest | <= 18750 | **FAIL** |" in captured.out
    assert captured.err == "pipeline.gate: FAIL: parallel images_to_target\n"


def test_gate_compare_without_a_reference_gates_no_convergence_and_says_so(project, capsys):
    base = _metrics_dir(project / "base", {m: 10000 for m in registry.names()})
    slow = _metrics_dir(project / "slow", {m: None for m in registry.names()})  # never reached
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(slow)]) == 0
    out = capsys.readouterr().out
    assert "| sequential images_to_target | no reference | not reached (best 0.2495) | - | not gated: no reference " \
           "for this model | advisory |" in out
    assert "- no convergence reference at reports/gate-convergence/reference.json: convergence is not gated " \
           "(python -m pipeline.gate reference builds one from run records)" in out
    assert "| train-parallel seconds to 0.25 | 8.0 s | not reached | - | not gated: images to target are " \
           "| advisory |" in out
    with pytest.raises(GateUsageError, match="reference.json: no convergence reference; build it with"):
        convergence.load(project / "reports/gate-convergence/reference.json")


@pytest.mark.parametrize("entry, message", [
    ("[]", r"not a convergence reference \(no models map\)"),
    ('{"models": {"sequential": {"runs": [{"images_to_target": 5}]}}}', r"models.sequential.settings is missing"),
    ('{"models": {"sequential": {"settings": {}}}}', r"models.sequential.runs is missing or empty"),
    ('{"models": {"sequential": {"settings": {}, "runs": []}}}', r"models.sequential.runs is missing or empty"),
    ('{"models": {"sequential": {"settings": {}, "runs": [{"images_to_target": null}]}}}',
     r"models.sequential.runs\[0\].images_to_target is None, not a count of images >= 1"),
    ('{"models": {"sequential": {"settings": {}, "runs": [{"images_to_target": 5}, 7]}}}',
     r"models.sequential.runs\[1\].images_to_target is None"),
    ("{not json", r"unreadable convergence reference \(JSONDecodeError\)"),
])
def test_a_malformed_reference_is_one_line_and_exit_2(project, capsys, entry, message):
    reference = project / "reports/gate-convergence/reference.json"
    reference.parent.mkdir(parents=True)
    reference.write_text(entry)
    base = _metrics_dir(project / "base", {m: 10000 for m in registry.names()})
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(base)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_a_current_record_with_a_curve_but_no_time_to_target_is_one_line(project, capsys):
    assert gate_command.main(["reference", "--runs", str(project / "reports/runs/curve-seed*")]) == 0  # absolute
    base = _metrics_dir(project / "base", {m: 10000 for m in registry.names()})
    path = base / "train-sequential.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "epochs_to_target"}))
    assert gate_command.main(["compare", "--baseline-dir", str(base), "--current-dir", str(base)]) == 2
    assert capsys.readouterr().err.strip().endswith("train-sequential.json: has a held-out curve but no epochs_to_target")


def test_gate_reference_refuses_a_pattern_that_matches_no_run(project, capsys):
    assert gate_command.main(["reference", "--runs", "reports/runs/nothing-*"]) == 2
    assert "no run directories match reports/runs/nothing-*" in capsys.readouterr().err


def test_the_committed_reference_is_what_its_runs_give_at_todays_targets(root, monkeypatch):
    monkeypatch.chdir(root)
    p = params.load()
    committed = convergence.load(root / p.gate.convergence_reference)
    listed = sorted({r["run"] for entry in committed["models"].values() for r in entry["runs"]})
    assert len(listed) >= convergence.MIN_SEEDS
    assert committed == convergence.build([root / "reports/runs" / run for run in listed], convergence.targets(p))
    # the tutorial's two models are gated; a model added since has no runs yet (docs/add-a-model.md)
    assert {"sequential", "parallel"} <= set(committed["models"]) <= set(registry.names())


def test_the_seconds_to_target_row_is_advisory():
    from pipeline.gate import compare
    base, cur = _record("sequential", 0, 7500), _record("sequential", 0, 15000)
    row = compare.seconds_to_target_advisory("sequential", base, cur)
    assert row.advisory and row.passed and row.change == "+100.0%"
    assert (row.baseline, row.current) == ("6.0 s", "12.0 s")
    assert compare.seconds_to_target_advisory("sequential", base, cur | {"target_accuracy": 0.3}) is None
    assert compare.seconds_to_target_advisory("sequential", base, _record("sequential", 0, None)).current == "not reached"


# --- every branch's row and message, in full (each checked by mutation testing, reports/mutation/) ----------

def test_a_run_directory_without_a_models_record_is_skipped_and_the_next_ones_are_read(tmp_path):
    dirs = _runs(tmp_path, {**FIVE, 5: 10000})
    (dirs[0] / "metrics" / "train-parallel.json").unlink()
    entry = convergence.build(dirs, {"parallel": TARGET})["models"]["parallel"]
    assert [r["seed"] for r in entry["runs"]] == [1, 2, 3, 4, 5]


def test_a_model_without_runs_is_left_out_whichever_comes_first(tmp_path):
    dirs = _runs(tmp_path, FIVE, models=("sequential",))
    assert set(convergence.build(dirs, {"parallel": TARGET, "sequential": TARGET})["models"]) == {"sequential"}


def test_the_smallest_valid_counts_are_accepted(tmp_path):
    """A seed of 0, one training and one held-out image, a point at 0 images seen with 0 correct."""
    (run,) = _runs(tmp_path, {0: 7500}, models=("sequential",))
    path = run / "metrics" / "train-sequential.json"
    curve = [{"images_seen": 0, "heldout_correct": 0}, {"images_seen": 1, "heldout_correct": 1}]
    path.write_text(json.dumps(json.loads(path.read_text()) | {"train_images": 1, "heldout_images": 1,
                                                                 "heldout_curve": curve}))
    ((name, record),) = convergence._run_records([run], "sequential")
    assert name == run.name and record["heldout_curve"] == curve


def test_an_unreadable_record_or_run_yaml_is_one_line_naming_the_file(tmp_path):
    dirs = _runs(tmp_path, FIVE, models=("sequential",))
    (dirs[1] / "metrics" / "train-sequential.json").write_text("{not json")
    with pytest.raises(GateUsageError) as raised:
        convergence.build(dirs, {"sequential": TARGET})
    assert str(raised.value) == f"{dirs[1]}/metrics/train-sequential.json: unreadable (JSONDecodeError)"
    (dirs[2] / "run.yaml").write_text("a: [unclosed")
    with pytest.raises(GateUsageError) as raised:
        convergence.run_dirs(str(tmp_path / "curve-seed*"))
    assert str(raised.value) == f"{dirs[2]}/run.yaml: not YAML"


def test_the_refusals_name_every_run_and_key_in_full(tmp_path):
    dirs = _runs(tmp_path / "a", FIVE) + _runs(tmp_path / "b", {5: 10000}, learning_rate=0.01, batch_size=50)
    with pytest.raises(GateUsageError) as raised:
        convergence.build(dirs, {"sequential": TARGET})
    assert str(raised.value) == ("curve-seed5: sequential settings differ from curve-seed0's (batch_size, "
                                 "learning_rate); a reference holds runs of one profile")
    with pytest.raises(GateUsageError) as raised:
        convergence.build(_runs(tmp_path / "c", {**FIVE, 3: None, 4: None}), {"sequential": TARGET})
    assert str(raised.value) == ("sequential: target 0.25 not reached by curve-seed3, curve-seed4; "
                                 "a reference target must be reached by every seed")
    with pytest.raises(GateUsageError) as raised:
        convergence.build(dirs, {"extra": TARGET, "other": TARGET})
    assert str(raised.value) == "no train record of extra, other in 6 run directories"


def test_an_implied_setting_left_out_of_a_record_compares_as_its_implied_value(reference):
    record = {k: v for k, v in _record("sequential", 9, 7500).items() if k != "loss"}  # older records: no loss
    row = convergence.verdict("sequential", reference["models"]["sequential"], record, 0.25)
    assert row.passed and not row.advisory


def test_an_empty_curve_is_no_curve(reference):
    record = _record("sequential", 9, 7500) | {"heldout_curve": []}
    row = convergence.verdict("sequential", reference["models"]["sequential"], record, 0.25)
    assert row == Row("sequential images_to_target", "-", "no held-out curve", "-",
                      "not gated: the run recorded no curve", True, advisory=True)


@pytest.mark.parametrize("where, named", [("", "sequential"), ("metrics/train-sequential.json",
                                                                 "metrics/train-sequential.json")])
def test_a_reached_target_without_a_count_of_images_is_one_line(reference, where, named):
    record = _record("sequential", 9, 7500) | {"images_to_target": 0}
    with pytest.raises(GateUsageError) as raised:
        convergence.verdict("sequential", reference["models"]["sequential"], record, 0.25, *([where] if where else []))
    assert str(raised.value) == f"{named}: images_to_target is 0 with the target reached, not a count of images >= 1"


def test_each_rows_fields_in_full(reference):
    entry = reference["models"]["sequential"]
    base = "target 0.25: median 10000, slowest 15000 of 5 seeds"
    other = _record("sequential", 9, 7500) | {"learning_rate": 0.01, "batch_size": 50}
    assert convergence.verdict("sequential", entry, other, 0.25) == Row(
        "sequential images_to_target", base, "7500 (0.75 epochs)", "-",
        "not gated: reference from other settings (batch_size, learning_rate)", True, advisory=True)
    assert convergence.verdict("sequential", entry, _record("sequential", 9, None), 0.25) == Row(
        "sequential images_to_target", base, "not reached (best 0.2495)", "-", "<= 18750", False)
    assert convergence.verdict("sequential", entry, _record("sequential", 9, 20000), 0.25) == Row(
        "sequential images_to_target", base, "20000 (2.0 epochs)", "+33% vs slowest", "<= 18750", False)


def test_a_count_of_one_image_is_a_valid_reference_entry(project):
    reference = project / "reports/gate-convergence/reference.json"
    reference.parent.mkdir(parents=True)
    reference.write_text('{"models": {"sequential": {"settings": {}, "runs": [{"images_to_target": 1}]}}}')
    assert convergence.load(reference)["models"]["sequential"]["runs"] == [{"images_to_target": 1}]


def test_the_committed_reference_is_byte_for_byte_what_gate_reference_writes(root, tmp_path):
    committed = root / "reports/gate-convergence/reference.json"
    convergence.write(tmp_path / "reference.json", json.loads(committed.read_text()))
    assert (tmp_path / "reference.json").read_text() == committed.read_text()


def test_gate_reference_reads_the_default_runs_and_names_a_model_without_any(project, capsys):
    for run in sorted((project / "reports/runs").glob("curve-seed*")):  # the default pattern's names
        run.rename(run.with_name(run.name.replace("curve-seed", "curve-10k-seed")))
    assert gate_command.main(["reference"]) == 0
    names = registry.names()
    assert capsys.readouterr().out.splitlines() == [
        "pipeline.gate: reports/gate-convergence/reference.json: " + "; ".join(f"{m} 5 runs" for m in names)]
    for run in (project / "reports/runs").glob("curve-10k-seed*"):  # the last model's records gone
        (run / "metrics" / f"train-{names[-1]}.json").unlink()
    assert gate_command.main(["reference"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "pipeline.gate: reports/gate-convergence/reference.json: " + "; ".join(f"{m} 5 runs" for m in names[:-1])
        + f"; no runs of {names[-1]} (not gated until they have some)"]
