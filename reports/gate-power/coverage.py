"""How often the A/B gate's 95% interval holds the true slowdown, and how large the worker-pair offsets
are, from the recorded A/A runs in reports/gate-power/runs.

    .venv/bin/python reports/gate-power/coverage.py      (from the repository root)

Offsets: each A/A run's per-worker-pair median slowdown (identical code on both sides), per benchmark.
Coverage: 600 simulated samples per setting (tests/gate_sim.py: offsets and step noise drawn from those
runs, +15% true slowdown) for 2, 3 and 4 worker pairs of 8 and 14 pairs each, with the gate's
hierarchical interval and with one that ignores the worker pairs. Writes coverage.csv.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.gate import statistics as gate_statistics  # noqa: E402
from tests import gate_sim  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    noise = gate_sim.recorded_noise()
    offsets = {name: np.expm1(values) for name, values in noise.offsets.items()}
    print("Worker-pair offsets in the A/A runs (median slowdown of one worker pair, identical code):\n")
    print(pd.DataFrame([{"benchmark": name, "worker pairs": len(v), "min": f"{min(v):+.1%}", "max": f"{max(v):+.1%}",
                         "sd": f"{np.std(v, ddof=1):.1%}"} for name, v in sorted(offsets.items())]).to_markdown(index=False))
    rows = []
    for processes in (2, 3, 4):
        for pairs in (8, 14):
            rows.append({"worker_pairs": processes, "pairs_each": pairs,
                         "coverage_hierarchical": gate_sim.coverage(noise, processes, pairs, gate_statistics.pooled_slowdown, 600),
                         "coverage_unpooled": gate_sim.coverage(noise, processes, pairs, gate_sim.unpooled, 600)})
            print(rows[-1], file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "coverage.csv", index=False)
    print("\nCoverage of the nominal 95% interval (+15% true slowdown, 600 simulated samples each):\n")
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
