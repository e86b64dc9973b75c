"""What a gpu-check runs: the scratch project's params (the tutorial's profile, shrunk with --cpu), the
data, and each model's share of the time left for the tutorial's protocol."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from pipeline import profiles
from pipeline.gpu_check.run import ROOT, Run, mirror_tool
from pipeline.lib import params, registry
from pipeline.lib.params import PipelineError

BACKENDS = ("jax", "torch")
# --cpu: the same steps on a few real images; enough to run every code path, in a few minutes on 2 cores.
# Each model's epochs: the first model of the registry 2, the others 1.
CPU_WORK = {"preprocess.train_limit": 0, "preprocess.test_limit": 0, "train.batch_size": 10,
            **{f"models.{name}.epochs": 2 if i == 0 else 1 for i, name in enumerate(registry.names())},
            "evaluate.batch_size": 50, "lstm_step.warmup_steps": 1, "lstm_step.rounds": 3}
CPU_MIRROR = ["--per-class-train", "20", "--per-class-test", "10"]
# On the GPU: the tutorial's protocol for training, but the benchmark profile's 10 timed rounds of the
# LSTM cores (torch's CPU path alone takes over a second per parallel-core step).
GPU_WORK = {"lstm_step.rounds": 10}
OVERHEAD_S = 30  # per model, beyond its --time-limit-s: process start, data loading, saving, evaluate
MIN_TRAIN_S = 20  # a model whose share of the time left is shorter is not started
TESTS_RESERVE_S = {False: 100, True: 20}  # the GPU tests run last, in this much time (by --cpu)


def prepare(run: Run, cpu: bool) -> params.Params:
    """Build the archive from the JPEG pack, write the scratch params.yaml, download and preprocess."""
    run.say("building the CIFAR-10 archive from the JPEG pack")
    code, _ = run.call([str(mirror_tool()), str(run.work / "mirror"), *(CPU_MIRROR if cpu else [])])
    if code != 0:
        raise PipelineError(f"the mirror tool failed (exit {code}); see {run.out_dir / 'gpu-check.log'}")
    archive = run.work / "mirror" / "cifar-10-python.tar.gz"
    md5 = Path(f"{archive}.md5").read_text().split()[0]
    raw = params.load_mapping(ROOT / "params.yaml")
    overrides = {**profiles.PROFILES["tutorial"], **(CPU_WORK if cpu else GPU_WORK),
                 "download.url": archive.as_uri(), "download.md5": md5}
    raw = profiles.apply(raw, overrides)
    p = params.parse(raw, "gpu-check params")
    (run.project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run.stage(BACKENDS[0], "download")
    run.stage(BACKENDS[0], "preprocess")
    return p


def core_ms(report: dict, model: str, cpu: bool) -> float:
    """The step time a backend's LSTM core would train with: cuDNN where it ran, else the generic kernel."""
    core = report[model]
    timing = core["cpu_generic"] if cpu else (core["gpu_cudnn"] or core["gpu_generic"])
    return timing["step_time_ms_median"]


def work_ms(report: dict, model: str, cpu: bool) -> float:
    """What one epoch of `model` is weighed by when the time left is shared: its LSTM core's step time,
    or, for a model without one, the mean of the cores' (the LSTM cores are most of each step)."""
    cores = registry.lstm_cores()
    if model in cores:
        return core_ms(report, model, cpu)
    return sum(core_ms(report, m, cpu) for m in cores) / len(cores) if cores else 1.0


def protocol(run: Run, p: params.Params, backend: str, reports: dict, cpu: bool) -> dict:
    """Train and score each model with the time left, the one of fewest epochs first (the tutorial's
    protocol: parallel, then sequential). A model that failed, was killed at its limit or had no time left
    is recorded as such, and the others still get their turn."""
    order = sorted(registry.names(), key=lambda m: p.models[m].epochs)
    work = {m: p.models[m].epochs * work_ms(reports[backend], m, cpu) for m in order}
    results = {}
    for i, model in enumerate(order):
        left = run.left() - TESTS_RESERVE_S[cpu] - OVERHEAD_S * (len(order) - i)
        limit = left * work[model] / sum(work[m] for m in order[i:])
        if limit < MIN_TRAIN_S:
            results[model] = {"status": f"not started: {max(limit, 0):.0f} s of the budget left for it"}
            run.say(f"train {model}: {results[model]['status']}")
            continue
        results[model] = {"time_limit_s": round(limit)}
        run.say(f"train {model} --time-limit-s {limit:.0f} under {backend}")
        code, _ = run.call(["-m", "pipeline.stages.train", model, "--time-limit-s", f"{limit:.0f}"], backend,
                           timeout=limit + OVERHEAD_S)
        if code != 0:
            results[model]["status"] = f"train exit {code}"
            continue
        run.say(f"evaluate {model} under {backend}")
        code, _ = run.call(["-m", "pipeline.stages.evaluate", model], backend)
        if code != 0:
            results[model]["status"] = f"evaluate exit {code}"
            continue
        train = run.read(p.paths.train_metrics(model))
        score = run.read(p.paths.evaluate_metrics(model))
        results[model].update({
            "status": "complete",
            "epochs": train["epochs"], "epochs_completed": train["epochs_completed"],
            "finished": train["epochs_completed"] == train["epochs"],
            **{k: train[k] for k in ("train_images", "train_seconds", "compile_seconds", "train_images_per_s",
                                      "step_time_ms_median", "step_time_ms_iqr", "final_train_loss",
                                      "final_train_accuracy")},
            **{k: score[k] for k in ("test_images", "test_accuracy", "test_loss", "inference_images_per_s",
                                      "reported_test_accuracy", "reported_epochs")},
            "history": pd.read_csv(run.project / p.paths.train_history(model)).to_dict("records"),
        })
    return results
