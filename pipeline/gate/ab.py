"""`gate ab`: the two revs' benchmarks measured side by side on this machine, in interleaved rounds, until
every verdict is decided or the budget is spent; one row per benchmark."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.lib import params
from pipeline.lib.atomic import write_text
from pipeline.gate import GateUsageError
from pipeline.gate.report import Row
from pipeline.gate.statistics import decided, pooled_slowdown, regressed
from pipeline.gate.workers import Worker, WorkerError, gate_command


def ab_verdict(metric: str, groups, max_slowdown: float, confidence: float) -> Row:
    """The report row of one benchmark from its (base_ms, head_ms) groups, one per worker pair (the
    interval seeded as `pooled_slowdown` seeds it, so the row can be recomputed from a --record)."""
    pooled = pooled_slowdown(groups, confidence)
    base_all = np.concatenate([np.asarray(b, float) for b, _ in groups])
    head_all = np.concatenate([np.asarray(h, float) for _, h in groups])
    detail = ", ".join(f"{v:+.1%}" for v in pooled.per_process)
    return Row(
        metric,
        f"{np.median(base_all):.2f} ms",
        f"{np.median(head_all):.2f} ms",
        f"{pooled.slowdown:+.1%} [{pooled.low:+.1%} .. {pooled.high:+.1%}] ({pooled.pairs} pairs; "
        f"per worker pair {detail})",
        f"<= {max_slowdown:+.1%}",
        not regressed(pooled, max_slowdown),
    )


def _worktree(rev: str, into: Path) -> Path:
    result = subprocess.run(["git", "worktree", "add", "--detach", "--quiet", "--end-of-options", str(into), rev],
                            capture_output=True, text=True)
    if result.returncode:
        raise GateUsageError(f"git rev {rev!r}: cannot check out: {result.stderr.strip().splitlines()[-1]}")
    return into


@dataclasses.dataclass
class Samples:
    """Interleaved step times: times[name][side][worker pair] -> ms, in the order they were taken."""

    names: list[str]
    processes: int
    times: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.times = self.times or {n: {s: [[] for _ in range(self.processes)] for s in SIDES} for n in self.names}

    def groups(self, name: str) -> list[tuple[list[float], list[float]]]:
        return list(zip(self.times[name]["base"], self.times[name]["head"]))

    def pairs(self) -> int:
        return min(sum(len(g) for g in self.times[n]["head"]) for n in self.names)


SIDES = ("base", "head")


def sample(workers: dict, names: list[str], cfg: params.Gate, progress=None,
           clock=time.perf_counter) -> tuple[Samples, str]:
    """Drive the workers in interleaved rounds until the verdicts are decided or the budget is spent.

    A round takes one (base, head) pair of every benchmark on every worker pair; the order alternates
    (base first, then head first) between rounds and between worker pairs. From `ab_min_pairs` on,
    after every round, sampling stops when every benchmark is `decided`; at the latest at `ab_max_pairs`
    or `ab_budget_s` seconds of measuring (by `clock`). Returns the samples and why sampling stopped.
    """
    samples = Samples(names, cfg.ab_processes)
    start = clock()
    rounds = 0
    while True:
        for proc in range(cfg.ab_processes):
            order = SIDES if (rounds + proc) % 2 == 0 else SIDES[::-1]
            for name in names:
                for side in order:
                    samples.times[name][side][proc].append(workers[side][proc].step(name))
        rounds += 1
        pairs, elapsed = samples.pairs(), clock() - start
        if progress:
            progress(pairs, elapsed)
        if pairs < cfg.ab_min_pairs:
            continue
        if all(decided(pooled_slowdown(samples.groups(n), cfg.ab_confidence), cfg.max_slowdown) for n in names):
            return samples, f"decided after {pairs} pairs"
        if pairs + cfg.ab_processes > cfg.ab_max_pairs:
            return samples, f"undecided at ab_max_pairs ({pairs} pairs)"
        if elapsed * (rounds + 1) / rounds > cfg.ab_budget_s:
            return samples, f"undecided at the {cfg.ab_budget_s:g} s budget ({pairs} pairs)"


def ab(base_rev: str, head_rev: str | None, p: params.Params, allow_missing_baseline: bool, record: Path | None = None,
       command: list[str] | None = None):
    """A/B the benchmarks of two revs (`command`: the worker and its arguments, by default the gate's own
    suite, `gate_command`); returns the report's sections and notes, or (None, [why]) with no baseline."""
    cfg = p.gate
    command = command or gate_command(p)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gate-ab-") as tmp:
        trees, workers = [], {}
        try:
            for side, rev in (("base", base_rev), ("head", head_rev)):
                if rev:
                    trees.append(_worktree(rev, Path(tmp) / side))
            dirs = {"base": trees[0], "head": trees[1] if head_rev else Path.cwd()}
            labels = {"base": f"base ({base_rev})", "head": f"head ({head_rev or 'working tree'})"}
            print(f"gate ab: starting {2 * cfg.ab_processes} benchmark workers (import, build, warm-up)",
                  file=sys.stderr, flush=True)
            workers = {side: [Worker(labels[side], dirs[side], command) for _ in range(cfg.ab_processes)]
                       for side in SIDES}
            ready = {}
            for side in SIDES:
                try:
                    ready[side] = [worker.reply() for worker in workers[side]][0]
                except WorkerError as exc:
                    if side == "base" and allow_missing_baseline and exc.nothing_to_benchmark:
                        return None, [f"no A/B baseline: {exc}"]
                    raise
            if ready["base"]["backend"] != ready["head"]["backend"]:
                raise GateUsageError(f"base runs on {ready['base']['backend']}, head on {ready['head']['backend']}: "
                                     "an A/B comparison needs one backend")
            warmup_s = time.perf_counter() - began
            names = [n for n in ready["head"]["benchmarks"] if n in ready["base"]["benchmarks"]]
            missing = [n for n in ready["head"]["benchmarks"] if n not in names]
            if not names:
                raise GateUsageError(f"base {base_rev} and head {head_rev or 'working tree'} have no benchmark in "
                                     f"common (base: {', '.join(ready['base']['benchmarks'])})")

            def progress(pairs, elapsed):
                print(f"gate ab: {pairs} pairs of {len(names)} benchmarks, {elapsed:.0f} s of "
                      f"{cfg.ab_budget_s:g} s", file=sys.stderr, flush=True)

            samples, stopped = sample(workers, names, cfg, progress)
            measured_s = time.perf_counter() - began - warmup_s
        finally:
            for worker in (w for side in workers.values() for w in side):
                worker.close()
            for tree in trees:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], capture_output=True)
    rows = [ab_verdict(name, samples.groups(name), cfg.max_slowdown, cfg.ab_confidence) for name in names]
    wall_s = time.perf_counter() - began
    notes = [f"base {base_rev} vs head {head_rev or 'working tree'}, interleaved on this machine with "
             f"{cfg.ab_processes} worker processes per side (backend {ready['head']['backend']}); "
             f"sampling {stopped}; {wall_s:.0f} s in all ({warmup_s:.0f} s starting the workers, "
             f"{measured_s:.0f} s measuring)",
             f"change: pooled slowdown [{cfg.ab_confidence:.0%} hierarchical-bootstrap interval]; a benchmark "
             f"fails when the slowdown exceeds {cfg.max_slowdown:.0%} and the interval lies above 0 (docs/gates.md)"]
    if missing:
        notes.append(f"not in base {base_rev}, so not gated: {', '.join(missing)}")
    dropped = [n for n in ready["base"]["benchmarks"] if n not in names]
    if dropped:
        notes.append(f"not in head {head_rev or 'working tree'}, so no longer gated: {', '.join(dropped)}")
    if record:
        write_text(record, json.dumps({"base": base_rev, "head": head_rev, "stopped": stopped, "wall_s": wall_s,
                                       "warmup_s": warmup_s, "measured_s": measured_s,
                                       "gate": dataclasses.asdict(cfg), "times": samples.times,
                                       "verdicts": {r.metric: r.passed for r in rows}}) + "\n")
    return {"Timing (A/B, same machine)": rows}, notes
