"""Where the batch reader's time goes, against what `keras.datasets.cifar10` does, in one process.

    .venv/bin/python reports/unpickler-speed/breakdown.py [--rounds 30]

For the same 10,000-image batch in both layouts (as compare.py), times four steps, all in every round,
in turn, after 3 warm-up rounds: the safe reader's interpreter (`cifar.unpickle`), `pickle.loads`,
the safe reader's checks and channels-last copy (`cifar.parse_batch`, three per-channel copies), and
numpy's copy of the channels-last view of the `pickle.loads` array (what the reader did before).
Writes breakdown.csv (median and IQR per layout and step) beside this file and prints it.
"""

from __future__ import annotations

import argparse
import csv
import pickle
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import layouts  # noqa: E402 (compare.py puts the repository on sys.path)
from pipeline.lib import cifar  # noqa: E402


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write rows as CSV and print each as one line."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(", ".join(f"{k}={v}" for k, v in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for layout, payload in layouts().items():
        records = cifar.unpickle(payload, "b")
        trusted = pickle.loads(payload, encoding="bytes")[b"data"]
        steps = {
            "safe unpickle": lambda: cifar.unpickle(payload, "b"),
            "pickle.loads": lambda: pickle.loads(payload, encoding="bytes"),
            "safe checks + per-channel copy": lambda: cifar.parse_batch(records, "b"),
            "numpy copy of the transposed view": lambda: np.ascontiguousarray(
                trusted.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)),
        }
        times: dict[str, list[float]] = {step: [] for step in steps}
        for round_ in range(3 + args.rounds):
            for step, run in steps.items():
                start = time.perf_counter()
                run()
                if round_ >= 3:
                    times[step].append(time.perf_counter() - start)
            print(f"\r{layout}: round {round_ + 1}/{3 + args.rounds}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        for step, values in times.items():
            q1, median, q3 = np.percentile(np.array(values) * 1e3, [25, 50, 75])
            rows.append({"layout": layout, "step": step, "rounds": args.rounds,
                         "median_ms": f"{median:.1f}", "iqr_ms": f"{q3 - q1:.1f}"})
    write_rows(HERE / "breakdown.csv", rows)


if __name__ == "__main__":
    main()
