"""What one gate worker spends its start on: import, build, and the first calls of every benchmark.

    .venv/bin/python reports/gate-fit-loop/worker_startup.py     (from the repository root, on an idle machine)

Runs in one process what pipeline/gate/ab_worker.py runs at its start (pipeline.lib.speed.benchmarks with the
defaults in params.yaml), timing each of the first four calls of every benchmark (the first one compiles),
then the same for `train_on_batch` on each model's fit-loop model: the `<model> train step` row the gate
had until 68ee5a4, which compiled each model's train function a second way. Writes
worker_startup.csv beside this file: phase, benchmark, call, seconds. The CSV on main was recorded
while pipeline/lib/speed.py still had the LSTM-core rows (6e260a4's rows); run now, the script times
today's rows, without them.
"""

import csv
import sys
import time
from pathlib import Path

started = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import keras  # noqa: E402

from pipeline.lib import params, registry, speed  # noqa: E402

HERE = Path(__file__).parent
CALLS = 4


def main() -> None:
    rows = [("import", "", 0, time.perf_counter() - started)]
    p = params.load()
    began = time.perf_counter()
    found = speed.benchmarks(p.train.batch_size, p.evaluate.batch_size, p.train.learning_rate, p.train.loss)
    rows.append(("build", "", 0, time.perf_counter() - began))

    def timed(name, step):
        for call in range(1, CALLS + 1):
            began = time.perf_counter()
            step()
            rows.append(("call", name, call, time.perf_counter() - began))

    for name, step in found.items():
        timed(name, step)
    for name in registry.names():  # the former train-step row, on the fit loop's own (already compiled) model
        model = found[f"{name} fit loop"].loop.model
        x, y = speed.model_inputs(p.train.batch_size, 0)
        timed(f"{name} train step (train_on_batch, until 68ee5a4)", lambda m=model, x=x, y=y: m.train_on_batch(x, y))
    with open(HERE / "worker_startup.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["phase", "benchmark", "call", "seconds"])
        writer.writerows((phase, name, call, f"{s:.3f}") for phase, name, call, s in rows)
    for phase, name, call, s in rows:
        print(f"{phase:6s} {name:48s} {call} {s:7.3f}")
    print(f"backend {keras.config.backend()}, {time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
