"""The metrics contract (pipeline/lib/metrics.py): one schema per metrics file kind, the settings the gate,
history and the report compare, and writers that refuse a record that breaks its schema."""

from __future__ import annotations

import json

import pytest

from pipeline.lib import metrics, params, registry
from pipeline.lib.params import PipelineError
from tests.project import ROOT

COMMITTED = {"train": [f"train-{m}.json" for m in registry.names()],
             "evaluate": [f"evaluate-{m}.json" for m in registry.names()],
             "lstm-step": ["lstm-step.json"], "collapse": ["collapse.json"],
             "gpu-protocol": []}  # metrics/ holds it only after a complete GPU run


@pytest.mark.parametrize("kind", metrics.KINDS)
def test_every_field_has_one_role_and_the_committed_files_keep_the_contract(kind):
    properties = metrics.schema(kind)["properties"]
    assert {v["x-role"] for v in properties.values()} <= set(metrics.ROLES)
    assert metrics.settings(kind) and metrics.keys(kind, "measure") and metrics.environment(kind)
    for name in COMMITTED[kind]:
        metrics.validate(kind, json.loads((ROOT / "metrics" / name).read_text()), name)


def test_the_settings_are_the_ones_the_gate_has_always_compared():
    assert metrics.settings("train") == ("model", "epochs", "epochs_completed", "train_images", "batch_size",
                                         "learning_rate", "loss", "seed", "normalize", "distribution", "replicas",
                                         "processes", "time_limit_s", "backend")
    assert metrics.settings("evaluate") == ("model", "test_images", "backend")
    assert metrics.settings("lstm-step") == ("batch_size", "units", "warmup_steps", "rounds", "backend", "float32",
                                             "cpu_sgemm_n", "gpu_sgemm_n")
    assert set(metrics.environment("train")) == {"device_name", "threads", "backend_version", "keras_version"}


@pytest.mark.parametrize("name, kind", [("train-sequential.json", "train"), ("metrics/evaluate-x-y.json", "evaluate"),
                                        ("lstm-step.json", "lstm-step"), ("lstm-step", "lstm-step"),
                                        ("collapse.json", "collapse"), ("train-parallel", "train"),
                                        ("gpu-protocol.json", "gpu-protocol")])
def test_a_file_names_its_kind(name, kind):
    assert metrics.kind_of(name) == kind


def test_same_settings_names_each_difference_in_the_schemas_order():
    base = json.loads((ROOT / "metrics" / "train-sequential.json").read_text())
    assert metrics.same_settings("train", base, dict(base)) == []
    cur = {**base, "seed": 3, "epochs": 11, "threads": 64, "train_seconds": 1.0}  # environment and measures aside
    assert metrics.same_settings("train", base, cur) == [f"epochs {base['epochs']} vs 11", f"seed {base['seed']} vs 3"]


def test_a_setting_a_record_lacks_is_what_its_writer_implied_or_not_recorded():
    base = json.loads((ROOT / "metrics" / "train-sequential.json").read_text())
    older = {k: v for k, v in base.items() if k not in ("epochs_completed", "processes", "distribution", "loss")}
    assert metrics.same_settings("train", base, older) == []  # all 10 epochs, one process, no distribution
    assert metrics.value("train", {"epochs": 7}, "epochs_completed") == 7
    stopped = {**base, "epochs_completed": base["epochs"] - 1}
    assert metrics.same_settings("train", stopped, older) == [
        f"epochs_completed {base['epochs'] - 1} vs {base['epochs']}"]
    no_seed = {k: v for k, v in base.items() if k != "seed"}
    assert metrics.same_settings("train", base, no_seed) == [f"seed {base['seed']} vs (not recorded)"]
    assert metrics.value("evaluate", {}, "backend") == metrics.NOT_RECORDED


def test_an_unknown_kind_is_refused():
    with pytest.raises(PipelineError, match="unknown metrics kind 'bench'; the kinds: train, evaluate"):
        metrics.schema("bench")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("seed"), "breaks the train metrics schema at (top level): 'seed' is a required property"),
    (lambda d: d.update(seed="0"), "breaks the train metrics schema at seed: '0' is not of type 'integer'"),
    (lambda d: d.update(loss="mse"), "breaks the train metrics schema at loss: 'mse' is not one of"),
    (lambda d: d.update(extra=1), "breaks the train metrics schema at (top level): Additional properties"),
])
def test_a_writer_refuses_a_record_that_breaks_its_schema_and_writes_nothing(tmp_path, change, message):
    record = json.loads((ROOT / "metrics" / "train-sequential.json").read_text())
    change(record)
    out = tmp_path / "train-sequential.json"
    out.write_text("previous")
    with pytest.raises(PipelineError) as refused:
        metrics.write("train", out, record)
    assert str(refused.value).startswith(f"{out}: {message}")
    assert "\n" not in str(refused.value)
    assert out.read_text() == "previous"


def test_a_record_that_keeps_the_contract_is_written(tmp_path):
    record = json.loads((ROOT / "metrics" / "evaluate-parallel.json").read_text())
    metrics.write("evaluate", tmp_path / "e.json", record)
    assert json.loads((tmp_path / "e.json").read_text()) == record


def test_lstm_step_holds_exactly_the_registrys_lstm_cores():
    record = json.loads((ROOT / "metrics" / "lstm-step.json").read_text())
    core = record[next(iter(registry.lstm_cores()))]
    with pytest.raises(PipelineError, match=r"lstm-step holds cores \[.*'gru'.*\], the registry's LSTM cores are"):
        metrics.validate("lstm-step", {**record, "gru": core}, "lstm-step.json")
    missing = {k: v for k, v in record.items() if k != next(iter(registry.lstm_cores()))}
    with pytest.raises(PipelineError, match="lstm-step holds cores"):
        metrics.validate("lstm-step", missing, "lstm-step.json")
    with pytest.raises(PipelineError, match="breaks the lstm-step metrics schema at gru"):
        metrics.validate("lstm-step", {**record, "gru": {"nothing": 1}}, "lstm-step.json")


def test_the_collapse_studys_settings():
    assert metrics.settings("collapse") == ("model", "normalize", "train_images", "test_images", "epochs", "batch_size",
                                            "learning_rate", "loss", "seeds", "collapsed_below", "backend")


def test_what_other_configurations_write_keeps_the_contract():
    """Records no committed file shows: a one-step run's throughput, a new model's core, a GPU's timings,
    the JAX backend, data-parallel replicas, a time limit, a model without a tutorial record."""
    trained = json.loads((ROOT / "metrics" / "train-sequential.json").read_text())
    metrics.validate("train", {**trained, "train_images_per_s": None, "time_limit_s": 60.0, "backend": "jax",
                               "distribution": "data_parallel", "replicas": 2, "replica_devices": ["gpu:0", "gpu:1"],
                               "stopped_at_time_limit": True}, "train")
    scored = json.loads((ROOT / "metrics" / "evaluate-sequential.json").read_text())
    metrics.validate("evaluate", {**scored, "reported_test_accuracy": None, "reported_epochs": None}, "evaluate")
    report = json.loads((ROOT / "metrics" / "lstm-step.json").read_text())
    name = next(iter(registry.lstm_cores()))
    timing = {**report[name]["cpu_generic"], "kernel": "cudnn", "fraction_of_sgemm": 0.0}
    gpu = {**report[name], "steps": 64, "features": 7, "gpu_cudnn": timing, "gpu_generic": timing,
           "gpu_cudnn_tf32": timing, "gpu_speedup_vs_cpu": 3.1, "parity_output_max_abs_diff": 1e-6,
           "parity_gradient_max_abs_diff": 2e-6, "parity_ok": True}
    metrics.validate("lstm-step", {**report, name: gpu, "gpu_device_name": "NVIDIA H100", "gpu_sgemm_gflops": 5e4,
                                   "gpu_sgemm_tf32_gflops": 4e5}, "lstm-step")
    collapse = json.loads((ROOT / "metrics" / "collapse.json").read_text())
    metrics.validate("collapse", {k: v for k, v in collapse.items() if k != "keras2"}, "collapse")  # keras2: false


def test_a_refusal_names_a_nested_field_by_its_path_and_cuts_a_long_message():
    report = json.loads((ROOT / "metrics" / "lstm-step.json").read_text())
    name = next(iter(registry.lstm_cores()))
    broken = {**report, name: {**report[name], "cpu_generic": {**report[name]["cpu_generic"], "rounds": "x"}}}
    with pytest.raises(PipelineError, match=rf"^lstm-step.json: breaks the lstm-step metrics schema at "
                                            rf"{name}\.cpu_generic\.rounds: 'x' is not of type 'integer'$"):
        metrics.validate("lstm-step", broken, "lstm-step.json")
    trained = json.loads((ROOT / "metrics" / "train-sequential.json").read_text())
    with pytest.raises(PipelineError) as refused:
        metrics.validate("train", {**trained, "model": ["m" * 300]}, "t.json")
    message = str(refused.value).split("at model: ", 1)[1]
    assert len(message) == 200 and message.startswith("['mmm")


def test_gpu_check_records_keep_their_contract_whether_they_finished_or_not():
    refused = {"mode": "gpu", "status": "failed: no GPU visible to the jax backend", "python": "3.12.3",
               "budget_s": 540.0, "protocol_float32": "each backend's default", "lstm_step": {}, "gpu_tests": {},
               "wall_s": 12.5}
    metrics.validate("gpu-protocol", refused, "gpu-protocol.json")
    stopped = {**refused, "status": "failed: parallel: not started: 3 s of the budget left for it",
               "lstm_step": {"jax": "lstm-step-gpu-jax.json", "torch": "failed: lstm_step under torch: exit 1"},
               "models": {"parallel": {"status": "not started: 3 s of the budget left for it"},
                          "sequential": {"status": "train exit -9", "time_limit_s": 200}}}
    metrics.validate("gpu-protocol", stopped, "gpu-protocol.json")
    for change, field in [({"status": "done"}, "status"), ({"mode": "tpu"}, "mode"),
                          ({"lstm_step": {"tensorflow": "lstm-step.json"}}, "lstm_step"),
                          ({"models": {"sequential": {"status": "complete", "test_accuracy": 59.27}}},
                           "models.sequential.test_accuracy"),
                          ({"gpu_tests": {"jax": {"exit_code": 0}}}, "gpu_tests.jax")]:
        with pytest.raises(PipelineError, match=rf"^gpu-protocol.json: breaks the gpu-protocol metrics schema at "
                                                rf"{field.replace('.', '[.]')}:"):
            metrics.validate("gpu-protocol", {**stopped, **change}, "gpu-protocol.json")


def test_gpu_check_keeps_a_record_its_schema_refuses_and_fails_on_it(tmp_path, monkeypatch):
    from pipeline.gpu_check import command as gpu_check

    def measure(run, result, cpu):  # every step "ran", but the record holds what the schema does not allow
        result["models"] = {"sequential": {"status": "complete", "test_accuracy": 59.27}}
        return []

    monkeypatch.setattr(gpu_check, "measure", measure)
    with pytest.raises(PipelineError) as refused:
        gpu_check.check(tmp_path / "out", cpu=True, budget_s=300.0)
    assert "breaks the gpu-protocol metrics schema at models.sequential.test_accuracy" in str(refused.value)
    kept = json.loads((tmp_path / "out" / "gpu-protocol.json").read_text())
    assert kept["status"].startswith("failed: ") and kept["models"]["sequential"]["test_accuracy"] == 59.27
    last = (tmp_path / "out" / "gpu-check.log").read_text().strip().splitlines()[-1]
    assert last.split("]: ", 1)[1].startswith("failed: ")  # the log still gets its last line


@pytest.mark.parametrize("kind", metrics.KINDS)
def test_the_schemas_name_the_losses_and_normalizations_params_allows(kind):
    """params.py holds the one list of each; a schema that writes one out must write the same."""
    properties = metrics.schema(kind)["properties"]
    for key, allowed in (("loss", params.LOSSES), ("normalize", params.NORMALIZE_MODES)):
        if key in properties:
            assert tuple(properties[key]["enum"]) == allowed, (kind, key)
