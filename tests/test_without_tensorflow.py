"""The pipeline where TensorFlow is not installed, as on the GPU host: every stage under JAX and under
torch, and scripts/gpu-check end to end with --cpu.

`make test` runs this module (marker `notf`) in .venv-notf: requirements-gpu.txt with the CPU builds of
JAX and torch (requirements-backends.txt), no TensorFlow, no DVC, KERAS_BACKEND=jax. The main venv's
run deselects it (pyproject.toml addopts).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.gpu_check.protocol import CPU_WORK
from pipeline.lib import environment, registry
from pipeline.lib import metrics as metrics_contract
from tests.conftest import MIRROR_TOOL
from tests.project import ROOT, TINY, run_stage, scratch_params

pytestmark = pytest.mark.notf
BACKENDS = ("jax", "torch")
# torch's CPU LSTM is slow (Keras's fallback loop: seconds per parallel-model step): fewer, smaller batches.
SMALLER = {"torch": {"preprocess.train_limit": 20, "preprocess.test_limit": 10, "train.batch_size": 10,
                     "evaluate.batch_size": 10, "collapse.probe_images": 10, "lstm_step.rounds": 3}}
STAGES = [("pipeline.stages.download",), ("pipeline.stages.preprocess",),
          *[(f"pipeline.stages.{stage}", m) for stage in ("train", "evaluate") for m in registry.names()],
          ("pipeline.stages.lstm_step",), ("pipeline.stages.collapse",)]


def gpu_check_script(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`bash scripts/gpu-check args...` run from `cwd`, with this interpreter as its Python."""
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check"), *args], cwd=cwd,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=1200)


def test_tensorflow_and_dvc_are_not_installed_here():
    assert importlib.util.find_spec("tensorflow") is None
    assert importlib.util.find_spec("dvc") is None
    with pytest.raises(ImportError):
        import tensorflow  # noqa: F401


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_stage_runs_and_records_its_backend(tmp_path, tiny_archive, backend):
    archive, md5 = tiny_archive
    scratch_params(tmp_path, **{**TINY, "download.url": archive.as_uri(), "download.md5": md5,
                                "lstm_step.cpu_sgemm_n": 128, **SMALLER.get(backend, {})})
    for args in STAGES:
        code, _, err = run_stage(tmp_path, *args, timeout=900, KERAS_BACKEND=backend)
        assert code == 0, f"{args} under {backend}:\n{err[-3000:]}"
    metrics = {path.name: json.loads(path.read_text()) for path in (tmp_path / "metrics").glob("*.json")}
    assert set(metrics) == {f"{kind}-{m}.json" for kind in ("train", "evaluate") for m in registry.names()} | {
        "lstm-step.json", "collapse.json"}
    for name, values in metrics.items():
        assert values["backend"] == backend, name
    for model in registry.names():
        assert metrics[f"train-{model}.json"]["loss"] == "crossentropy"
        assert 0 <= metrics[f"evaluate-{model}.json"]["test_accuracy"] <= 1
    metrics_contract.validate("lstm-step", metrics["lstm-step.json"], "lstm-step")
    assert metrics["collapse.json"]["keras3"]["runs"] == 1


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    if not MIRROR_TOOL.is_file():
        pytest.skip(f"gpu-check builds its data with {MIRROR_TOOL} (the shared folder beside the project)")
    committed = {p.name: p.read_bytes() for p in (ROOT / "metrics").glob("*.json")}
    out = tmp_path / "out"  # given relative to where the script runs
    result = gpu_check_script(tmp_path, "out", "--cpu")
    log = out / "gpu-check.log"
    assert result.returncode == 0, result.stderr[-1000:] + (log.read_text()[-3000:] if log.is_file() else "")
    assert {p.name for p in out.iterdir()} == {"gpu-check.log", "gpu-protocol.json", "lstm-step-gpu-jax.json",
                                               "lstm-step-gpu-torch.json"}
    for backend in BACKENDS:
        report = json.loads((out / f"lstm-step-gpu-{backend}.json").read_text())
        metrics_contract.validate("lstm-step", report, "lstm-step")
        assert report["backend"] == backend and report["gpu_status"].startswith("no GPU visible")
        core = report[next(iter(registry.lstm_cores()))]
        assert core["gpu_cudnn"] is None and core["cpu_generic"]["kernel"] == "generic"
    protocol = json.loads((out / "gpu-protocol.json").read_text())
    metrics_contract.validate("gpu-protocol", protocol, "gpu-protocol.json")
    choice = protocol["backend_choice_core_ms"]
    assert protocol["mode"] == "cpu" and protocol["status"] == "complete"
    assert protocol["backend"] == min(choice, key=choice.get)
    assert protocol["lstm_step"] == {b: f"lstm-step-gpu-{b}.json" for b in BACKENDS}
    assert (CPU_WORK["models.sequential.epochs"], CPU_WORK["models.parallel.epochs"]) == (2, 1)
    for model, epochs in ((m, CPU_WORK[f"models.{m}.epochs"]) for m in registry.names()):
        m = protocol["models"][model]
        assert (m["status"], m["train_images"], m["test_images"], protocol["batch_size"]) == ("complete", 200, 100, 10)
        assert (m["epochs"], m["epochs_completed"], m["finished"]) == (epochs, epochs, True)
        assert [row["epoch"] for row in m["history"]] == list(range(1, epochs + 1))
        assert 0 <= m["test_accuracy"] <= 1 and m["train_images_per_s"] > 0
    for backend in BACKENDS:
        assert protocol["gpu_tests"][backend]["exit_code"] == 0
        assert "1 skipped" in protocol["gpu_tests"][backend]["summary"]  # no GPU here: the GPU test skips
    # --cpu writes nothing into the checkout's metrics/.
    assert {p.name: p.read_bytes() for p in (ROOT / "metrics").glob("*.json")} == committed


def test_gpu_check_records_what_it_could_not_do_and_fails_when_the_budget_is_too_short(tmp_path):
    # 120 s, the least --cpu accepts. The data and both lstm-step runs take about 30 s here; the parallel
    # model (trained first, with about 55% of the time left) would get MIN_TRAIN_S only if they took under
    # 4 s, so it is not started.
    # The sequential model then gets what is left, which depends on the machine's speed: either it
    # trains or it is not started either. The measurements made are written all the same.
    result = gpu_check_script(tmp_path, str(tmp_path / "out"), "--cpu", "--budget-s", "120")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert "finished with failures" in result.stderr and "parallel: not started" in result.stderr
    protocol = json.loads((tmp_path / "out" / "gpu-protocol.json").read_text())
    metrics_contract.validate("gpu-protocol", protocol, "gpu-protocol.json")
    assert protocol["status"].startswith("failed: parallel: not started")
    assert protocol["models"]["parallel"]["status"].startswith("not started")
    sequential = protocol["models"]["sequential"]["status"]
    assert sequential == "complete" or sequential.startswith("not started"), sequential
    assert (f"sequential: {sequential}" in protocol["status"]) == (sequential != "complete")
    assert protocol["lstm_step"] == {b: f"lstm-step-gpu-{b}.json" for b in BACKENDS}
    assert all((tmp_path / "out" / f"lstm-step-gpu-{b}.json").is_file() for b in BACKENDS)


@pytest.mark.skipif(environment.gpu_devices()[0] != [], reason="checks the refusal on a machine without a GPU")
def test_gpu_check_refuses_without_a_gpu_before_any_work(tmp_path):
    code, _, err = run_stage(tmp_path, "pipeline.gpu_check", str(tmp_path / "out"))
    assert code == 1
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert err.startswith("pipeline.gpu_check: error: no GPU visible to the jax backend")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu-check.log", "gpu-protocol.json"]
    protocol = json.loads((tmp_path / "out" / "gpu-protocol.json").read_text())
    metrics_contract.validate("gpu-protocol", protocol, "gpu-protocol.json")
    assert protocol["status"].startswith("failed: no GPU visible to the jax backend") and protocol["lstm_step"] == {}


@pytest.mark.parametrize("args, message", [
    (["--budget-s", "nan"], "argument --budget-s: invalid budget value: 'nan'"),
    (["--budget-s", "199"], "--budget-s 199 is below the 200 s that training both models needs after the GPU "
                            "tests' reserve"),
    (["--budget-s", "-5"], "argument --budget-s: invalid budget value: '-5'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_gpu_check_refuses_bad_arguments_in_one_line(tmp_path, args, message):
    code, _, err = run_stage(tmp_path, "pipeline.gpu_check", str(tmp_path / "out"), *args)
    assert code == 2
    assert err.strip().splitlines() == [f"pipeline.gpu_check: error: {message} (see scripts/gpu-check --help)"]
    assert not (tmp_path / "out").exists()


def test_gpu_check_refuses_an_output_path_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("a file")
    code, _, err = run_stage(tmp_path, "pipeline.gpu_check", str(tmp_path / "out"), "--cpu")
    assert code == 1
    assert err.strip().splitlines() == [f"pipeline.gpu_check: error: {tmp_path / 'out'}: cannot write there: File exists"]
