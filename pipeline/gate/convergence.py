"""The convergence gate: does a model still reach its target accuracy within as many images as it did?

A committed reference (gate.convergence_reference, built by `python -m pipeline.gate reference` from run
records of the per-commit profile under reports/runs/) holds, for each model, the train settings of
those runs, the target, and how many images each seed needed to reach it (read from the held-out curve
the train stage records, pipeline/lib/heldout.py). `gate compare` fails a model whose current run needs
more than `limit_images` of them, or never reaches the target:

    limit_images = slowest reference seed + floor(gate.max_convergence_slowdown x slowest)

all in whole images (images seen are counted at the curve's points, multiples of a quarter epoch in
the profile). A run whose train settings (seed aside), target or held-out images differ from the
reference's is not gated (an advisory row names why): its images are not comparable. The error rates
are measured with real runs in reports/gate-convergence/ (its README: the plan, the arms, the records).
"""

from __future__ import annotations

import glob
import json
import math
import statistics
from fractions import Fraction
from pathlib import Path

import yaml

from pipeline.gate import GateUsageError
from pipeline.gate.report import Row
from pipeline.lib import heldout, metrics, registry
from pipeline.lib.atomic import write_text

DEFAULT_RUNS = "reports/runs/curve-10k-seed*"
MIN_SEEDS = 5  # a reference's slowest seed is a quantile of the seeds' spread: too few seeds and it is too fast
# what must be equal, beyond the metrics contract's train settings (seed aside), for images to compare
CURVE_KEYS = ("target_accuracy", "heldout_images", "evals_per_epoch")


def limit_images(slowest: int, max_slowdown: float) -> int:
    """The most images a run may need: the slowest reference seed's, plus max_slowdown of it (rounded down,
    with max_slowdown as the decimal written in params.yaml)."""
    return slowest + math.floor(Fraction(str(max_slowdown)) * slowest)


def _comparable(record: dict) -> dict:
    """The fields of a train record that must be equal for two runs' images-to-target to be compared."""
    keys = [k for k in metrics.settings("train") if k != "seed"]
    return {k: metrics.value("train", record, k) for k in keys} | {k: record.get(k) for k in CURVE_KEYS}


def _run_records(run_dirs: list[Path], model: str) -> list[tuple[str, dict]]:
    found = []
    for run in run_dirs:
        path = run / "metrics" / f"train-{model}.json"
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GateUsageError(f"{path}: unreadable ({type(exc).__name__})") from None
        if not isinstance(record, dict) or not isinstance(record.get("heldout_curve"), list):
            raise GateUsageError(f"{path}: no heldout_curve: not a run of the train stage with a held-out curve")
        for key in ("seed", "train_images", "heldout_images"):
            if not _count(record.get(key), minimum=0 if key == "seed" else 1):
                raise GateUsageError(f"{path}: {key} is {record.get(key)!r}, not a whole number")
        for i, row in enumerate(record["heldout_curve"]):
            if not isinstance(row, dict) or not all(_count(row.get(k), 0) for k in ("images_seen", "heldout_correct")):
                raise GateUsageError(f"{path}: heldout_curve[{i}] needs whole images_seen and heldout_correct")
        found.append((run.name, record))
    return found


def _count(value, minimum: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def build(run_dirs: list[Path], targets: dict[str, float]) -> dict:
    """The reference of `targets` ({model: target accuracy}) from the run directories' train records: each
    run's images to the target, read from its curve (so a changed target needs no new runs)."""
    models = {}
    for model, target in targets.items():
        runs, first = [], None
        for name, record in _run_records(run_dirs, model):
            reached = heldout.to_target(record["heldout_curve"], target, record["heldout_images"],
                                        record["train_images"])
            fields = _comparable({**record, "target_accuracy": target})
            first = first or (name, fields)
            differ = [k for k in fields if fields[k] != first[1][k]]
            if differ:
                raise GateUsageError(f"{name}: {model} settings differ from {first[0]}'s ({', '.join(differ)}); "
                                     "a reference holds runs of one profile")
            runs.append({"run": name, "seed": record["seed"], "images_to_target": reached["images_to_target"]})
        if not runs:
            continue
        missed = [r["run"] for r in runs if r["images_to_target"] is None]
        if missed:
            raise GateUsageError(f"{model}: target {target} not reached by {', '.join(missed)}; "
                                 "a reference target must be reached by every seed")
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) != len(seeds):
            raise GateUsageError(f"{model}: two runs of one seed in the reference ({sorted(seeds)})")
        if len(seeds) < MIN_SEEDS:
            raise GateUsageError(f"{model}: {len(seeds)} seeds; a reference needs at least {MIN_SEEDS}")
        models[model] = {"settings": first[1], "runs": runs}
    if not models:
        raise GateUsageError(f"no train record of {', '.join(targets)} in {len(run_dirs)} run directories")
    return {"made_with": "python -m pipeline.gate reference", "models": models}


def load(path: Path, missing_ok: bool = False) -> dict | None:
    """The reference at `path`, checked entry by entry (one line naming the key when it is malformed);
    None when there is none and `missing_ok`."""
    try:
        reference = json.loads(Path(path).read_text())
    except FileNotFoundError:
        if missing_ok:
            return None
        raise GateUsageError(f"{path}: no convergence reference; build it with python -m pipeline.gate reference") \
            from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GateUsageError(f"{path}: unreadable convergence reference ({type(exc).__name__})") from None
    if not isinstance(reference, dict) or not isinstance(reference.get("models"), dict):
        raise GateUsageError(f"{path}: not a convergence reference (no models map)")
    for model, entry in reference["models"].items():
        where = f"{path}: models.{model}"
        if not isinstance(entry, dict) or not isinstance(entry.get("settings"), dict):
            raise GateUsageError(f"{where}.settings is missing or not a map")
        runs = entry.get("runs")
        if not isinstance(runs, list) or not runs:
            raise GateUsageError(f"{where}.runs is missing or empty")
        for i, run in enumerate(runs):
            value = run.get("images_to_target") if isinstance(run, dict) else None
            if not _count(value):
                raise GateUsageError(f"{where}.runs[{i}].images_to_target is {value!r}, not a count of images >= 1")
    return reference


def write(path: Path, reference: dict) -> None:
    write_text(path, json.dumps(reference, indent=1) + "\n")


def _images(model_ref: dict) -> list[int]:
    return [r["images_to_target"] for r in model_ref["runs"]]


RECORD_KEYS = ("target_accuracy", "images_to_target", "epochs_to_target", "best_heldout_accuracy")


def verdict(model: str, model_ref: dict | None, record: dict, max_slowdown: float, where: str = "") -> Row:
    """The convergence row of one model's current train record (read from `where`) against its reference entry."""
    metric = f"{model} images_to_target"
    if not record.get("heldout_curve") or "target_reached" not in record:
        return Row(metric, "-", "no held-out curve", "-", "not gated: the run recorded no curve", True, advisory=True)
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise GateUsageError(f"{where or model}: has a held-out curve but no {missing[0]}")
    if record["target_reached"] and not _count(record["images_to_target"]):
        raise GateUsageError(f"{where or model}: images_to_target is {record['images_to_target']!r} with the target "
                             "reached, not a count of images >= 1")
    target = record["target_accuracy"]
    if record["target_reached"]:
        shown = f"{record['images_to_target']} ({record['epochs_to_target']} epochs)"
    else:
        shown = f"not reached (best {record['best_heldout_accuracy']})"
    if model_ref is None:
        return Row(metric, "no reference", shown, "-", "not gated: no reference for this model", True, advisory=True)
    images = _images(model_ref)
    base = f"target {target}: median {statistics.median(images):g}, slowest {max(images)} of {len(images)} seeds"
    differ = [k for k, v in _comparable(record).items() if v != model_ref["settings"].get(k)]
    if differ:
        return Row(metric, base, shown, "-", f"not gated: reference from other settings ({', '.join(differ)})", True,
                   advisory=True)
    limit = limit_images(max(images), max_slowdown)
    if not record["target_reached"]:
        return Row(metric, base, shown, "-", f"<= {limit}", False)
    needed = record["images_to_target"]
    change = f"{needed / max(images) - 1:+.0%} vs slowest"
    return Row(metric, base, shown, change, f"<= {limit}", needed <= limit)


def rows(reference: dict | None, current: dict[str, tuple[str, dict]], max_slowdown: float) -> list[Row]:
    """One row per model of `current` ({model: (its train file's name, its record)}), in that order; with no
    reference at all, each row is advisory."""
    models = reference["models"] if reference else {}
    return [verdict(m, models.get(m), record, max_slowdown, where) for m, (where, record) in current.items()]


def run_dirs(pattern: str) -> list[Path]:
    """The run directories matching `pattern` (a glob, relative to the working directory or absolute), sorted
    by name."""
    found = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "run.yaml").is_file())
    if not found:
        raise GateUsageError(f"no run directories match {pattern}")
    for run in found:
        try:
            yaml.safe_load((run / "run.yaml").read_text())
        except yaml.YAMLError:
            raise GateUsageError(f"{run}/run.yaml: not YAML") from None
    return found


def targets(p) -> dict[str, float]:
    return {m: p.models[m].target_accuracy for m in registry.names()}
