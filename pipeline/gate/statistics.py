"""The A/B gate's statistic: the slowdown pooled over worker-process pairs, its hierarchical-bootstrap
interval, and the verdict drawn from them."""

from __future__ import annotations

import dataclasses

import numpy as np


# Bootstrap resamples of the pooled statistic. The resampling is seeded, so a verdict can be recomputed
# exactly from a run's --record.
RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class Pooled:
    """The pooled slowdown of one benchmark: exp(mean over process pairs of the median log ratio) - 1,
    with its hierarchical-bootstrap interval (`low`, `high`), all as fractions (0.10 is +10%)."""

    slowdown: float
    low: float
    high: float
    per_process: tuple[float, ...]
    pairs: int


def pooled_slowdown(groups, confidence: float, seed: int = 0, resamples: int = RESAMPLES) -> Pooled:
    """Pool (base_ms, head_ms) pairs from several worker-process pairs into one slowdown estimate.

    Each group holds one worker pair's interleaved samples. Within a group the statistic is the median
    of log(head / base) over its pairs; the estimate averages the groups. A process can be slow for its
    whole life (its memory layout, its core), which shifts all of its group's ratios together, so the
    interval is a two-level (hierarchical) bootstrap: draw the groups with replacement, then each drawn
    group's pairs with replacement, and take the same statistic. Its spread then holds both the step
    noise and the process offsets, and no single group decides the verdict.
    """
    logs = [np.log(np.asarray(h, float) / np.asarray(b, float)) for b, h in groups]
    if any(len(g) == 0 for g in logs):
        raise ValueError("every worker pair needs at least one (base, head) pair")
    rng = np.random.default_rng(seed)
    count = len(logs)
    drawn = rng.integers(0, count, (resamples, count))  # level 1: which group fills each slot
    lengths = {len(g) for g in logs}
    if len(lengths) == 1:  # the usual case: every worker pair took the same number of pairs
        n = lengths.pop()
        values = np.stack(logs)  # (groups, n)
        picks = rng.integers(0, n, (resamples, count, n))  # level 2: the drawn group's pairs
        boot = np.median(values[drawn[..., None], picks], axis=2).mean(axis=1)
    else:  # resample every group in every slot, then keep the drawn group's median
        medians = np.stack([np.median(g[rng.integers(0, len(g), (resamples, count, len(g)))], axis=2) for g in logs])
        boot = np.take_along_axis(medians.transpose(1, 2, 0), drawn[..., None], axis=2)[..., 0].mean(axis=1)
    per_group = np.array([np.median(g) for g in logs])
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Pooled(float(np.expm1(per_group.mean())), float(np.expm1(low)), float(np.expm1(high)),
                  tuple(float(v) for v in np.expm1(per_group)), sum(len(g) for g in logs))


def regressed(pooled: Pooled, max_slowdown: float) -> bool:
    """The verdict: a regression when the estimated slowdown exceeds `max_slowdown` and the interval
    lies above zero (the slowdown is larger than the allowance and larger than the noise)."""
    return pooled.slowdown > max_slowdown and pooled.low > 0


def decided(pooled: Pooled, max_slowdown: float) -> bool:
    """Sampling more cannot change the verdict much: the whole interval lies on one side of the allowance."""
    return pooled.high < max_slowdown or pooled.low > max_slowdown
