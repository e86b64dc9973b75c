"""Training step time on one device against data-parallel replicas of the same host: `make bench-replicas`.

    python -m tests.benchmarks.replicas [--backend tensorflow|jax] [--devices 2] [--images 2000]
                                        [--epochs 2] [--rounds 3] [--models sequential parallel]

Logical devices must be configured before the backend starts, so every measurement is its own run of
the real `pipeline.stages.train` stage, in a scratch project on synthetic images of CIFAR-10's shape (timing
does not depend on the pixels). The stage's own metrics give each run's steady-state step time: the
first step (tracing, compile) is excluded, and the median and IQR are taken over the remaining steps.
The two settings alternate, round after round, so both see the same machine state; the summary is
the median over rounds of each run's median, with the spread (min .. max) of those medians, and the
ratio of the two. The global batch is the same in both (params.yaml `train.batch_size`).

Writes `replicas.json` (every run) and prints a table. On a host without a GPU the replicas are
logical CPU devices sharing the same cores: the ratio then shows the cost of the engine (batch
splitting, gradient all-reduce), not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from pipeline.lib import params, registry
from tests.project import ROOT, run_stage, scratch_params, set_params
from tests.splits import write_prepared


def train_once(project: Path, model: str, backend: str, distribution: str, devices: int) -> dict:
    set_params(project, **{"train.distribution": distribution, "train.devices": devices})
    code, _, err = run_stage(project, "pipeline.stages.train", model, timeout=None, KERAS_BACKEND=backend)
    if code:
        sys.exit(f"replicas: pipeline.stages.train {model} ({distribution}) failed:\n{err[-2000:]}")
    return json.loads((project / "metrics" / f"train-{model}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(registry.names()))
    parser.add_argument("--out", default="replicas.json")
    args = parser.parse_args()

    settings = [("none", 0), ("data_parallel", args.devices)]
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        project = scratch_params(Path(scratch), **{f"models.{m}.epochs": args.epochs for m in registry.names()})
        write_prepared(project, args.images, seed=0, normalize="raw")
        for model in args.models:
            for round_ in range(args.rounds):
                for distribution, devices in settings:
                    m = train_once(project, model, args.backend, distribution, devices)
                    runs.append({"model": model, "round": round_, "distribution": distribution,
                                 "replicas": m["replicas"], "step_time_ms_median": m["step_time_ms_median"],
                                 "step_time_ms_iqr": m["step_time_ms_iqr"], "timed_steps": m["timed_steps"],
                                 "compile_seconds": m["compile_seconds"]})
                    print(f"{model} round {round_ + 1}/{args.rounds} {distribution:>13} x{m['replicas']}: "
                          f"median step {m['step_time_ms_median']:.1f} ms (IQR {m['step_time_ms_iqr']:.1f}, "
                          f"{m['timed_steps']} steps)", flush=True)
        environment = {k: m[k] for k in ("device_name", "backend", "backend_version", "keras_version", "threads")}

    summary = []
    for model in args.models:
        medians = {d: [r["step_time_ms_median"] for r in runs if r["model"] == model and r["distribution"] == d]
                   for d, _ in settings}
        one, many = (statistics.median(medians[d]) for d, _ in settings)
        summary.append({"model": model, "one_device_ms": one, "one_device_range": [min(medians["none"]),
                        max(medians["none"])], "replicas": args.devices, "data_parallel_ms": many,
                        "data_parallel_range": [min(medians["data_parallel"]), max(medians["data_parallel"])],
                        "ratio_data_parallel_over_one": round(many / one, 3)})
    result = {"images": args.images, "epochs": args.epochs, "rounds": args.rounds,
              "batch_size": params.load(ROOT / "params.yaml").train.batch_size,
              **environment, "summary": summary, "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for s in summary:
        print(f"{s['model']}: 1 device {s['one_device_ms']:.1f} ms/step ({s['one_device_range'][0]:.1f} .. "
              f"{s['one_device_range'][1]:.1f}), {s['replicas']} replicas {s['data_parallel_ms']:.1f} ms/step "
              f"({s['data_parallel_range'][0]:.1f} .. {s['data_parallel_range'][1]:.1f}): "
              f"ratio {s['ratio_data_parallel_over_one']}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
