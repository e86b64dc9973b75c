"""Benchmark worker for `python -m pipeline.gate ab`: one per rev, run with that rev's code.

    python <head>/pipeline/ab_worker.py --batch N --warmup N   (cwd and PYTHONPATH: the rev's checkout)

It builds one LSTM core training step per model (CPU path) with that rev's `make_train_step`, warms
each up, prints {"cores", "backend", "warmup_s"}, then for each core name read on stdin runs one step
and prints {"ms": ...}. The gate drives two of these in interleaved order. Run as a script, not a
stage: it may import an older rev's package, so it uses nothing of this one but argparse.
"""

import argparse
import importlib
import importlib.util
import json
import sys
import time

# Run as a script, Python puts this file's folder first on sys.path; the rev's checkout (PYTHONPATH)
# must provide `pipeline` instead.
sys.path.pop(0)


def _make_train_step():
    """The rev's train-step builder: pipeline.steps, or pipeline.lstm_step in revs that predate it."""
    for name in ("pipeline.steps", "pipeline.lstm_step"):
        if importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)  # an error inside the rev's module surfaces as itself
            if hasattr(module, "make_train_step"):
                return module.make_train_step
    sys.exit("this rev has no make_train_step (pipeline.steps or pipeline.lstm_step) to benchmark")


def main() -> None:
    parser = argparse.ArgumentParser(prog="ab_worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, required=True, help="sequences per training step")
    parser.add_argument("--warmup", type=int, required=True, help="untimed steps per core first")
    args = parser.parse_args()
    # The rev's package first: its __init__ sets the backend's environment before keras loads it.
    make_train_step = _make_train_step()
    from pipeline import models

    import keras

    start = time.perf_counter()
    steps = {core: make_train_step(core, args.batch) for core in models.LSTM_CORES}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    print(json.dumps({"cores": list(steps), "backend": keras.config.backend(),
                      "warmup_s": time.perf_counter() - start}), flush=True)
    for line in sys.stdin:
        core = line.strip()
        begin = time.perf_counter()
        steps[core]()
        print(json.dumps({"ms": (time.perf_counter() - begin) * 1000}), flush=True)


if __name__ == "__main__":
    main()
