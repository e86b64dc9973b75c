"""Rebuild, as run directories, the runs whose DVC experiment refs and branches were lost.

    .venv/bin/python reports/runs/reconstruct.py      (once; its output is committed beside it)

The runs behind reports/seeds.md were DVC experiments and branches of one checkout; their refs never
reached main, and that checkout is gone. What main kept of them:

- reports/seeds-runs.csv at SOURCE_COMMIT: one row per run, with the settings its metrics files
  recorded, its seed and test accuracy, its experiment name, commit and time;
- reports/plots/protocol-parallel-{loss,accuracy}/index.html at SOURCE_COMMIT: `dvc plots diff` pages
  whose Vega data are the per-epoch curves (plots/train-parallel.csv) of the three 10-epoch parallel runs;
- reports/plots/grad_norm_conv/index.html at SOURCE_COMMIT: a `dvc plots diff` page of the collapse
  study's runs, one chart per plots/collapse/<arm>-seed<k>.csv, whose Vega data hold every probe column.

A row that a run exported from git (pipeline.runs export) also holds, with the same settings, seed and
accuracy, is left to that run: some experiments carried along results of commits on main.

Each experiment becomes reports/runs/<name>/ with run.yaml (`reconstructed: true`, its sources and what
is missing), the metrics files holding what the record establishes (settings, seed, test accuracy) and,
where a page kept them, the per-epoch curves. Nothing is invented: a field the record lacks is absent.
"""

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
# The folders are named for what they hold, not for the generated experiment names.
NAMES = {"sewed-tola": "collapse-clipped-raw-e894c4f", "metal-rial": "collapse-clipped-unit-22805d7",
         "nosed-juba": "tutorial-parallel-seed2"}
SOURCE_COMMIT = "1987d70"
TRAIN_FIELDS = ("model", "normalize", "train_images", "epochs", "batch_size", "learning_rate", "loss", "backend",
                "keras_version", "device_name", "replicas")
CURVES = "reports/plots/protocol-parallel-loss/index.html"
PROBES = "reports/plots/grad_norm_conv/index.html"
KEY = ("source", "model", "normalize", "train_images", "epochs", "loss", "keras_version", "seed", "test_accuracy")


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


def probes() -> dict[tuple[str, str], list[dict]]:
    """(experiment, plots/collapse/<arm>-seed<k>.csv) -> its probe rows, from the page's per-file charts."""
    page = show(PROBES)
    found: dict[tuple[str, str], list[dict]] = {}
    pending = None  # in each chart's spec, the data come before the title naming the file
    for match in re.finditer(r'"title": \{"text": "([^"]+)"|"values": (\[.*?\])', page, re.S):
        if match.group(2):
            pending = json.loads(match.group(2))
            continue
        for row in pending or []:
            found.setdefault((row["rev"], match.group(1)), []).append({k: v for k, v in row.items() if k != "rev"})
        pending = None
    return found


def exported_rows() -> set[tuple]:
    """The rows that runs exported from git hold (not rebuilt ones)."""
    root = HERE.parent.parent
    sys.path.insert(0, str(root))
    from pipeline import report, runs
    from pipeline.lib import params
    genuine = [run for run in runs.load(HERE)
               if not yaml.safe_load((HERE / run["name"] / "run.yaml").read_text()).get("reconstructed")]
    table = report.runs(genuine, params.load(root / "params.yaml").paths)
    return {tuple(str(row[k]) for k in KEY) for _, row in table.iterrows()}


def main() -> None:
    rows = list(csv.DictReader(io.StringIO(show("reports/seeds-runs.csv"))))
    for old in HERE.glob("*/run.yaml"):
        if yaml.safe_load(old.read_text()).get("reconstructed"):
            shutil.rmtree(old.parent)
    epochs_of, probes_of, exported = curves(), probes(), exported_rows()
    by_experiment: dict[str, list[dict]] = {}
    for row in rows:
        if tuple(str(number(row[k]) if k in ("train_images", "epochs", "seed", "test_accuracy") else row[k]) for k in KEY) in exported:
            continue
        by_experiment.setdefault(row["experiment"], []).append(row)
    for experiment, found in by_experiment.items():
        name = NAMES.get(experiment, experiment.replace("/", "-"))
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
                path = f"plots/collapse/{arm}-seed{row['seed']}.csv"
                if (experiment, path) in probes_of:
                    plots[path] = probes_of[(experiment, path)]
                else:
                    missing.append(f"{path} (probe curve)")
        where.mkdir(exist_ok=True)
        for path, data in metrics.items():
            (where / path).parent.mkdir(parents=True, exist_ok=True)
            (where / path).write_text(json.dumps(data, indent=2) + "\n")
        for path, table in plots.items():
            (where / path).parent.mkdir(parents=True, exist_ok=True)
            with open(where / path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(sorted(table, key=lambda r: int(r.get("step", r.get("epoch")))))
        record = {"name": name, "experiment": experiment, "rev": found[0]["rev"], "baseline": None,
                  "timestamp": found[0]["timestamp"], "reconstructed": True,
                  "sources": [f"{SOURCE_COMMIT}:reports/seeds-runs.csv"]
                  + [f"{SOURCE_COMMIT}:{page}" for page, prefix in ((CURVES, "plots/train-"), (PROBES, "plots/collapse/"))
                     if any(p.startswith(prefix) for p in plots)],
                  "missing": ["params.yaml and dvc.lock (the settings columns of the metrics files are what is known)",
                              *sorted(set(missing))],
                  "files": sorted([*metrics, *plots])}
        (where / "run.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
        print(f"{where.relative_to(HERE.parent.parent)}: {len(found)} runs, {len(plots)} curves")


if __name__ == "__main__":
    main()
