"""The history's input: the metrics files and dvc.lock of every commit on a first-parent line, read from git,
and one point per (measure, model) for every commit that recorded a new run, with its settings."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable

import yaml

from pipeline.lib import metrics, params, registry
from pipeline.lib.gitcmd import git


@dataclasses.dataclass(frozen=True)
class Measure:
    """One chart: `value` (and `spread`, drawn as error bars) read from a model's metrics file."""
    key: str
    title: str
    unit: str
    kind: str                  # the metrics file: train | evaluate | lstm-step
    value: tuple[str, ...]     # path of keys inside the file; "{model}" is replaced by the model's name
    spread: tuple[str, ...] | None = None
    higher_is_better: bool = True
    accuracy: bool = False     # noise floor: the binomial standard error instead of NOISE_FLOOR_REL
    keyed_by: tuple[str, ...] = ()  # fields of the file, beyond its settings, that a line must share
    # a run that never reached its target: the value it is at least (drawn, and judged, as that bound)
    unreached: Callable[[dict], float] | None = None


# time to target depends on the target and on the held-out images it is scored on
TARGET_KEYS = ("target_accuracy", "heldout_images", "evals_per_epoch")


MEASURES = (
    Measure("test_accuracy", "Test accuracy", "", "evaluate", ("test_accuracy",), accuracy=True),
    Measure("train_images_per_s", "Training throughput", "images/s", "train", ("train_images_per_s",)),
    Measure("step_time_ms", "Training step time (median, IQR)", "ms", "train", ("step_time_ms_median",),
            ("step_time_ms_iqr",), higher_is_better=False),
    Measure("lstm_core_ms", "LSTM core training step, CPU path (median, IQR)", "ms", "lstm-step",
            ("{model}", "cpu_generic", "step_time_ms_median"), ("{model}", "cpu_generic", "step_time_ms_iqr"),
            higher_is_better=False),
    Measure("inference_images_per_s", "Inference throughput", "images/s", "evaluate", ("inference_images_per_s",)),
    Measure("images_to_target", "Images seen to reach the target accuracy (held-out curve)", "images", "train",
            ("images_to_target",), higher_is_better=False, keyed_by=TARGET_KEYS,
            unreached=lambda d: d["epochs_completed"] * d["train_images"]),
    Measure("seconds_to_target", "Training seconds to reach the target accuracy", "s", "train",
            ("seconds_to_target",), higher_is_better=False, keyed_by=TARGET_KEYS,
            unreached=lambda d: d["train_seconds"]),
)


@dataclasses.dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    date: str
    files: dict[str, str | None]  # path -> content at this commit (None: absent)


@dataclasses.dataclass
class Point:
    measure: str
    model: str
    index: int            # position of the commit on the first-parent line, oldest = 0
    sha: str
    subject: str
    machine: str
    value: float
    spread: float | None
    settings: tuple       # what a line must share
    noise_n: int | None   # test images, for the accuracy floor
    z: float | None = None
    baseline: float | None = None
    changed: bool = False
    unreached: bool = False  # the run never reached its target: `value` is a lower bound


def read_commits(rev: str, paths: list[str], repo: Path = Path(".")) -> list[Commit]:
    """`paths` at every commit on the first-parent line of `rev` in `repo`, oldest first, through one `git cat-file`."""
    log = git("log", "--first-parent", "--reverse", "--format=%H%x1f%s%x1f%cI", "--end-of-options", rev, "--",
              repo=repo).decode()
    lines = [line.split("\x1f") for line in log.splitlines() if line]
    queries = "".join(f"{sha}:{path}\n" for sha, _, _ in lines for path in paths)
    out = git("cat-file", "--batch", stdin=queries.encode(), repo=repo)
    contents, pos = [], 0
    for _ in range(len(lines) * len(paths)):
        end = out.index(b"\n", pos)
        header = out[pos:end].decode()
        pos = end + 1
        if header.endswith(" missing"):
            contents.append(None)
            continue
        size = int(header.split()[-1])
        contents.append(out[pos:pos + size].decode())
        pos += size + 1
    return [Commit(sha, subject, date, dict(zip(paths, contents[i * len(paths):(i + 1) * len(paths)])))
            for i, (sha, subject, date) in enumerate(lines)]


def _dig(data, keys: tuple[str, ...], model: str):
    for key in keys:
        data = data.get(key.format(model=model)) if isinstance(data, dict) else None
    return data if isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data) else None


def _data_settings(lock_text: str | None) -> tuple:
    """The data a run saw: the archive's md5 and the preprocess params recorded in dvc.lock."""
    try:
        lock = yaml.safe_load(lock_text or "") or {}
    except yaml.YAMLError:
        return (("dvc.lock", "unreadable"),)
    stages = lock.get("stages") if isinstance(lock, dict) else None
    recorded = {}
    for name in ("download", "preprocess"):
        stage = stages.get(name) if isinstance(stages, dict) else None
        files = stage.get("params") if isinstance(stage, dict) else None
        for values in (files.values() if isinstance(files, dict) else ()):
            recorded.update(values if isinstance(values, dict) else {})
    # Where the archive came from (its md5 says what it was), and how to fetch it (older locks listed these).
    for how in ("download.url", "download.retries", "download.timeout_s"):
        recorded.pop(how, None)
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in recorded.items()))


def points(commits: list[Commit], paths: params.Paths) -> list[Point]:
    """One point per (measure, model) for every commit whose metrics file changed from its parent's."""
    files = {"train": paths.train_metrics, "evaluate": paths.evaluate_metrics}
    found = []
    for measure in MEASURES:
        for model in registry.names():
            path = str(files[measure.kind](model) if measure.kind in files else paths.lstm_step_metrics)
            previous = None
            for index, commit in enumerate(commits):
                text = commit.files.get(path)
                if text is None or text == previous:
                    previous = text
                    continue
                previous = text
                try:
                    data = json.loads(text)
                except json.JSONDecodeError:
                    continue
                value = _dig(data, measure.value, model)
                unreached = isinstance(data, dict) and value is None and measure.unreached is not None \
                    and data.get("target_reached") is False
                if unreached:
                    try:
                        value = float(measure.unreached(data))
                    except (KeyError, TypeError, ValueError):
                        continue
                if not isinstance(data, dict) or value is None:
                    continue
                spread = _dig(data, measure.spread, model) if measure.spread else None
                kind = measure.kind
                settings = [(k, json.dumps(metrics.value(kind, data, k)))
                            for k in (*metrics.settings(kind), *metrics.environment(kind))]
                settings += [(k, json.dumps(data.get(k))) for k in measure.keyed_by]
                if measure.kind == "evaluate":  # accuracy depends on how the model was trained
                    trained = _load(commit.files.get(str(paths.train_metrics(model))))
                    settings += [(f"train.{k}", json.dumps(metrics.value("train", trained, k)))
                                 for k in metrics.settings("train")]
                if measure.kind != "lstm-step":
                    settings += list(_data_settings(commit.files.get("dvc.lock")))
                machine = str(data.get("device_name") or data.get("cpu_device_name") or "?")
                machine += (f", {data.get('threads', '?')} threads, "
                            f"{data.get('backend', '?')} {data.get('backend_version', '')}")
                test_images = data.get("test_images")
                found.append(Point(measure.key, model, index, commit.sha, commit.subject, machine, float(value),
                                   spread, tuple(settings), test_images if isinstance(test_images, int) else None,
                                   unreached=unreached))
    return found


def _load(text: str | None) -> dict:
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
