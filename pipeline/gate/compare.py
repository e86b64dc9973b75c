"""`gate compare`: the current run's metrics against a baseline's, accuracy gated in correctly classified
images, timing advisory; the metrics files it reads and the settings that make two runs comparable."""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction
from pathlib import Path

from pipeline.lib import metrics, params, registry
from pipeline.gate import GateUsageError
from pipeline.gate.report import Row
from pipeline.lib.gitcmd import git


# A median's standard error is about 1.2533 * sigma / sqrt(n) for normal noise, and sigma is about
# IQR / 1.349: the conversion used for the spread that the metrics record.
MEDIAN_SE_PER_IQR = 1.2533 / 1.349


@dataclasses.dataclass(frozen=True)
class Timing:
    """A median step time in ms with its spread, as the metrics record them."""

    median_ms: float
    iqr_ms: float
    n: int

    @property
    def standard_error_ms(self) -> float:
        return MEDIAN_SE_PER_IQR * self.iqr_ms / math.sqrt(max(self.n, 1))


@dataclasses.dataclass(frozen=True)
class Scored:
    """A test accuracy as the count behind it: `correct` of `images` test images."""

    correct: int
    images: int

    @property
    def accuracy(self) -> Fraction:
        return Fraction(self.correct, self.images)


def allowed_drop_images(max_drop: float, images: int) -> int:
    """How many correct images a model may lose: max_drop x images, rounded down, with max_drop taken as
    the decimal written in params.yaml (0.03 is 3/100, not the float nearest to it)."""
    return math.floor(Fraction(str(max_drop)) * images)


def accuracy_verdict(metric: str, baseline: Scored, current: Scored, max_drop: float) -> Row:
    """Fail when accuracy falls by more than `max_drop` (absolute); a rise always passes. Decided exactly,
    in counts: on the same test images, a drop of `allowed_drop_images` passes and one more image fails."""
    change = current.accuracy - baseline.accuracy
    if baseline.images == current.images:
        allowed = allowed_drop_images(max_drop, baseline.images)
        moved, limit = f" ({current.correct - baseline.correct:+d} images)", f" ({-allowed:+d} images)"
    else:
        moved = limit = ""
    return Row(metric, f"{float(baseline.accuracy):.4f} ({baseline.correct} of {baseline.images})",
               f"{float(current.accuracy):.4f} ({current.correct} of {current.images})",
               f"{float(change):+.4f}{moved}", f">= {-max_drop:+.4f}{limit}",
               change >= -Fraction(str(max_drop)))


def timing_advisory(metric: str, baseline: Timing, current: Timing, z: float) -> Row:
    """An advisory row (never fails) for a step time measured in two different runs.

    It shows the change of the medians and the within-run noise, `z` standard errors of the two
    medians from their recorded IQR and count. That noise leaves out what differs between runs (the
    machine, its load, the process's memory layout), which moves two runs of unchanged code by more than
    the allowance (measured in docs/benchmarks.md). Speed is gated by `ab` instead.
    """
    slowdown = current.median_ms / baseline.median_ms - 1
    noise = z * math.hypot(baseline.standard_error_ms, current.standard_error_ms) / baseline.median_ms
    return Row(
        metric,
        f"{baseline.median_ms:.2f} ms (IQR {baseline.iqr_ms:.2f}, n={baseline.n})",
        f"{current.median_ms:.2f} ms (IQR {current.iqr_ms:.2f}, n={current.n})",
        f"{slowdown:+.1%}",
        f"within-run noise {noise:.1%}; run-to-run not known",
        True,
        advisory=True,
    )


def seconds_to_target_advisory(model: str, base: dict, cur: dict) -> Row | None:
    """An advisory row of the training seconds each run took to its target (None unless both runs timed the
    same target): machine and load move it, so the convergence gate counts images instead."""
    if "target_accuracy" not in base or base.get("target_accuracy") != cur.get("target_accuracy"):
        return None
    shown = [f"{d['seconds_to_target']:.1f} s" if d.get("seconds_to_target") is not None else "not reached"
             for d in (base, cur)]
    both = base.get("seconds_to_target") and cur.get("seconds_to_target")
    change = f"{cur['seconds_to_target'] / base['seconds_to_target'] - 1:+.1%}" if both else "-"
    return Row(f"train-{model} seconds to {cur['target_accuracy']}", *shown, change,
               "not gated: images to target are", True, advisory=True)


def _read_metrics(source: str, names: list[str], read) -> dict:
    metrics = {}
    for name in names:
        try:
            metrics[name] = json.loads(read(name))
        except (OSError, params.PipelineError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GateUsageError(
                f"{source}: cannot read {name}: {(str(exc).strip().splitlines() or ['?'])[0]}"
            ) from None
        if not isinstance(metrics[name], dict):
            raise GateUsageError(f"{source}: {name} is not a metrics object (a JSON {type(metrics[name]).__name__})")
    return metrics


def metrics_at_rev(rev: str, metrics_dir: str, names: list[str]) -> dict:
    def read(name):
        return git("show", "--end-of-options", f"{rev}:{metrics_dir}/{name}").decode()
    return _read_metrics(f"baseline {rev}", names, read)


def metrics_in_dir(directory: Path, names: list[str], label: str) -> dict:
    return _read_metrics(label, names, lambda name: (directory / name).read_text())


def files_at_rev(rev: str, metrics_dir: str) -> set[str]:
    """The file names in `metrics_dir` at `rev` (none when the rev or the directory is not there: reading
    the metrics then names what is missing)."""
    try:
        listing = git("ls-tree", "--name-only", "--end-of-options", rev, f"{metrics_dir}/").decode()
    except params.PipelineError:
        return set()
    return {Path(line).name for line in listing.splitlines()}


def files_in_dir(directory: Path) -> set[str]:
    return {f.name for f in directory.iterdir()} if directory.is_dir() else set()


def models_in(files: set[str], paths: params.Paths) -> list[str]:
    """The models whose train or evaluate metrics file is among `files`: the registry's in its order, then
    any others (a model removed since) sorted."""
    found = set()
    for path in (paths.train_metrics, paths.evaluate_metrics):
        prefix, suffix = Path(path("\0")).name.split("\0")
        found |= {f[len(prefix):len(f) - len(suffix)] for f in files
                  if f.startswith(prefix) and f.endswith(suffix) and len(f) > len(prefix) + len(suffix)}
    return [m for m in registry.names() if m in found] + sorted(found - set(registry.names()))


def _get(metrics: dict, file: str, *keys) -> float:
    """A numeric metric, or one line (exit 2) naming the file and the key."""
    value = metrics[file]
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise GateUsageError(f"{file}: missing metric {'.'.join(keys)}")
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GateUsageError(f"{file}: metric {'.'.join(keys)} is {value!r}, not a number")
    return value


def scored(metrics: dict, file: str) -> Scored:
    """The correct-image count behind an evaluate file's test_accuracy (recorded to 5 decimals, so that
    accuracy x test_images is within 0.05 of a whole count for up to 10,000 images)."""
    images = _get(metrics, file, "test_images")
    accuracy = _get(metrics, file, "test_accuracy")
    if not isinstance(images, int) or images < 1:
        raise GateUsageError(f"{file}: metric test_images is {images!r}, not a count of images >= 1")
    if not 0 <= accuracy <= 1:
        raise GateUsageError(f"{file}: metric test_accuracy is {accuracy!r}, not in 0 .. 1")
    if abs(accuracy * images - round(accuracy * images)) > 0.05:
        raise GateUsageError(f"{file}: metric test_accuracy is {accuracy!r}, not a whole number of the "
                             f"{images} test images")
    return Scored(round(accuracy * images), images)


def metric_files(paths: params.Paths, models) -> dict[str, str]:
    """The file name, inside the metrics directory, of each metrics file the gate reads for `models`."""
    files = {f"{kind}-{m}": Path(path(m)).name for m in models
             for kind, path in (("train", paths.train_metrics), ("evaluate", paths.evaluate_metrics))}
    return {**files, "lstm-step": Path(paths.lstm_step_metrics).name}


def changed_settings(base: dict, cur: dict, files: dict[str, str]) -> dict[str, str]:
    """{file key: what differs} for every file whose settings (the metrics contract's) differ between the runs."""
    changed = {}
    for key, file in files.items():
        differ = metrics.same_settings(metrics.kind_of(key), base[file], cur[file])
        if differ:
            changed[key] = f"{file}: baseline and current come from different settings ({'; '.join(differ)})"
    return changed


class SettingsChanged(GateUsageError):
    """The two runs come from different settings: there is nothing to compare."""


def _shown(metrics: dict, file: str) -> str:
    score = scored(metrics, file)
    return f"{float(score.accuracy):.4f} ({score.correct} of {score.images})"


def compare(
    base: dict,
    cur: dict,
    cfg: params.Gate,
    files: dict[str, str],
    drops: dict[str, float],
    allow_new_settings: bool = False,
    removed: dict[str, str] | None = None,
) -> tuple[dict[str, list[Row]], list[str]]:
    """Accuracy rows (gated) and timing rows (advisory) of `cur` against `base`, keyed by `files`.

    `drops` holds each current model's allowed accuracy drop (params.yaml's models.<model>.max_accuracy_drop).
    A current model whose files `base` lacks is new: an advisory row. `removed` ({model: its evaluate file in
    `base`}) are the baseline's models that the current run no longer has: an advisory row each. An LSTM
    core that the baseline's lstm-step did not time (a model that gained one) has no timing row, only a note.
    Runs of different settings are refused (SettingsChanged), unless `allow_new_settings`: then a model
    whose train or evaluate settings changed gets an advisory accuracy row, and the others are gated."""
    removed = removed or {}
    new = [m for m in drops if files[f"evaluate-{m}"] not in base and files[f"train-{m}"] not in base]
    common = [m for m in drops if m not in new]
    shared = {k: f for k, f in files.items() if k == "lstm-step" or k.split("-", 1)[1] in common}
    changed = changed_settings(base, cur, shared)
    if changed and not allow_new_settings:
        raise SettingsChanged(f"{next(iter(changed.values()))}; compare runs of the same profile")
    accuracy = []
    for m in drops:
        file = files[f"evaluate-{m}"]
        if m in new:
            accuracy.append(Row(f"{m} test_accuracy", "not in baseline", _shown(cur, file), "-",
                                "not gated: new model", True, advisory=True))
            continue
        row = accuracy_verdict(f"{m} test_accuracy", scored(base, file), scored(cur, file), drops[m])
        if f"train-{m}" in changed or f"evaluate-{m}" in changed:
            row = dataclasses.replace(row, allowed="not gated: new settings", passed=True, advisory=True)
        accuracy.append(row)
    accuracy += [Row(f"{m} test_accuracy", _shown(base, file), "removed", "-", "not gated: removed model", True,
                     advisory=True) for m, file in removed.items()]
    timing = []
    for m in common:
        file = files[f"train-{m}"]
        pick = lambda d: Timing(_get(d, file, "step_time_ms_median"), _get(d, file, "step_time_ms_iqr"),  # noqa: E731
                                _get(d, file, "timed_steps"))
        timing.append(timing_advisory(f"train-{m} step time", pick(base), pick(cur), cfg.noise_z))
    for m in common:
        row = seconds_to_target_advisory(m, base[files[f"train-{m}"]], cur[files[f"train-{m}"]])
        timing += [row] if row else []
    cores = [m for m in common if m in registry.lstm_cores()]
    gained = [m for m in cores if m not in base[files["lstm-step"]]]  # no timing of it to compare with
    for core in (m for m in cores if m not in gained):
        pick = lambda d: Timing(*(_get(d, files["lstm-step"], core, "cpu_generic", k)  # noqa: E731
                                  for k in ("step_time_ms_median", "step_time_ms_iqr", "rounds")))
        timing.append(timing_advisory(f"lstm-step {core} core, CPU step", pick(base), pick(cur), cfg.noise_z))
    devices = [", ".join(sorted({str(d[files[f"train-{m}"]].get("device_name")) for m in common}))
               for d in (base, cur)]
    notes = ["timing rows are advisory: times from two different runs differ by more than their within-run "
             "noise on identical code; `python -m pipeline.gate ab` gates speed side by side"]
    if new:
        notes.append(f"new since the baseline, so not gated: {', '.join(new)}")
    if removed:
        notes.append(f"in the baseline but no longer in the registry: {', '.join(removed)}")
    if gained:
        notes.append(f"LSTM cores the baseline's lstm-step did not time: {', '.join(gained)}")
    notes += [f"{why}: its accuracy is not gated at this commit" for why in changed.values()]
    if devices[0] != devices[1]:
        notes.append(f"timings come from different devices ({devices[0]} vs {devices[1]})")
    return {"Accuracy": accuracy, "Timing (advisory, across runs)": timing}, notes
