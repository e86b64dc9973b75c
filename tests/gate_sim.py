"""Simulated A/B gate runs whose noise is the gate's own, as recorded in its real A/A runs.

`recorded_noise()` reads tests/fixtures/gate-noise-74f8242.json (every step time of every A/A run of
74f8242's rows, identical code on both sides, extracted from reports/gate-power/runs/aa-*.json by
tests/fixtures/extract_gate_noise.py). For each benchmark and worker pair it splits the per-pair log ratio log(head/base)
into the worker pair's offset (its median: a process slow or fast for its whole life) and the residuals
around it (step noise, heavy tails and all). A simulated worker pair draws one recorded offset and then,
for every pair, one recorded residual of the same benchmark, and adds the true slowdown. `run_gate`
drives the real `gate_ab.sample` loop and `gate_ab.ab_verdict` with such workers, so the sequential stopping
rule, the pooled interval and the verdict are the code under test; only the timer is replaced by draws
of the measured noise.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from pipeline.lib import params
from pipeline.gate import ab as gate_ab, statistics as gate_statistics
from tests.project import ROOT

RECORDS = ROOT / "tests" / "fixtures" / "gate-noise-74f8242.json"


@dataclasses.dataclass(frozen=True)
class Noise:
    offsets: dict[str, np.ndarray]  # benchmark -> worker-pair medians of log(head/base), A/A
    residuals: dict[str, np.ndarray]  # benchmark -> log ratios minus their worker pair's median
    base_ms: dict[str, float]  # benchmark -> median base step time (what the budget is spent on)


def recorded_noise() -> Noise:
    offsets, residuals, base_ms = {}, {}, {}
    runs = json.loads(RECORDS.read_text())["runs"]
    assert runs, f"no recorded A/A gate runs in {RECORDS}"
    for run in runs:
        for name, sides in run["times"].items():
            for base, head in zip(sides["base"], sides["head"]):
                logs = np.log(np.asarray(head) / np.asarray(base))
                offsets.setdefault(name, []).append(np.median(logs))
                residuals.setdefault(name, []).extend(logs - np.median(logs))
                base_ms.setdefault(name, []).extend(base)
    return Noise({k: np.array(v) for k, v in offsets.items()}, {k: np.array(v) for k, v in residuals.items()},
                 {k: float(np.median(v)) for k, v in base_ms.items()})


class Clock:
    """Measuring time as the simulated steps spend it (seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimWorker:
    """A worker of one side: base steps take the recorded median; head steps that times the slowdown and
    the noise. Each step advances `clock` by its own time."""

    def __init__(self, side: str, offset: dict, noise: Noise, slowdown: dict, rng, clock: Clock):
        self.side, self.offset, self.noise, self.slowdown, self.rng, self.clock = side, offset, noise, slowdown, rng, clock

    def step(self, name: str) -> float:
        ms = self.noise.base_ms[name]
        if self.side == "head":
            ms *= float(np.exp(np.log1p(self.slowdown.get(name, 0.0)) + self.offset[name]
                               + self.rng.choice(self.noise.residuals[name])))
        self.clock.now += ms / 1000
        return ms


def sim_workers(noise: Noise, slowdown: dict, processes: int, rng, clock: Clock) -> dict:
    head = []
    for _ in range(processes):
        offset = {name: rng.choice(values) for name, values in noise.offsets.items()}
        head.append(SimWorker("head", offset, noise, slowdown, rng, clock))
    return {"base": [SimWorker("base", {}, noise, slowdown, rng, clock) for _ in range(processes)], "head": head}


def run_gate(noise: Noise, names: list[str], slowdown: dict, cfg: params.Gate, rng) -> tuple[bool, int, float]:
    """One simulated gate run: (failed, pairs taken per benchmark, seconds of measuring)."""
    clock = Clock()
    samples, _ = gate_ab.sample(sim_workers(noise, slowdown, cfg.ab_processes, rng, clock), names, cfg, clock=clock)
    rows = [gate_ab.ab_verdict(name, samples.groups(name), cfg.max_slowdown, cfg.ab_confidence) for name in names]
    return any(not row.passed for row in rows), samples.pairs(), clock.now


def fixed_samples(noise: Noise, name: str, slowdown: float, processes: int, pairs: int, rng) -> list:
    """`pairs` simulated (base, head) pairs of `name` on each of `processes` worker pairs."""
    workers = sim_workers(noise, {name: slowdown}, processes, rng, Clock())
    return [([workers["base"][p].step(name) for _ in range(pairs)], [workers["head"][p].step(name) for _ in range(pairs)])
            for p in range(processes)]


def coverage(noise: Noise, processes: int, pairs: int, pool=gate_statistics.pooled_slowdown, sims: int = 300,
             slowdown: float = 0.15, confidence: float = 0.95) -> float:
    """How often `pool`'s interval contains what the statistic estimates, over simulated samples of every
    benchmark in turn: the slowdown times a worker pair's mean offset."""
    rng = np.random.default_rng(1)
    names = sorted(noise.offsets)
    hits = 0
    for i in range(sims):
        name = names[i % len(names)]
        pooled = pool(fixed_samples(noise, name, slowdown, processes, pairs, rng), confidence, seed=i)
        truth = np.expm1(np.log1p(slowdown) + np.mean(noise.offsets[name]))
        hits += pooled.low <= truth <= pooled.high
    return hits / sims


def unpooled(groups, confidence: float, seed: int = 0):
    """The pooled statistic with the worker pairs ignored: every pair as if from one process."""
    merged = [(np.concatenate([b for b, _ in groups]), np.concatenate([h for _, h in groups]))]
    return gate_statistics.pooled_slowdown(merged, confidence, seed)
