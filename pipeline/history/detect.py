"""The history's verdicts: lines of runs with equal settings, the lookback z-score that marks a change on
each, and the markdown summary of the changes."""

from __future__ import annotations

import math

import numpy as np

from pipeline.lib import params
from pipeline.history.read import MEASURES, Commit, Measure, Point, points

LOOKBACK = 8
MIN_LOOKBACK = 2
Z_THRESHOLD = 3.0
# The run-to-run spread of identical code on the development machine, the largest over the benchmarks,
# rounded up (measured by reports/history/noise.py; docs/history.md).
NOISE_FLOOR_REL = 0.07


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
