"""Aggregate runs over seeds: test accuracy mean +- std per model and setting.

    python -m pipeline.report --runs reports/runs [--out reports/seeds]    (make report)
    python -m pipeline.report [--all-commits] [--out reports/seeds]         (DVC experiments, before export)

`--runs DIR` reads the runs exported under DIR (pipeline/runs.py: each run's params, metrics and curves
committed on main), so reports/seeds.md is rebuilt from files that every clone has. Without it, the
report reads DVC experiments directly, which only the checkout that ran them can list.

Multi-seed runs are plain DVC experiments (docs/experiments.md, "Several seeds"):

    dvc exp run --queue evaluate@parallel -S 'train.seed=range(0,3)'   # one experiment per seed
    dvc exp run --queue studies/dvc.yaml:collapse -S preprocess.normalize=unit  # the study seeds itself
    dvc queue start -j 1                                                 # -j N: N at once
    python -m pipeline.report

The report reads every experiment and commit that `dvc exp show --json` lists (`--all-commits`: of
every commit, not only HEAD's) and takes each run's settings from its own metrics files, which record
what produced them, so an experiment that retrained one model does not count the other model's
unchanged metrics as a new run. Rows are one per (setting, seed); when the same seed of a setting
appears more than once, the newest counts. A train-stage run needs `train-<model>.json` and either
`evaluate-<model>.json` or a held-out curve in its train record, whose last point is the same score of the
same test images (pipeline/lib/heldout.py); each seed of the `collapse` stage is a run of its own,
labelled with its arm (keras3, keras2).

Time to target: for the runs whose train record holds a held-out curve, the epochs each seed needed to
reach params.yaml's `models.<model>.target_accuracy`, read from its curve (so every run is read at the
same target, whatever target it recorded), as mean +- sd over the seeds with the fastest and slowest
seed; a seed that never reached it is counted apart (`not_reached`). Runs of the tutorial's protocol
are read at the tutorial's own reported accuracy instead, where the tutorial's run learned (a reported
accuracy of at least params.COLLAPSED_BELOW): when do we first reach what it reported?

Writes `<out>.md` (the table), `<out>.csv` (the same numbers) and `<out>-runs.csv` (one row per run).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd

from pipeline import runs as exported

from pipeline.lib import cli, heldout, metrics, params, registry
from pipeline.lib.atomic import write_text
from pipeline.lib.params import PipelineError

# Runs pool over seeds only when everything else is equal: the metrics contract's settings of the train
# stage and the collapse study (the train runs' test-image count is their evaluate file's), and the environment.
SETTING = ["model", "source", *dict.fromkeys(k for kind in ("train", "collapse") for k in metrics.settings(kind)
                                             if k not in ("model", "seed", "seeds")),
           *metrics.environment("train")]


def experiments(all_commits: bool) -> list[dict]:
    """(name, rev, timestamp, metrics by file) of every committed baseline and experiment."""
    cmd = ["dvc", "exp", "show", "--json", "--no-fetch"] + (["--all-commits"] if all_commits else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise PipelineError(
            f"cannot run {cmd[0]}: {exc.strerror} (is the venv's bin on PATH? `make report` sets it)"
        ) from None
    if done.returncode != 0:
        raise PipelineError(f"{' '.join(cmd)} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    found = []

    def add(entry):
        data = entry.get("data") or {}
        if entry.get("rev") != "workspace" and data.get("metrics"):
            found.append({"name": entry.get("name") or entry["rev"][:7], "rev": entry["rev"],
                          "timestamp": data.get("timestamp") or "",
                          "metrics": {f: (m or {}).get("data") or {} for f, m in data["metrics"].items()}})

    for baseline in json.loads(done.stdout):
        add(baseline)
        for group in baseline.get("experiments") or []:
            for entry in group.get("revs") or []:
                add(entry)
    return found


def runs(found: list[dict], paths: params.Paths, targets: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per (setting, seed): the train stages' runs and the collapse stage's seeds; `targets` ({model:
    target accuracy}, params.yaml's) are what the runs' curves are read at (none: no time to target)."""
    targets = targets or {}
    rows = []
    for exp in found:
        try:
            rows += _rows(exp, paths, targets)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise PipelineError(f"run {exp['name']} ({exp['rev'][:7]}): its metrics files lack what the report "
                                f"needs ({type(exc).__name__}: {exc})") from None
    table = pd.DataFrame(rows, columns=[*SETTING, "seed", "test_accuracy", "heldout_images", "target_accuracy",
                                        "epochs_to_target", "experiment", "rev", "timestamp"])
    table = table.sort_values("timestamp").drop_duplicates([*SETTING, "seed"], keep="last")
    return table.sort_values([*SETTING, "seed"]).reset_index(drop=True)


def _time_to_target(trained: dict, target: float | None) -> dict:
    """The epochs a train record's curve took to `target` (NaN: not reached; absent: no curve). Without the
    curve (`dvc exp show` leaves lists out of metrics), the record's own time to target, if it timed `target`."""
    curve = trained.get("heldout_curve")
    if target is None or curve == []:  # an empty curve: a run across several processes scored nothing
        return {}
    if curve:
        reached = heldout.to_target(curve, target, trained["heldout_images"], trained["train_images"])
    elif trained.get("target_accuracy") == target and "target_reached" in trained:
        reached = trained
    else:
        return {}
    return {"heldout_images": trained["heldout_images"], "target_accuracy": target,
            "epochs_to_target": reached["epochs_to_target"] if reached["target_reached"] else float("nan")}


def _rows(exp: dict, paths: params.Paths, targets: dict[str, float]) -> list[dict]:
    """One run's rows: its train stages' runs and its collapse study's seeds."""
    rows = []
    m = exp["metrics"]
    where = {"experiment": exp["name"], "rev": exp["rev"][:7], "timestamp": exp["timestamp"]}
    for name in registry.names():
        trained, scored = m.get(str(paths.train_metrics(name))), m.get(str(paths.evaluate_metrics(name)))
        if not trained:
            continue
        if scored and "test_accuracy" in scored:
            accuracy, images = scored["test_accuracy"], metrics.value("evaluate", scored, "test_images")
        elif trained.get("heldout_curve"):
            # the final model on the test images
            accuracy, images = trained["heldout_curve"][-1]["heldout_accuracy"], trained["heldout_images"]
        else:
            continue
        settings = {k: metrics.value("train", trained, k) for k in SETTING[2:]} | {"test_images": images}
        target = targets.get(name)
        if tutorial_protocol(name, **{k: settings[k] for k in TUTORIAL_KEYS}) \
                and REPORTED_ACCURACY[name] >= params.COLLAPSED_BELOW:
            target = REPORTED_ACCURACY[name]
        rows.append({"model": name, "source": f"train-{name}", "seed": trained["seed"], **settings,
                     "test_accuracy": accuracy, **_time_to_target(trained, target), **where})
    study = m.get(str(paths.collapse_metrics))
    for arm in params.COLLAPSE_ARMS if study else ():
        for seed, run in (study.get(arm) or {}).get("per_seed", {}).items():
            rows.append({"model": study["model"], "source": f"collapse {arm}", "seed": int(seed),
                         **{k: metrics.value("collapse", study, k) for k in SETTING[2:]},
                         "keras_version": study[arm]["keras_version"],
                         "test_accuracy": run["test_accuracy"], **where})
    return rows


REPORTED_ACCURACY = {name: m.reported.accuracy for name, m in registry.MODELS.items() if m.reported}
REPORTED_EPOCHS = {name: m.reported.epochs for name, m in registry.MODELS.items() if m.reported}
TUTORIAL_KEYS = ("normalize", "loss", "train_images", "epochs")


def tutorial_protocol(model, normalize, loss, train_images, epochs):
    """Whether a run (or, given Series, each row) follows the tutorial's protocol for `model`: raw pixels,
    the logit-based loss (docs/findings.md), all 50,000 images, the reported epochs."""
    reported = REPORTED_EPOCHS.get(model) if isinstance(model, str) else model.map(REPORTED_EPOCHS)
    return (normalize == "raw") & (loss == "crossentropy") & (train_images == 50_000) & (epochs == reported)


def time_to_target(rows: pd.DataFrame) -> pd.Series:
    """Epochs to target over the seeds of one setting that recorded a curve: mean +- sd, fastest, slowest."""
    curved = rows[rows["target_accuracy"].notna()]
    reached = curved[curved["epochs_to_target"].notna()].sort_values(["epochs_to_target", "seed"])
    epochs = reached["epochs_to_target"]
    shown = {1: f"{epochs.mean():.2f} (1 seed)"}.get(len(epochs), f"{epochs.mean():.2f} ± {epochs.std():.2f} "
                                                                   f"({len(epochs)} seeds)")
    ends = [f"{e:g} (seed {int(s)})" for e, s in zip(reached["epochs_to_target"], reached["seed"])]
    return pd.Series({
        "target": f"{curved['target_accuracy'].iloc[0]:g}" if len(curved) else "",
        "epochs_to_target": shown if len(epochs) else "" if curved.empty else "-",
        "fastest": ends[0] if ends else "", "slowest": ends[-1] if ends else "",
        "not_reached": str(len(curved) - len(reached)) if len(curved) else "",
    })


def aggregate(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std, min and max test accuracy over seeds; collapsed = runs below params.COLLAPSED_BELOW."""
    grouped = table.groupby(SETTING, dropna=False)
    summary = grouped["test_accuracy"].agg(runs="count", mean="mean", std="std", min="min", max="max")
    summary["collapsed"] = grouped["test_accuracy"].apply(lambda a: int((a < params.COLLAPSED_BELOW).sum()))
    summary["seeds"] = grouped["seed"].apply(lambda s: ",".join(str(int(v)) for v in sorted(s)))
    summary = summary.join(grouped[["seed", "target_accuracy", "epochs_to_target"]].apply(time_to_target))
    summary = summary.reset_index()
    tutorial = summary["source"].str.startswith("train-") & tutorial_protocol(
        summary["model"], *(summary[k] for k in TUTORIAL_KEYS))
    summary["tutorial"] = summary["model"].map(REPORTED_ACCURACY).where(tutorial)
    return summary


def markdown(summary: pd.DataFrame) -> str:
    shown = summary.assign(
        test_accuracy=[
            f"{m:.4f} ± {s:.4f}" if pd.notna(s) else f"{m:.4f}" for m, s in zip(summary["mean"], summary["std"])
        ],
        range=[f"{lo:.4f} .. {hi:.4f}" for lo, hi in zip(summary["min"], summary["max"])],
        tutorial=summary["tutorial"].map(lambda v: "" if pd.isna(v) else f"{v:.4f}"),
    )
    columns = [
        "model",
        "source",
        "normalize",
        "train_images",
        "epochs",
        "learning_rate",
        "loss",
        "keras_version",
        "backend",
        "device_name",
        "replicas",
        "runs",
        "seeds",
        "test_accuracy",
        "range",
        "collapsed",
        "tutorial",
        "target",
        "epochs_to_target",
        "fastest",
        "slowest",
        "not_reached",
    ]
    return shown[columns].to_markdown(index=False, disable_numparse=True) + "\n"


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m pipeline.report", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/seeds"), help="output prefix (default reports/seeds)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--runs", type=Path, help="read the runs exported under this directory (reports/runs)")
    source.add_argument("--all-commits", action="store_true", help="experiments of every commit, not only HEAD's")
    args = parser.parse_args(argv)
    p = params.load()
    if args.runs and not args.runs.is_dir():
        raise PipelineError(f"--runs {args.runs}: no such directory")
    targets = {m: p.models[m].target_accuracy for m in registry.names()}
    table = runs(exported.load(args.runs) if args.runs else experiments(args.all_commits), p.paths, targets)
    if table.empty:
        raise PipelineError(
            "no run has train-<model>.json with evaluate-<model>.json or a held-out curve, or collapse.json; "
            "run some first (dvc exp run)" + (f" and export them into {args.runs}" if args.runs else "")
        )
    summary = aggregate(table)
    text = markdown(summary)
    for suffix, content in ((".md", text), (".csv", summary.to_csv(index=False)),
                            ("-runs.csv", table.to_csv(index=False))):
        write_text(args.out.parent / (args.out.name + suffix), content)
    cli.emit(text, end="")
    cli.emit(f"report: {len(table)} runs in {len(summary)} settings -> {args.out}.md, .csv, -runs.csv")


if __name__ == "__main__":
    cli.main(main)
