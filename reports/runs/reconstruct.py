"""Rebuild, as run directories, the runs whose DVC experiment refs and branches were lost.

    .venv/bin/python reports/runs/reconstruct.py      (once; its output is committed beside it)

The runs behind reports/seeds.md were DVC experiments and branches of one checkout; their refs never
reached main, and that checkout is gone. What main kept of them:

- reports/seeds-runs.csv at SOURCE_COMMIT: one row per run, with the settings its metrics files
  recorded, its seed and test accuracy, its experiment name, commit and time;
- reports/plots/protocol-parallel-{loss,accuracy}/index.html at SOURCE_COMMIT: `dvc plots diff` pages
  whose Vega data are the per-epoch curves (plots/train-parallel.csv) of the three 10-epoch parallel runs.

Each experiment becomes reports/runs/<name>/ with run.yaml (`reconstructed: true`, its sources and what
is missing), the metrics files holding what the record establishes (settings, seed, test accuracy) and,
where a page kept them, the per-epoch curves. Nothing is invented: a field the record lacks is absent.
"""

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE_COMMIT = "1987d70"
TRAIN_FIELDS = ("model", "normalize", "train_images", "epochs", "batch_size", "learning_rate", "loss", "backend",
                "keras_version", "device_name", "replicas")
CURVES = "reports/plots/protocol-parallel-loss/index.html"


def show(path: str) -> str:
    return subprocess.run(["git", "show", f"{SOURCE_COMMIT}:{path}"], capture_output=True, text=True, check=True,
                          cwd=HERE).stdout


def number(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def curves() -> dict[str, list[dict]]:
    values = json.loads(re.search(r'"values": (\[.*?\])', show(CURVES), re.S).group(1))
    by_rev: dict[str, list[dict]] = {}
    for row in values:
        by_rev.setdefault(row["rev"], []).append({k: row[k] for k in ("epoch", "loss", "accuracy", "epoch_seconds")})
    return by_rev


def main() -> None:
    rows = list(csv.DictReader(io.StringIO(show("reports/seeds-runs.csv"))))
    epochs_of = curves()
    by_experiment: dict[str, list[dict]] = {}
    for row in rows:
        if row["experiment"] != "main":  # a commit on main: exported from git (pipeline.runs export)
            by_experiment.setdefault(row["experiment"], []).append(row)
    for experiment, found in by_experiment.items():
        name = experiment.replace("/", "-")
        where = HERE / name
        metrics, plots, missing = {}, {}, []
        for row in found:
            settings = {k: number(row[k]) if k not in ("model", "normalize", "loss", "backend", "keras_version", "device_name") else row[k]
                        for k in TRAIN_FIELDS}
            if row["source"].startswith("train-"):
                model = row["model"]
                metrics[f"metrics/train-{model}.json"] = {**settings, "seed": int(row["seed"])}
                metrics[f"metrics/evaluate-{model}.json"] = {"model": model, "test_accuracy": float(row["test_accuracy"])}
                if experiment in epochs_of and model == "parallel":
                    plots[f"plots/train-{model}.csv"] = epochs_of[experiment]
                else:
                    missing.append(f"plots/train-{model}.csv (per-epoch curves)")
                missing.append(f"the other fields of metrics/train-{model}.json and metrics/evaluate-{model}.json")
            else:
                arm = row["source"].split()[-1]
                study = metrics.setdefault("metrics/collapse.json", {k: v for k, v in settings.items() if k != "keras_version"})
                study.setdefault(arm, {"keras_version": row["keras_version"], "per_seed": {}})
                study[arm]["per_seed"][row["seed"]] = {"test_accuracy": float(row["test_accuracy"])}
                missing.append(f"plots/collapse/{arm}-seed{row['seed']}.csv (probe curves; reports/plots/ kept one seed's)")
        where.mkdir(exist_ok=True)
        for path, data in metrics.items():
            (where / path).parent.mkdir(parents=True, exist_ok=True)
            (where / path).write_text(json.dumps(data, indent=2) + "\n")
        for path, table in plots.items():
            (where / path).parent.mkdir(parents=True, exist_ok=True)
            with open(where / path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(sorted(table, key=lambda r: int(r["epoch"])))
        record = {"name": name, "experiment": experiment, "rev": found[0]["rev"], "baseline": None,
                  "timestamp": found[0]["timestamp"], "reconstructed": True,
                  "sources": [f"{SOURCE_COMMIT}:reports/seeds-runs.csv"] + ([f"{SOURCE_COMMIT}:{CURVES}"] if plots else []),
                  "missing": ["params.yaml and dvc.lock (the settings columns of the metrics files are what is known)",
                              *sorted(set(missing))],
                  "files": sorted([*metrics, *plots])}
        (where / "run.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
        print(f"{where.relative_to(HERE.parent.parent)}: {len(found)} runs, {len(plots)} curves")


if __name__ == "__main__":
    main()
