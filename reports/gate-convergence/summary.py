"""The convergence gate's error rates from the run records of reports/gate-convergence/run.py.

    .venv/bin/python reports/gate-convergence/summary.py [--unchanged GLOB] [--name NAME]   (from the root)

Every verdict is the gate's own (`pipeline.gate.convergence.verdict`, with params.yaml's targets and
gate.max_convergence_slowdown), on each record's held-out curve read at today's target
(`heldout.to_target`, as the train stage reads it):

- false alarms: each unchanged seed (reports/runs/curve-10k-seed*) against a reference built from the
  other unchanged seeds, without it;
- detections: each regression run (reports/gate-convergence/runs/<arm>-seed*) against the reference
  built from every unchanged seed (the committed one, when it holds the same runs).

A run fails when any model's row fails. Rates come with exact (Clopper-Pearson) 95% intervals. Writes
reports/gate-convergence/summary.csv (one row per arm) and runs.csv (one row per run and model), and
prints the summary as a markdown table (with each arm's median images to target per model, a run that
never reached the target counting as the slowest).

`--unchanged GLOB` builds the reference from some of the unchanged seeds only (the plan's ten:
'reports/runs/curve-10k-seed[0-9]'); the other unchanged seeds are then judged against it as one more arm,
"unchanged, not in the reference". `--name NAME` writes summary-NAME.csv and runs-NAME.csv instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from pipeline.gate import convergence  # noqa: E402
from pipeline.lib import heldout, params, registry  # noqa: E402

HERE = Path(__file__).resolve().parent
UNCHANGED = "reports/runs/curve-10k-seed*"


def at_target(record: dict, target: float) -> dict:
    return record | heldout.to_target(record["heldout_curve"], target, record["heldout_images"],
                                      record["train_images"])


def train_records(run: Path) -> dict[str, dict]:
    return {m: json.loads((run / "metrics" / f"train-{m}.json").read_text()) for m in registry.names()}


def interval(k: int, n: int) -> str:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return f"{ci.low:.0%}-{ci.high:.0%}"


def median_images(rows: list[dict]) -> str:
    """The median images to target of some runs, a run that never reached it counting as slowest."""
    values = sorted((r["images_to_target"] is None, r["images_to_target"] or 0) for r in rows)
    middle = values[(len(values) - 1) // 2: len(values) // 2 + 1]
    if any(unreached for unreached, _ in middle):
        return "not reached"
    return f"{sum(v for _, v in middle) / len(middle):,.0f}"


def markdown(summary: list[dict]) -> str:
    models = registry.names()
    head = ["arm", "runs", "failed", "rate (95% interval)", *(f"{m} failed" for m in models),
            *(f"{m} median images" for m in models)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary:
        cells = [row["arm"], row["runs"], row["failed"], f"{row['rate']} ({row['interval_95']})",
                 *(row[f"{m}_failed"] for m in models), *(row[f"{m}_median_images"] for m in models)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unchanged", default=UNCHANGED, help=f"the unchanged seeds' records (default {UNCHANGED})")
    parser.add_argument("--name", default="", help="write summary-NAME.csv and runs-NAME.csv")
    args = parser.parse_args()
    os.chdir(ROOT)
    p = params.load()
    targets = convergence.targets(p)
    slack = p.gate.max_convergence_slowdown
    every_unchanged = convergence.run_dirs(UNCHANGED)
    unchanged = every_unchanged if args.unchanged == UNCHANGED else convergence.run_dirs(args.unchanged)
    arms: dict[str, list[Path]] = {"unchanged": unchanged}
    others = [run for run in every_unchanged if run not in unchanged]
    if others:  # unchanged seeds left out of the reference, judged against it like a regression arm
        arms["unchanged, not in the reference"] = others
    for run in sorted((HERE / "runs").glob("*-seed*")):
        arms.setdefault(run.name.rsplit("-seed", 1)[0], []).append(run)
    everyone = convergence.build(unchanged, targets)
    per_run, summary = [], []
    for arm, runs in arms.items():
        failed = 0
        for run in runs:
            reference = convergence.build([u for u in unchanged if u != run], targets) if arm == "unchanged" \
                else everyone
            records = train_records(run)
            rows = {m: convergence.verdict(m, reference["models"].get(m), at_target(records[m], targets[m]), slack)
                    for m in registry.names()}
            failed += any(not r.passed for r in rows.values())
            for m, row in rows.items():
                reached = at_target(records[m], targets[m])
                per_run.append({"arm": arm, "run": run.name, "seed": records[m]["seed"], "model": m,
                                "images_to_target": reached["images_to_target"],
                                "limit": row.allowed, "verdict": "pass" if row.passed else "FAIL",
                                "final_heldout_accuracy": records[m]["heldout_curve"][-1]["heldout_accuracy"]})
        mine = {m: [r for r in per_run if r["arm"] == arm and r["model"] == m] for m in registry.names()}
        summary.append({"arm": arm, "runs": len(runs), "failed": failed, "rate": f"{failed / len(runs):.0%}",
                        "interval_95": interval(failed, len(runs)),
                        **{f"{m}_failed": sum(r["verdict"] == "FAIL" for r in mine[m]) for m in registry.names()},
                        **{f"{m}_median_images": median_images(mine[m]) for m in registry.names()}})
    suffix = f"-{args.name}" if args.name else ""
    for name, rows in ((f"runs{suffix}.csv", per_run), (f"summary{suffix}.csv", summary)):
        with open(HERE / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(f"targets {targets}, max_convergence_slowdown {slack}, unchanged seeds {args.unchanged} ({len(unchanged)})")
    for m, ref in everyone["models"].items():
        images = [r["images_to_target"] for r in ref["runs"]]
        print(f"{m}: unchanged images to target {sorted(images)}; limit {convergence.limit_images(max(images), slack)}")
    print(markdown(summary))


if __name__ == "__main__":
    main()
