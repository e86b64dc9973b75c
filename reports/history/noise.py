"""The history page's noise floor and its detector's error rates, from recorded runs of identical code.

    .venv/bin/python reports/history/noise.py      -> reports/history/noise.csv, detector.csv

The data: the 70 A/B-gate records in reports/gate-power/runs (runs.csv gives their order, which is the
order they ran in over several hours). Their base side is always the same commit (74f8242), measured by
fresh worker processes in each record, so the base side's median step time per benchmark is a run-to-run
series of identical code: what `pipeline.history` sees when nothing changed. The head side of the
`slowN` records is that code made N% slower in the two train steps: what it sees after a real slowdown.

- noise.csv: per benchmark, the relative sample standard deviation of the 70 run medians (the floor
  `history_detect.NOISE_FLOOR_REL` is the largest, rounded up).
- detector.csv: `history_detect.detect` applied as on the page (same LOOKBACK, MIN_LOOKBACK and floor, at each z threshold in
  THRESHOLDS):
  false alarms over the null series (each run judged against the runs before it), and detections of
  each slowN head judged against the LOOKBACK base runs before it; Clopper-Pearson 95% intervals.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import beta

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from pipeline.history import detect as history_detect, read as history_read  # noqa: E402

RECORDS = HERE.parent / "gate-power"
TRAIN_STEPS = ("sequential train step", "parallel train step")
THRESHOLDS = (2.5, 3.0, 3.5, 4.0, 5.0)  # the page uses history_detect.Z_THRESHOLD; the others show the trade-off


def interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    a = (1 - confidence) / 2
    return (0.0 if k == 0 else beta.ppf(a, k, n - k + 1), 1.0 if k == n else beta.ppf(1 - a, k + 1, n - k))


def run_median(times: list[list[float]]) -> float:
    return float(np.median(np.concatenate([np.asarray(t, dtype=float) for t in times])))


def judged(window: list[float], value: float) -> bool:
    """`history_detect.detect` on the window followed by `value`: is the last point marked?"""
    measure = next(m for m in history_read.MEASURES if m.key == "step_time_ms")
    series = [history_read.Point("step_time_ms", "m", i, "", "", "", v, None, (), None) for i, v in enumerate([*window, value])]
    history_detect.detect(series, measure)
    return series[-1].changed


def main() -> None:
    runs = list(csv.DictReader(open(RECORDS / "runs.csv")))
    records = [(row["kind"], json.loads((RECORDS / row["record"]).read_text())) for row in runs]
    benchmarks = list(records[0][1]["times"])
    base = {b: [run_median(rec["times"][b]["base"]) for _, rec in records] for b in benchmarks}
    noise = pd.DataFrame([{"benchmark": b, "runs": len(v), "median_ms": np.median(v),
                           "relative_sd": np.std(v, ddof=1) / np.mean(v)} for b, v in base.items()])
    noise.to_csv(HERE / "noise.csv", index=False, float_format="%.4f")
    rows = []
    for z in THRESHOLDS:
        history_detect.Z_THRESHOLD = z
        found = rates(records, base)
        null = [r for r in found if r["case"] == "identical code"]
        k, n = sum(r["marked"] for r in null), sum(r["judged"] for r in null)
        found.append({"benchmark": "all six", "case": "identical code", "judged": n, "marked": k, "rate": k / n,
                      "low": interval(k, n)[0], "high": interval(k, n)[1]})
        rows += [{"z_threshold": z, **row} for row in found]
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "detector.csv", index=False, float_format="%.3f")
    print(noise.to_string(index=False))
    print(table.to_string(index=False))


def rates(records, base) -> list[dict]:
    rows = []
    for b, series in base.items():
        alarms = sum(judged(series[max(0, i - history_detect.LOOKBACK):i], series[i])
                     for i in range(history_detect.MIN_LOOKBACK, len(series)))
        n = len(series) - history_detect.MIN_LOOKBACK
        rows.append({"benchmark": b, "case": "identical code", "judged": n, "marked": alarms,
                     "rate": alarms / n, "low": interval(alarms, n)[0], "high": interval(alarms, n)[1]})
    for kind in sorted({k for k, _ in records if k.startswith("slow")}):
        for b in TRAIN_STEPS:
            hits = n = 0
            for i, (k, rec) in enumerate(records):
                if k != kind or i < history_detect.MIN_LOOKBACK:
                    continue
                n += 1
                hits += judged(base[b][max(0, i - history_detect.LOOKBACK):i], run_median(rec["times"][b]["head"]))
            rows.append({"benchmark": b, "case": f"{kind[4:]}% slower", "judged": n, "marked": hits,
                         "rate": hits / n, "low": interval(hits, n)[0], "high": interval(hits, n)[1]})
    return rows


if __name__ == "__main__":
    main()
