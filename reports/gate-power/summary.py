"""The A/B gate's measured error rates, from the real gate runs in reports/gate-power/runs.csv.

    .venv/bin/python reports/gate-power/summary.py      (from the repository root)

Writes reports/gate-power/summary.csv and prints the same as a markdown table: per kind of run, how
many runs failed the gate, the rate with its exact (Clopper-Pearson) binomial 95% interval, and the
wall time per run. For A/A runs a failure is a false alarm; for the others it is a detection.
"""

from pathlib import Path

import pandas as pd
from scipy.stats import binomtest

HERE = Path(__file__).parent
ORDER = {"aa": "A/A (identical code)", "slow10": "+10% on the train steps", "slow15": "+15% on the train steps",
         "slow25": "+25% on the train steps", "lstm-impl1": "LSTM implementation=1 (realistic)"}


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for kind, group in runs.groupby("kind", sort=False):
        failed, n = int(group["failed"].sum()), len(group)
        ci = binomtest(failed, n).proportion_ci(confidence_level=0.95, method="exact")
        rows.append({"kind": kind, "runs": ORDER.get(kind, kind), "n": n, "gate_failed": failed,
                     "rate": round(failed / n, 3), "ci95_low": round(ci.low, 3), "ci95_high": round(ci.high, 3),
                     "wall_s_median": round(group["wall_s"].median(), 1), "wall_s_max": round(group["wall_s"].max(), 1),
                     "pairs_median": int(group["pairs"].median()),
                     "decided_early": int(group["stopped"].str.startswith("decided").sum())})
    table = pd.DataFrame(rows)
    return table.set_index("kind").loc[[k for k in ORDER if k in set(table["kind"])]].reset_index()


def main() -> None:
    table = summarize(pd.read_csv(HERE / "runs.csv"))
    table.to_csv(HERE / "summary.csv", index=False)
    shown = table.assign(**{"gate failed": [f"{f} / {n}" for f, n in zip(table.gate_failed, table.n)],
                            "rate [95% CI]": [f"{r:.0%} [{lo:.0%} .. {hi:.0%}]" for r, lo, hi in
                                              zip(table.rate, table.ci95_low, table.ci95_high)],
                            "wall s (median, max)": [f"{m:.0f}, {x:.0f}" for m, x in zip(table.wall_s_median, table.wall_s_max)],
                            "decided early": [f"{d} / {n}" for d, n in zip(table.decided_early, table.n)]})
    print(shown[["runs", "gate failed", "rate [95% CI]", "wall s (median, max)", "pairs_median", "decided early"]]
          .rename(columns={"pairs_median": "pairs per benchmark (median)"}).to_markdown(index=False))


if __name__ == "__main__":
    main()
