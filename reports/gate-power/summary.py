"""The A/B gate's measured error rates, from the real gate runs in reports/gate-power/runs.csv.

    .venv/bin/python reports/gate-power/summary.py [--dir DIR]     (from the repository root)

Reads DIR/runs.csv (DIR: reports/gate-power, or the --out of run.py), writes DIR/summary.csv and prints the same as a markdown table: per kind of run, how
many runs failed the gate, the rate with its exact (Clopper-Pearson) binomial 95% interval, and the
wall time per run. For A/A runs a failure is a false alarm; for the others it is a detection.

Column `earlier rule`: the same recorded samples judged by the rule this gate had before
(a benchmark failed only if every worker pair, on its own, showed a median slowdown above the
allowance with its bootstrap interval above 0), for comparison.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.gate import statistics as gate_statistics  # noqa: E402

HERE = Path(__file__).parent
ORDER = {"aa": "A/A (identical code)", "slow10": "+10% on the train steps", "slow15": "+15% on the train steps",
         "slow25": "+25% on the train steps", "lstm-impl1": "LSTM implementation=1 (realistic)",
         "loop15": "+15% per batch inside the train stage's loop"}


def earlier_rule_failed(record: dict) -> bool:
    """The earlier gate's verdict on this run's samples: some benchmark regressed in every worker pair."""
    max_slowdown, confidence = record["gate"]["max_slowdown"], record["gate"]["ab_confidence"]
    rng = np.random.default_rng(0)

    def group_regressed(base, head):
        ratios = np.asarray(head) / np.asarray(base)
        boot = np.median(rng.choice(ratios, size=(2000, len(ratios)), replace=True), axis=1)
        return np.median(ratios) - 1 > max_slowdown and np.quantile(boot, (1 - confidence) / 2) > 1

    return any(all(group_regressed(b, h) for b, h in zip(sides["base"], sides["head"]))
               for sides in record["times"].values())


TRAIN_STEPS = ("sequential train step", "parallel train step")
FIT_LOOPS = ("sequential fit loop", "parallel fit loop")  # in runs of gates that have them


def summarize(runs: pd.DataFrame, folder: Path = HERE) -> pd.DataFrame:
    if runs.empty:
        sys.exit(f"{folder / 'runs.csv'}: no runs recorded")
    if runs["base"].nunique() != 1:  # a campaign resumed with another BASE would mix two gates
        sys.exit(f"{folder / 'runs.csv'}: runs of {runs['base'].nunique()} bases ({', '.join(runs['base'].unique())})")
    records = [json.loads((folder / r).read_text()) for r in runs["record"]]
    configs = {json.dumps(r["gate"], sort_keys=True) for r in records}
    if len(configs) != 1:
        sys.exit(f"{folder / 'runs.csv'}: the runs were made with {len(configs)} different gate settings")
    measured = {name: [gate_statistics.pooled_slowdown(list(zip(r["times"][name]["base"], r["times"][name]["head"])),
                                            r["gate"]["ab_confidence"]).slowdown for r in records]
                for name in (*TRAIN_STEPS, *FIT_LOOPS) if all(name in r["times"] for r in records)}
    runs = runs.assign(earlier=[earlier_rule_failed(r) for r in records], **measured)
    rows = []
    for kind, group in runs.groupby("kind", sort=False):
        failed, n = int(group["failed"].sum()), len(group)
        ci = binomtest(failed, n).proportion_ci(confidence_level=0.95, method="exact")
        rows.append({"kind": kind, "runs": ORDER.get(kind, kind), "n": n, "gate_failed": failed,
                     "rate": round(failed / n, 3), "ci95_low": round(ci.low, 3), "ci95_high": round(ci.high, 3),
                     "wall_s_median": round(group["wall_s"].median(), 1), "wall_s_max": round(group["wall_s"].max(), 1),
                     "pairs_median": int(group["pairs"].median()),
                     "earlier_rule_failed": int(group["earlier"].sum()),
                     **{f"{name.split()[0]}_{name.split()[1]}_change_median": round(group[name].median(), 3)
                        for name in measured},
                     **{f"{name.split()[0]}_{name.split()[1]}_failed": int(group["rows_failed"].fillna("").map(
                         lambda failed, name=name: name in failed.split(";")).sum()) for name in measured},
                     "decided_early": int(group["stopped"].str.startswith("decided").sum())})
    table = pd.DataFrame(rows)
    return table.set_index("kind").loc[[k for k in ORDER if k in set(table["kind"])]].reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=HERE, help="where runs.csv and runs/ are (default: this folder)")
    folder = parser.parse_args().dir
    table = summarize(pd.read_csv(folder / "runs.csv"), folder)
    table.to_csv(folder / "summary.csv", index=False)
    shown = table.assign(**{"gate failed": [f"{f} / {n}" for f, n in zip(table.gate_failed, table.n)],
                            "rate [95% CI]": [f"{r:.0%} [{lo:.0%} .. {hi:.0%}]" for r, lo, hi in
                                              zip(table.rate, table.ci95_low, table.ci95_high)],
                            "wall s (median, max)": [f"{m:.0f}, {x:.0f}" for m, x in zip(table.wall_s_median, table.wall_s_max)],
                            "decided early": [f"{d} / {n}" for d, n in zip(table.decided_early, table.n)],
                            "earlier rule": [f"{e} / {n}" for e, n in zip(table.earlier_rule_failed, table.n)]})
    measured = []  # the rows each gate had: train steps (until 68ee5a4), fit loops (from a86c941)
    for what, rows in (("train steps", "train"), ("fit loops", "fit")):
        if f"sequential_{rows}_change_median" in table:
            measured.append(f"{what} measured (median)")
            shown[measured[-1]] = [f"{a:+.1%}, {b:+.1%}" for a, b in zip(
                table[f"sequential_{rows}_change_median"], table[f"parallel_{rows}_change_median"])]
            measured.append(f"{what} failed")
            shown[measured[-1]] = [f"{a} / {n}, {b} / {n}" for a, b, n in zip(
                table[f"sequential_{rows}_failed"], table[f"parallel_{rows}_failed"], table.n)]
    print(shown[["runs", "gate failed", "rate [95% CI]", "wall s (median, max)", "pairs_median", "decided early",
                 "earlier rule", *measured]]
          .rename(columns={"pairs_median": "pairs per benchmark (median)"}).to_markdown(index=False))


if __name__ == "__main__":
    main()
