"""gpu-check's steps in order (the GPUs, the data, lstm-step under each backend, the protocol under the
faster one, the GPU tests), its result file, and its command line."""

from __future__ import annotations

import json
import math
import platform
import shutil
import traceback
from pathlib import Path

from pipeline.gpu_check import __doc__ as GPU_CHECK_DOC
from pipeline.gpu_check.protocol import BACKENDS, MIN_TRAIN_S, OVERHEAD_S, TESTS_RESERVE_S, core_ms, prepare, protocol
from pipeline.gpu_check.run import ROOT, Run
from pipeline.lib import cli, environment, metrics, registry
from pipeline.lib.atomic import write_json
from pipeline.lib.params import PipelineError

# The tests of tests/test_lstm_step.py that check GPU behaviour (pytest exits 5, a failure, if a rename
# leaves nothing selected).
GPU_TESTS = ("test_stage_writes_a_valid_report or test_gpu_cudnn_path_matches_cpu_path or "
             "test_torch_silent_cudnn_fallback_on_the_gpu_is_refused or test_a_cudnn_time_is_refused")


def gpu_tests(run: Run, backend: str, cpu: bool) -> dict:
    """tests/test_lstm_step.py's GPU checks under `backend` (on --cpu only the GPU test, which skips)."""
    selection = "test_gpu_cudnn_path_matches_cpu_path" if cpu else GPU_TESTS
    run.say(f"GPU tests under {backend}: {selection}")
    code, out = run.call(["-m", "pytest", "-q", "tests/test_lstm_step.py", "-k", selection], backend, cwd=ROOT)
    lines = out.strip().splitlines()
    summary = next((line for line in reversed(lines) if " in " in line and ("passed" in line or "skipped" in line
                                                                          or "failed" in line or "error" in line)),
                   lines[-1] if lines else "")
    return {"exit_code": code, "summary": summary.strip("= ")}


def require_gpus(run: Run) -> None:
    """Refuse, before any work, when no backend sees a GPU (one that does not fails its lstm-step later)."""
    statuses = []
    for backend in BACKENDS:
        code, out = run.call(["-c", "from pipeline.lib import environment; print(environment.gpu_devices()[1])"],
                             backend, cwd=ROOT, timeout=120)
        status = out.strip().splitlines()[-1] if out.strip() else f"exit {code}"
        if code == 0 and not status.startswith("no GPU"):
            return
        statuses.append(status if code == 0 else f"{backend}: exit {code}")
    raise PipelineError(f"{'; '.join(statuses)}; nothing measured (scripts/gpu-check --cpu runs the same steps "
                        "without a GPU)")


def measure(run: Run, result: dict, cpu: bool) -> list[str]:
    """Every step; fills `result` as it goes and returns what failed (empty: everything ran and passed)."""
    failures = []
    if not cpu:
        require_gpus(run)
    p = prepare(run, cpu)
    result.update(data={"source": "JPEG pack mirror (../shared/data/README.md)", "md5": p.download.md5},
                  batch_size=p.train.batch_size, learning_rate=p.train.learning_rate, loss=p.train.loss,
                  normalize=p.preprocess.normalize, seed=p.train.seed)
    reports = {}
    for backend in BACKENDS:
        try:
            run.stage(backend, "lstm_step")
            report = run.read(p.paths.lstm_step_metrics)
            if not cpu and not report["gpu_device_name"]:
                raise PipelineError(f"lstm_step under {backend}: {report['gpu_status']}")
        except PipelineError as exc:
            failures.append(str(exc))
            result["lstm_step"][backend] = f"failed: {exc}"
            continue
        reports[backend] = report
        result["lstm_step"][backend] = f"lstm-step-gpu-{backend}.json"
        metrics.write("lstm-step", run.out_dir / f"lstm-step-gpu-{backend}.json", report)
    if not reports:
        raise PipelineError("; ".join(failures))
    choice = {b: round(sum(core_ms(reports[b], m, cpu) for m in registry.lstm_cores()), 3) for b in reports}
    backend = min(choice, key=choice.get)
    env = reports[backend]
    result.update(backend=backend, backend_choice_core_ms=choice,
                  device_name=env["gpu_device_name"] or env["cpu_device_name"],
                  driver_version=environment.nvidia_smi("driver_version"),
                  backend_version=env["backend_version"], keras_version=env["keras_version"])
    run.say(f"protocol under {backend} (LSTM core ms per step, both cores: {choice})")
    result["models"] = protocol(run, p, backend, reports, cpu)
    failures += [f"{m}: {r['status']}" for m, r in result["models"].items() if r["status"] != "complete"]
    for backend in reports:  # last: the measurements above matter more than their re-checks
        result["gpu_tests"][backend] = tests = gpu_tests(run, backend, cpu)
        if tests["exit_code"] != 0:
            failures.append(f"the GPU tests under {backend} failed: {tests['summary']}")
    return failures


def check(out_dir: Path, cpu: bool, budget_s: float) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        run = Run(out_dir, budget_s, cpu)
    except OSError as exc:
        raise PipelineError(f"{out_dir}: cannot write there: {exc.strerror}") from None
    result = {"mode": "cpu" if cpu else "gpu", "status": "running", "python": platform.python_version(),
              "budget_s": budget_s, "protocol_float32": "each backend's default (TF32 where it allows it); "
              "the backend is chosen on the lstm-step cuDNN medians at full FP32",
              "lstm_step": {}, "gpu_tests": {}}
    failures = ["stopped before the end (interrupted, or an unexpected error: see the log)"]
    try:
        failures = measure(run, result, cpu)
    except PipelineError as exc:
        failures = [str(exc)]
        raise
    except Exception as exc:  # a bug, or an output that is not what the stage should have written
        run.log.write(traceback.format_exc())
        failures = [f"{type(exc).__name__}: {exc} (traceback in {out_dir / 'gpu-check.log'})"]
        raise PipelineError(failures[0]) from None
    finally:
        result.update(status="complete" if not failures else "failed: " + "; ".join(failures),
                      wall_s=round(run.elapsed(), 1))
        try:
            metrics.validate("gpu-protocol", result, out_dir / "gpu-protocol.json")
        except PipelineError as exc:  # a bug: keep what was measured, marked failed, and copy it nowhere
            failures.append(str(exc))
            result["status"] = "failed: " + "; ".join(failures)
        write_json(out_dir / "gpu-protocol.json", result)
        if not cpu and not failures:  # only a complete GPU run goes into the checkout's metrics/
            for name in [f"lstm-step-gpu-{b}.json" for b in BACKENDS] + ["gpu-protocol.json"]:
                write_json(ROOT / "metrics" / name, json.loads((out_dir / name).read_text()))
        run.say(f"{result['status']} after {run.elapsed():.0f} s -> {out_dir}")
        run.log.close()
        shutil.rmtree(run.work, ignore_errors=True)
    if failures:
        raise PipelineError(f"finished with failures, outputs in {out_dir}: {'; '.join(failures)}")


def minimum_budget(cpu: bool) -> float:
    """The least --budget-s that leaves both models their overhead and some training after the tests' reserve."""
    return TESTS_RESERVE_S[cpu] + 2 * (OVERHEAD_S + MIN_TRAIN_S)


def budget(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="scripts/gpu-check", description=GPU_CHECK_DOC.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where every file it writes goes (on the device: $OUT)")
    parser.add_argument("--cpu", action="store_true", help="no GPU: the same steps on the CPU, shrunk (CI)")
    parser.add_argument("--budget-s", type=budget, default=450.0, metavar="S",
                        help="wall-clock budget of the whole run in seconds (default 450)")
    args = parser.parse_args(argv)
    if args.budget_s < minimum_budget(args.cpu):
        parser.error(f"--budget-s {args.budget_s:g} is below the {minimum_budget(args.cpu):g} s that training both "
                     f"models{' with --cpu' if args.cpu else ''} needs after the GPU tests' reserve")
    check(args.out_dir, args.cpu, args.budget_s)
