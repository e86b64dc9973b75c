"""The device run in one command: the LSTM cores on the GPU under JAX and torch, and the tutorial's
protocol under the faster of the two.

    scripts/gpu-check OUT_DIR [--cpu] [--budget-s 450]

scripts/gpu-check installs the wheels that `make gpu-pack` put in .gpu/wheels (Keras and what a GPU
host without TensorFlow lacks) into a temporary folder, then runs this module from the repository
root. It needs neither TensorFlow nor DVC: every step is a real stage process (`python -m
pipeline.<stage>`) in a scratch project, with KERAS_BACKEND set for the step.

1. Data: the mirror tool turns the JPEG pack into an archive in the official layout (the copy of
   ../shared that `make gpu-pack` put in .gpu/shared, else ../shared itself); then the `download`
   stage (a file:// URL and the archive's md5) and `preprocess`.
2. `lstm-step` under jax, then under torch -> lstm-step-gpu-<backend>.json (10 timed rounds).
3. The faster backend: the smaller sum over both cores of the cuDNN step's median (the GPU generic
   kernel's where the cuDNN time was refused).
4. The tutorial's protocol (pipeline/profiles.py `tutorial`: all 50,000 / 10,000 images, sequential
   100 and parallel 10 epochs, batch 100, Adam 0.001) under that backend: `train` with
   `--time-limit-s`, each model of the registry in turn, fewest epochs first (parallel, then
   sequential), each with its share of the time left (in proportion to its epochs times its LSTM
   core's step time), then `evaluate` ->
   gpu-protocol.json: time to finish or the epochs done by the cap, images/s, test accuracy, curves.
5. Last, in the 100 s kept for them: the GPU tests of tests/test_lstm_step.py under each backend
   (their summary lines are recorded; a failure fails the run).

Everything goes to OUT_DIR, with the log of every step (gpu-check.log). gpu-protocol.json is written
even when a step fails, its `status` naming what failed, and the run then exits 1; only a complete GPU
run also goes to metrics/ of this checkout. Every process is killed at --budget-s (default 450 s) plus
20 s, so the run ends inside 8 minutes (a device command may take 10). Without --cpu it refuses to run
when a backend sees no GPU.

--cpu swaps the GPU for the CPU and shrinks the work (200 / 100 real images, 2 and 1 epochs, batch
10, 3 timed rounds) so that CI runs this same script end to end on a machine without a GPU; nothing
then goes to metrics/.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import signal
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pandas as pd
import yaml

from pipeline import profiles

from pipeline.lib import cli, environment, metrics, params, registry
from pipeline.lib.atomic import write_json
from pipeline.lib.params import PipelineError

ROOT = Path(__file__).resolve().parent.parent
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
GRACE_S = 20  # a process still running this long after the budget is killed
# The tests of tests/test_lstm_step.py that check GPU behaviour (pytest exits 5, a failure, if a rename
# leaves nothing selected).
GPU_TESTS = ("test_stage_writes_a_valid_report or test_gpu_cudnn_path_matches_cpu_path or "
             "test_torch_silent_cudnn_fallback_on_the_gpu_is_refused or test_a_cudnn_time_is_refused")


class Run:
    """The scratch project, the log, and the clock of one gpu-check.

    Every process gets a hard timeout at the end of the budget (plus `GRACE_S`); one still running then
    is killed with its process group, so the whole run ends within budget + grace whatever hangs.
    """

    def __init__(self, out_dir: Path, budget_s: float, cpu: bool):
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.cpu = cpu
        self.out_dir = out_dir
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.project = self.work / "project"
        self.project.mkdir()
        self.log = open(out_dir / "gpu-check.log", "w", encoding="utf-8")  # noqa: SIM115 (closed in check)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def say(self, line: str) -> None:
        line = f"gpu-check [{self.elapsed():6.1f} s]: {line}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def call(self, args: list[str], backend: str | None = None, cwd: Path | None = None,
             timeout: float | None = None) -> tuple[int, str]:
        """Run `python args...` with this checkout's package importable; echo and log its output.
        Returns (exit code, output); -9 when it was killed: after `timeout` seconds, at the end of the
        budget (+ GRACE_S) at the latest. An interrupt kills it too, before it propagates."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if backend:
            env["KERAS_BACKEND"] = backend
        if self.cpu:  # --cpu: hide any GPU from both backends
            env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd or self.project, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        lines: list[str] = []

        def pump():
            for line in proc.stdout:
                print(line, end="", flush=True)
                self.log.write(line)
                lines.append(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        limit = max(min(self.left() + GRACE_S, timeout if timeout is not None else math.inf), 1.0)
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
            lines.append(f"gpu-check: killed after {limit:.0f} s (its time limit or the end of the budget)\n")
        except BaseException:  # Ctrl-C, SIGTERM: its own session would outlive this process otherwise
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        reader.join(timeout=10)
        self.log.flush()
        return code, "".join(lines)

    def stage(self, backend: str, module: str, *args: str) -> None:
        self.say(" ".join([module, *args, "under", backend]))
        code, _ = self.call(["-m", f"pipeline.stages.{module}", *args], backend)
        if code != 0:
            raise PipelineError(f"{module} {' '.join(args)} under {backend} failed (exit {code}); "
                                f"see {self.out_dir / 'gpu-check.log'}")

    def read(self, path) -> dict:
        return json.loads((self.project / path).read_text())


def mirror_tool() -> Path:
    for shared in (ROOT / ".gpu" / "shared", ROOT.parent / "shared"):
        tool = shared / "tools" / "make-cifar10-mirror"
        if tool.is_file():
            return tool
    raise PipelineError(f"no mirror tool: neither {ROOT / '.gpu/shared'} (make gpu-pack) nor {ROOT.parent / 'shared'} "
                        "holds tools/make-cifar10-mirror and data/cifar10-jpeg.tar.gz")


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
    parser = cli.ArgumentParser(prog="scripts/gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where every file it writes goes (on the device: $OUT)")
    parser.add_argument("--cpu", action="store_true", help="no GPU: the same steps on the CPU, shrunk (CI)")
    parser.add_argument("--budget-s", type=budget, default=450.0, metavar="S",
                        help="wall-clock budget of the whole run in seconds (default 450)")
    args = parser.parse_args(argv)
    if args.budget_s < minimum_budget(args.cpu):
        parser.error(f"--budget-s {args.budget_s:g} is below the {minimum_budget(args.cpu):g} s that training both "
                     f"models{' with --cpu' if args.cpu else ''} needs after the GPU tests' reserve")
    check(args.out_dir, args.cpu, args.budget_s)


if __name__ == "__main__":
    cli.main(main)
