"""A/B worker for reports/unpickler-speed/compare.py: the gate's worker protocol (pipeline/gate/ab_worker.py)
over the rev's archive reader instead of its speed suite.

    python reports/unpickler-speed/reader_worker.py PAYLOADS --warmup N   (cwd and PYTHONPATH: the rev's checkout)

PAYLOADS is a pickle of {layout: one batch's pickle bytes}, written by compare.py. The worker imports the
rev's reader (pipeline.lib.cifar, or pipeline.cifar before the package had folders), checks that it reads
every payload, warms it up, prints {"benchmarks", "backend", "warmup_s"}, then for each name read on stdin
parses that batch once and prints {"ms": ...}.
"""

import argparse
import importlib
import importlib.util
import json
import os
import pickle
import sys
import time

sys.path.pop(0)  # this file's folder: the rev's checkout (PYTHONPATH) provides `pipeline`


def reader():
    for name in ("pipeline.lib.cifar", "pipeline.cifar"):
        if importlib.util.find_spec(name.rpartition(".")[0]) and importlib.util.find_spec(name) is not None:
            return importlib.import_module(name)
    sys.exit("this rev has no archive reader (pipeline.lib.cifar, pipeline.cifar)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payloads")
    parser.add_argument("--warmup", type=int, required=True)
    args = parser.parse_args()
    # The protocol keeps the original stdout; fd 1 (print, native logs) goes to stderr from here on.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    with open(args.payloads, "rb") as f:
        payloads = pickle.load(f)  # written by compare.py in this run, not input from elsewhere
    cifar = reader()
    began = time.perf_counter()
    benchmarks = {f"batch read, {layout}": (lambda p=payload: cifar.parse_batch(cifar.unpickle(p, "b"), "b"))
                  for layout, payload in payloads.items()}
    for run in benchmarks.values():
        for _ in range(args.warmup):
            run()
    print(json.dumps({"benchmarks": list(benchmarks), "backend": "numpy",
                      "warmup_s": round(time.perf_counter() - began, 3)}), file=protocol, flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        benchmarks[line.strip()]()
        print(json.dumps({"ms": 1000 * (time.perf_counter() - start)}), file=protocol, flush=True)


if __name__ == "__main__":
    main()
