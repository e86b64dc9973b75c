"""Benchmark worker for `python -m pipeline.gate ab`: one process per rev and side, run with that rev's code.

    python <head>/pipeline/gate/ab_worker.py --batch N --inference-batch N --learning-rate LR --loss NAME --warmup N
    (cwd and PYTHONPATH: the rev's checkout)

It builds the rev's benchmarks (`benchmarks` of pipeline.lib.speed, or pipeline.speed in older revs:
each model's fit loop and inference batch, and in older revs an LSTM core step and a train step; revs
that predate that module offer only the LSTM
cores, through `make_train_step`), warms each up, prints {"benchmarks", "backend", "warmup_s"}, then for each
benchmark name read on stdin runs one step and prints {"ms": ...}: its wall time, or what a benchmark
that `reports_own_time` measured itself (pipeline/lib/speed.py's fit loops), sent when that measurement
ends. The gate drives several of these in interleaved order. Run as a script, not a stage: it may
import an older rev's package, so it uses nothing of this one but argparse.

The replies go to the process's original stdout; anything the rev's code prints goes to stderr, so it
cannot corrupt them. A rev with nothing to benchmark exits with NOTHING_TO_BENCHMARK (3), the one
failure `gate ab --allow-missing-baseline` forgives.
"""

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time

NOTHING_TO_BENCHMARK = 3

# Run as a script, Python puts this file's folder first on sys.path; the rev's checkout (PYTHONPATH)
# must provide `pipeline` instead.
sys.path.pop(0)


def _benchmarks(args) -> dict:
    """The rev's benchmarks by name: its speed module (pipeline.lib.speed, or pipeline.speed before the
    package had folders), or the LSTM cores alone in revs that predate it."""
    for name in ("pipeline.lib.speed", "pipeline.speed"):
        if importlib.util.find_spec(name.rpartition(".")[0]) and importlib.util.find_spec(name) is not None:
            speed = importlib.import_module(name)  # an error inside the rev's module surfaces as itself
            return speed.benchmarks(args.batch, args.inference_batch, args.learning_rate, args.loss)
    for name in ("pipeline.steps", "pipeline.lstm_step"):
        if importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            if hasattr(module, "make_train_step"):
                from pipeline import models
                return {f"{core} LSTM core step": module.make_train_step(core, args.batch)
                        for core in models.LSTM_CORES}
    print("this rev has no speed module (pipeline.lib.speed, pipeline.speed) nor make_train_step "
          "(pipeline.steps, pipeline.lstm_step) to benchmark", file=sys.stderr)
    sys.exit(NOTHING_TO_BENCHMARK)


def arguments() -> argparse.ArgumentParser:
    """The command line `gate.Worker` gives a worker (tests/ab_standin.py parses it with this too)."""
    parser = argparse.ArgumentParser(prog="ab_worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, required=True, help="images (sequences) per training step")
    parser.add_argument("--inference-batch", type=int, required=True, help="images per inference batch")
    parser.add_argument("--learning-rate", type=float, required=True, help="Adam's learning rate")
    parser.add_argument("--loss", required=True, help="train.loss")
    parser.add_argument("--warmup", type=int, required=True, help="untimed steps per benchmark first")
    return parser


def main() -> None:
    args = arguments().parse_args()
    # The protocol keeps the original stdout; fd 1 (print, native logs) goes to stderr from here on.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    start = time.perf_counter()
    # The rev's package first: its __init__ sets the backend's environment before keras loads it.
    benchmarks = _benchmarks(args)
    import keras

    for step in benchmarks.values():
        for _ in range(args.warmup):
            step()
    print(json.dumps({"benchmarks": list(benchmarks), "backend": keras.config.backend(),
                      "warmup_s": time.perf_counter() - start}), file=protocol, flush=True)

    def reply(ms: float) -> None:
        print(json.dumps({"ms": ms}), file=protocol, flush=True)

    for line in sys.stdin:
        step = benchmarks[line.strip()]
        if getattr(step, "reports_own_time", False):
            sent = []  # answers as soon as its timed part ends; the next request waits until it returns

            def report(ms: float) -> None:
                if sent:
                    sys.exit(f"{line.strip()}: the benchmark reported its time twice")
                sent.append(ms)
                reply(ms)

            ms = step(report)
            if not sent:  # it never reported early: its return value is the answer
                reply(ms)
            continue
        begin = time.perf_counter()
        step()
        reply((time.perf_counter() - begin) * 1000)


if __name__ == "__main__":
    main()
