"""Time budget against power, simulated on the gate's own recorded noise.

    .venv/bin/python reports/gate-power/tradeoff.py      (from the repository root)

For each worker-process count and measuring budget, 200 simulated gate runs (tests/gate_sim.py: the real
sampling loop, interval and verdict, with offsets and step noise drawn from the recorded A/A runs in
reports/gate-power/runs) per true slowdown of the train steps: 0 (A/A, all six rows can false-alarm),
+10%, +15% and +25%. The expected wall time adds a start-up scaled from the real runs (runs.csv, all at
one worker count): their median start-up per worker, times the setting's worker count. Writes
tradeoff.csv and prints it as markdown. The real runs (summary.py) are the measurement; this is the curve between them.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.gate import command as gate_command  # noqa: E402
from tests import gate_sim  # noqa: E402

HERE = Path(__file__).parent
SLOWDOWNS = (0.0, 0.10, 0.15, 0.25)
RUNS = 200
TRAIN_STEPS = ["sequential train step", "parallel train step"]


def main() -> None:
    noise = gate_sim.recorded_noise()
    runs = pd.read_csv(HERE / "runs.csv")
    records = [json.loads((HERE / r).read_text()) for r in runs["record"]]
    measured_with = {r["gate"]["ab_processes"] for r in records}
    assert len(measured_with) == 1, f"runs.csv mixes worker counts {measured_with}"
    # start-up is spent starting 2 * processes workers on the machine's cores: scale per worker
    startup_per_worker = runs["warmup_s"].median() / (2 * measured_with.pop())
    names = sorted(noise.offsets)
    rows = []
    for processes in (2, 3, 4):
        for budget in (20, 30, 40, 60):
            cfg = gate_command.with_overrides({"gate.ab_processes": processes, "gate.ab_budget_s": budget,
                                       "gate.ab_min_pairs": max(12, 3 * processes)}, ROOT / "params.yaml").gate
            row = {"processes": processes, "budget_s": budget}
            measured = []
            for slowdown in SLOWDOWNS:
                rng = np.random.default_rng(int(slowdown * 100) + processes * 1000 + budget)
                results = [gate_sim.run_gate(noise, names, {n: slowdown for n in TRAIN_STEPS}, cfg, rng)
                           for _ in range(RUNS)]
                measured += [seconds for _, _, seconds in results]
                key = "false_alarm" if slowdown == 0 else f"detect_{round(slowdown * 100)}"
                row[key] = round(float(np.mean([failed for failed, _, _ in results])), 3)
            row["expected_wall_s"] = round(startup_per_worker * 2 * processes + float(np.mean(measured)), 1)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "tradeoff.csv", index=False)
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
