"""How noisy each recorded gate run was, and the gate's error rates in the quieter and the noisier half.

    .venv/bin/python reports/gate-fit-loop/noise.py [DIR]     (from the repository root; DIR default
                                                               reports/gate-fit-loop/d054560)

For every run recorded in DIR/runs.csv (reports/gate-power/run.py's records): the median base time per
batch of each fit loop (how fast the host was), the step noise of the fit loops (the standard deviation of
log(head / base) over the pairs of each worker pair, around that worker pair's own mean, pooled over the
worker pairs and the two fit loops: what is left once the process offsets are taken out), each fit loop's
pooled estimate and the gate's verdict. Writes DIR/noise.csv, then prints, for the runs at or below the
median noise of all runs and for those above it, how many A/A runs failed and how many `loop15` runs were
caught. The split is at the median, not tuned (chosen after the runs were made).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.gate import statistics as gate_statistics  # noqa: E402

FIT_LOOPS = ("sequential fit loop", "parallel fit loop")


def run_noise(record: dict) -> dict:
    row, residuals = {}, []
    for name in FIT_LOOPS:
        sides = record["times"][name]
        groups = list(zip(sides["base"], sides["head"]))
        for base, head in groups:
            logs = np.log(np.asarray(head) / np.asarray(base))
            residuals.extend(logs - logs.mean())
        model = name.split()[0]
        row[f"{model}_base_ms"] = round(float(np.median(np.concatenate([np.asarray(b) for b, _ in groups]))), 1)
        row[f"{model}_estimate"] = round(gate_statistics.pooled_slowdown(groups, record["gate"]["ab_confidence"]).slowdown, 4)
    pairs_per_group = len(record["times"][FIT_LOOPS[0]]["base"][0])
    # ddof: one mean per worker pair and fit loop was taken out of the residuals
    groups_count = len(FIT_LOOPS) * len(record["times"][FIT_LOOPS[0]]["base"])
    row["step_noise"] = round(float(np.sqrt(np.sum(np.square(residuals)) / (len(residuals) - groups_count))), 4)
    row["pairs_per_worker_pair"] = pairs_per_group
    return row


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "d054560"
    runs = pd.read_csv(folder / "runs.csv")
    table = pd.DataFrame([{"kind": r.kind, "run": r.run, "failed": r.failed, "wall_s": r.wall_s,
                           **run_noise(json.loads((folder / r.record).read_text()))} for r in runs.itertuples()])
    table.to_csv(folder / "noise.csv", index=False)
    median = table["step_noise"].median()
    print(f"{len(table)} runs in {folder}; median step noise {median:.3f} (sd of log(head/base) within a worker pair)")
    print("| runs | step noise | A/A failed | loop15 caught | sequential base ms (median) |")
    print("|:---|:---|---:|---:|---:|")
    for label, part in (("quieter half", table[table["step_noise"] <= median]),
                        ("noisier half", table[table["step_noise"] > median])):
        aa, loop = part[part["kind"] == "aa"], part[part["kind"] == "loop15"]
        print(f"| {label} | {part['step_noise'].min():.3f} .. {part['step_noise'].max():.3f} | "
              f"{int(aa['failed'].sum())} / {len(aa)} | {int(loop['failed'].sum())} / {len(loop)} | "
              f"{part['sequential_base_ms'].median():.0f} |")


if __name__ == "__main__":
    main()
