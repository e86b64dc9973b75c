"""The benchmark's history: every commit's committed metrics as one static page, with detected changes.

    python -m pipeline.history [--rev HEAD] [--out reports/history.html] [--since REV] [--summary FILE]

Reads, from git alone (no server, no checkout), `metrics/*.json` and `dvc.lock` of every commit on the
first-parent line of `--rev`, oldest first, and writes one HTML page (Plotly, its script inlined, so
the page works offline) with one chart per measure: test accuracy, train images/s, training step time
(median, IQR as error bars), the LSTM cores' step time and inference images/s, one line per model.
Hovering a point shows the commit, its subject and the machine.

- **Points are runs.** A commit whose metrics file is byte-identical to its parent's did not run that
  stage again (DVC skipped it, or nothing was rerun); it repeats the previous run and adds no point.
- **Settings.** A line joins only runs of the same settings: the file's recorded settings (the ones
  `pipeline.gate compare` refuses to mix, `gate.SETTINGS`), the environment (device, threads, backend
  and Keras versions) and the data (the archive's md5 and the `preprocess` params in that commit's
  dvc.lock). A change of settings starts a new line; the page lists what changed.
- **Detected changes** (`detect`): a lookback z-score, as conbench does it. Each run is compared with up
  to LOOKBACK earlier runs of its line (at least MIN_LOOKBACK): z = (value - their mean) / sigma, where
  sigma is their sample standard deviation or the measure's noise floor, whichever is larger. |z| >
  Z_THRESHOLD marks a change. The floors: for test accuracy, the binomial standard error of an accuracy
  on that many test images; for times and rates, NOISE_FLOOR_REL of the value, measured from identical
  code run over and over on this machine (docs/history.md has the measurement and the detector's
  measured error rates).

Prints a markdown summary of the detected changes (those after `--since`, when given), for a
pull-request comment, and writes it to `--summary` when given.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import yaml

from pipeline import cli, params, registry
from pipeline.atomic import write_text
from pipeline.gate.compare import SETTINGS
from pipeline.gitcmd import git, revision
from pipeline.params import PipelineError

LOOKBACK = 8
MIN_LOOKBACK = 2
Z_THRESHOLD = 3.0
# Run-to-run spread of identical code on the development machine: the relative sample standard deviation
# of the run medians of one benchmark over the 70 A/B-gate records of one commit (reports/gate-power/runs,
# base side): 4.1% to 6.7% over the six benchmarks, the largest rounded up (reports/history/noise.py).
NOISE_FLOOR_REL = 0.07
DASHES = ("solid", "dash", "dot", "dashdot")  # successive settings of one model
ENVIRONMENT = ("device_name", "cpu_device_name", "threads", "backend_version", "keras_version")


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


MEASURES = (
    Measure("test_accuracy", "Test accuracy", "", "evaluate", ("test_accuracy",), accuracy=True),
    Measure("train_images_per_s", "Training throughput", "images/s", "train", ("train_images_per_s",)),
    Measure("step_time_ms", "Training step time (median, IQR)", "ms", "train", ("step_time_ms_median",),
            ("step_time_ms_iqr",), higher_is_better=False),
    Measure("lstm_core_ms", "LSTM core training step, CPU path (median, IQR)", "ms", "lstm-step",
            ("{model}", "cpu_generic", "step_time_ms_median"), ("{model}", "cpu_generic", "step_time_ms_iqr"),
            higher_is_better=False),
    Measure("inference_images_per_s", "Inference throughput", "images/s", "evaluate", ("inference_images_per_s",)),
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
                if not isinstance(data, dict) or value is None:
                    continue
                spread = _dig(data, measure.spread, model) if measure.spread else None
                settings = [(k, json.dumps(data.get(k))) for k in (*SETTINGS[measure.kind], *ENVIRONMENT)]
                if measure.kind == "evaluate":  # accuracy depends on how the model was trained
                    trained = _load(commit.files.get(str(paths.train_metrics(model))))
                    settings += [(f"train.{k}", json.dumps(trained.get(k))) for k in SETTINGS["train"]]
                if measure.kind != "lstm-step":
                    settings += list(_data_settings(commit.files.get("dvc.lock")))
                machine = str(data.get("device_name") or data.get("cpu_device_name") or "?")
                machine += f", {data.get('threads', '?')} threads, {data.get('backend', '?')} {data.get('backend_version', '')}"
                test_images = data.get("test_images")
                found.append(Point(measure.key, model, index, commit.sha, commit.subject, machine, float(value),
                                   spread, tuple(settings), test_images if isinstance(test_images, int) else None))
    return found


def _load(text: str | None) -> dict:
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def noise_floor(measure: Measure, baseline: float, test_images: int | None) -> float:
    if measure.accuracy:
        p = min(max(baseline, 1e-3), 1 - 1e-3)
        return math.sqrt(p * (1 - p) / max(test_images or 1, 1))
    return NOISE_FLOOR_REL * abs(baseline)


def detect(series: list[Point], measure: Measure) -> None:
    """Mark changes in one line (runs of one model, measure and settings, in commit order), in place."""
    for i, point in enumerate(series):
        window = [p.value for p in series[max(0, i - LOOKBACK):i]]
        if len(window) < MIN_LOOKBACK:
            continue
        mean = float(np.mean(window))
        sigma = max(float(np.std(window, ddof=1)), noise_floor(measure, mean, point.noise_n))
        point.baseline = mean
        point.z = (point.value - mean) / sigma if sigma > 0 else 0.0
        point.changed = abs(point.z) > Z_THRESHOLD


def lines(found: list[Point]) -> dict[tuple[str, str], list[list[Point]]]:
    """(measure, model) -> its lines: consecutive runs of the same settings, each a list in commit order."""
    grouped: dict[tuple[str, str], list[list[Point]]] = {}
    for point in found:
        segments = grouped.setdefault((point.measure, point.model), [])
        if segments and segments[-1][-1].settings == point.settings:
            segments[-1].append(point)
        else:
            segments.append([point])
    return grouped


def analyse(commits: list[Commit], paths: params.Paths) -> dict[tuple[str, str], list[list[Point]]]:
    grouped = lines(points(commits, paths))
    by_key = {m.key: m for m in MEASURES}
    for (measure, _), segments in grouped.items():
        for segment in segments:
            detect(segment, by_key[measure])
    return grouped


def settings_change(before: tuple, after: tuple) -> str:
    old, new = dict(before), dict(after)
    return ", ".join(f"{k} {old.get(k, '-')} -> {new.get(k, '-')}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))


# Drawing, left out of mutation testing (reports/mutation): the page gives no verdict (the detector and the
# summary above and below do), and tests/test_history.py checks it in headless Chromium.
# pragma: no mutate start
def figure(measure: Measure, grouped: dict, commits: list[Commit]) -> go.Figure:
    fig = go.Figure()
    for model in registry.names():
        for number, segment in enumerate(grouped.get((measure.key, model), []), start=1):
            hover = [f"<b>{p.sha[:7]}</b> {html.escape(p.subject[:80])}<br>{html.escape(p.machine)}<br>"
                     f"{model}: {p.value:.4g} {measure.unit}" + (f" (IQR {p.spread:.3g})" if p.spread is not None else "")
                     + (f"<br>z = {p.z:+.1f} against {p.baseline:.4g}" if p.z is not None else "")
                     for p in segment]
            fig.add_trace(go.Scatter(
                x=[p.index for p in segment], y=[p.value for p in segment], mode="lines+markers",
                name=f"{model}, settings {number}", legendgroup=model,
                line={"color": registry.MODELS[model].colour, "dash": DASHES[(number - 1) % len(DASHES)]},
                error_y={"type": "data", "array": [p.spread or 0 for p in segment], "visible": measure.spread is not None},
                hovertext=hover, hoverinfo="text", meta={"role": "runs", "model": model}))
            changed = [p for p in segment if p.changed]
            if changed:
                fig.add_trace(go.Scatter(
                    x=[p.index for p in changed], y=[p.value for p in changed], mode="markers",
                    name=f"{model}: detected change", legendgroup=model,
                    marker={"symbol": "x-open", "size": 16, "color": "black", "line": {"width": 2}},
                    hovertext=[f"change at {p.sha[:7]}: z = {p.z:+.1f}" for p in changed], hoverinfo="text",
                    meta={"role": "changes", "model": model}))
    ticks = sorted({p.index for segments in grouped.values() for s in segments for p in s})
    fig.update_layout(title=measure.title, height=380, margin={"t": 50, "b": 60},
                      xaxis={"title": "commit (oldest first)", "tickvals": ticks,
                             "ticktext": [commits[i].sha[:7] for i in ticks], "tickangle": -45},
                      yaxis={"title": measure.unit or measure.title.lower()}, hovermode="closest")
    return fig


def page(grouped: dict, commits: list[Commit], rev: str) -> str:
    charts = [figure(m, grouped, commits).to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"chart-{m.key}")
              for i, m in enumerate(MEASURES)]
    notes = []
    for (measure, model), segments in grouped.items():
        for before, after in zip(segments, segments[1:]):
            notes.append(f"<li>{measure}, {model}: new settings at {after[0].sha[:7]} "
                         f"({html.escape(settings_change(before[-1].settings, after[0].settings))})</li>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Benchmark history</title></head><body>"
            f"<h1>Benchmark history of {html.escape(rev)}</h1>"
            f"<p>{len(commits)} commits on the first-parent line; one point per commit that recorded a new run. "
            f"Lines join runs of the same settings only. Crosses mark changes detected by a lookback z-score "
            f"(|z| &gt; {Z_THRESHOLD:g} against up to {LOOKBACK} earlier runs, with a noise floor): "
            f"see docs/history.md.</p>{''.join(charts)}"
            f"<h2>Where settings changed</h2><ul>{''.join(notes) or '<li>nowhere</li>'}</ul></body></html>\n")


# pragma: no mutate end
def summary(grouped: dict, since_index: int) -> str:
    by_key = {m.key: m for m in MEASURES}
    rows = []
    for (measure, model), segments in grouped.items():
        for p in (p for s in segments for p in s if p.changed and p.index > since_index):
            m = by_key[measure]
            better = (p.value > p.baseline) == m.higher_is_better
            rows.append(f"| {p.sha[:7]} | {p.subject[:60].replace('|', '/')} | {model} | {m.title} | "
                        f"{p.baseline:.4g} | {p.value:.4g} | "
                f"{f'{100 * (p.value / p.baseline - 1):+.1f}%' if p.baseline else f'{p.value - p.baseline:+.4g}'} | "
                        f"{p.z:+.1f} | {'better' if better else 'worse'} |")
    if not rows:
        return "No change detected in the benchmark history.\n"
    head = ("| commit | subject | model | measure | before (mean) | after | change | z | direction |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    return f"Detected changes (lookback z-score, |z| > {Z_THRESHOLD:g}):\n\n" + head + "\n".join(rows) + "\n"


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m pipeline.history", description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the branch or commit whose first-parent line is drawn")
    parser.add_argument("--out", type=Path, default=Path("reports/history.html"))
    parser.add_argument("--since", help="summarise only changes at commits after this one (e.g. the PR's base)")
    parser.add_argument("--summary", type=Path, help="also write the markdown summary here")
    args = parser.parse_args(argv)
    revision(args.rev, "--rev")
    if args.since is not None:
        revision(args.since, "--since")
    p = params.load().paths
    files = sorted({str(p.train_metrics(m)) for m in registry.names()} | {str(p.evaluate_metrics(m)) for m in registry.names()}
                   | {str(p.lstm_step_metrics), "dvc.lock"})
    commits = read_commits(args.rev, files)
    if not commits:
        raise PipelineError(f"{args.rev} has no commits")
    since_index = -1
    if args.since:
        since = git("rev-parse", "--verify", "--end-of-options", f"{args.since}^{{commit}}").decode().strip()
        matches = [i for i, c in enumerate(commits) if c.sha == since]
        if not matches:
            raise PipelineError(f"--since {args.since}: not on the first-parent line of {args.rev}")
        since_index = matches[0]
    grouped = analyse(commits, p)
    write_text(args.out, page(grouped, commits, args.rev))
    text = summary(grouped, since_index)
    if args.summary:
        write_text(args.summary, text)
    cli.emit(text, end="")
    runs = sum(len(s) for segments in grouped.values() for s in segments)
    cli.emit(f"history: {len(commits)} commits, {runs} runs -> {args.out}")


if __name__ == "__main__":
    cli.main(main)
