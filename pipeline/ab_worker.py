"""Benchmark worker for `python -m pipeline.gate ab`: one per rev, run with that rev's code.

Started as `python <head>/pipeline/ab_worker.py BATCH WARMUP` with PYTHONPATH and cwd set to the rev's
checkout, so `pipeline.lstm_step` is that rev's. It builds one LSTM core training step per model
(CPU path), warms each up, prints {"cores", "backend", "warmup_s"}, then for each core name read on
stdin runs one step and prints {"ms": ...}. The gate drives two of these in interleaved order.
"""

import json
import sys
import time

# Run as a script, Python puts this file's folder first on sys.path; the rev's checkout (PYTHONPATH)
# must provide `pipeline` instead.
sys.path.pop(0)


def main() -> None:
    batch, warmup = int(sys.argv[1]), int(sys.argv[2])
    # The rev's package first: its __init__ sets the backend's environment before keras loads it.
    from pipeline import lstm_step, models

    import keras

    if not hasattr(lstm_step, "make_train_step"):
        sys.exit("this rev has no pipeline.lstm_step.make_train_step to benchmark")
    start = time.perf_counter()
    steps = {core: lstm_step.make_train_step(core, batch) for core in models.LSTM_CORES}
    for step in steps.values():
        for _ in range(warmup):
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
