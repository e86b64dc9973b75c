"""The batch reader's speed against an earlier revision's, in one process, rounds interleaved.

    .venv/bin/python reports/unpickler-speed/compare.py [--before 2cfdd19] [--rounds 30]

Loads `pipeline/cifar.py` as it was at `--before` (by `git show`) beside the current one and parses
the same 10,000-image batch with each, alternating old and new every round after 3 warm-up rounds
each, in both pickle layouts (Python 3 protocol 2 as the mirror writes it; the official archive's
Python 2 cPickle layout as `tests/pickles.py` assembles it). Writes rounds.csv (every round) and summary.csv (median, IQR, and the new/old
ratio of medians with a 95% bootstrap interval) beside this file, and prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import cifar  # noqa: E402
from tests import archives, pickles  # noqa: E402


def load_revision(rev: str):
    if rev.startswith("-"):
        sys.exit(f"{rev!r}: a revision cannot start with '-'")
    source = subprocess.run(["git", "show", "--end-of-options", f"{rev}:pipeline/cifar.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "cifar_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cifar_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def layouts() -> dict[str, bytes]:
    """The same 10,000-image batch pickled in both layouts."""
    batch = archives.batch(10_000, seed=0)
    return {"python3-protocol2": archives.pickled(batch),
            "python2-cpickle": pickles.official_batch(list(batch[b"labels"]), batch[b"data"])}


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
    parser.add_argument("--before", default="2cfdd19")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    readers = {"before": load_revision(args.before), "now": cifar}
    payloads = layouts()
    rows = []
    for layout, payload in payloads.items():
        results = {}
        for name, reader in readers.items():  # both must read it, and read it the same
            results[name] = reader.parse_batch(reader.unpickle(payload, "b"), "b")
        assert all(np.array_equal(results["before"][i], results["now"][i]) for i in range(2)), layout
        for _ in range(3):
            for reader in readers.values():
                reader.parse_batch(reader.unpickle(payload, "b"), "b")
        for i in range(args.rounds):
            for name, reader in readers.items():
                start = time.perf_counter()
                reader.parse_batch(reader.unpickle(payload, "b"), "b")
                rows.append({"layout": layout, "round": i, "reader": name, "ms": 1000 * (time.perf_counter() - start)})
            print(f"\r{layout}: round {i + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    with open(HERE / "rounds.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["layout", "round", "reader", "ms"])
        writer.writeheader()
        writer.writerows({**r, "ms": f"{r['ms']:.3f}"} for r in rows)
    rng = np.random.default_rng(0)
    summary = []
    for layout in payloads:
        ms = {name: np.array([r["ms"] for r in rows if r["layout"] == layout and r["reader"] == name]) for name in readers}
        boot = [np.median(rng.choice(ms["now"], len(ms["now"]))) / np.median(rng.choice(ms["before"], len(ms["before"])))
                for _ in range(2000)]
        low, high = np.percentile(boot, [2.5, 97.5])
        summary.append({"layout": layout, "before": args.before, "rounds": args.rounds,
                        "before_median_ms": f"{np.median(ms['before']):.1f}",
                        "before_iqr_ms": f"{np.subtract(*np.percentile(ms['before'], [75, 25])):.1f}",
                        "now_median_ms": f"{np.median(ms['now']):.1f}",
                        "now_iqr_ms": f"{np.subtract(*np.percentile(ms['now'], [75, 25])):.1f}",
                        "ratio": f"{np.median(ms['now']) / np.median(ms['before']):.3f}",
                        "ratio_ci95": f"{low:.3f}-{high:.3f}"})
    write_rows(HERE / "summary.csv", summary)


if __name__ == "__main__":
    main()
