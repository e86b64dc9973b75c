"""Gate a change on accuracy and speed, with a markdown report for a pull-request comment.

    python -m pipeline.gate compare [--baseline REV | --baseline-dir DIR] [--current-dir DIR] [--report FILE]
    python -m pipeline.gate ab [--base REV] [--head REV] [--pairs N] [--report FILE] [--allow-missing-baseline]

`compare` reads the metrics in the workspace (or --current-dir) and those committed at REV (default
`main`, read with `git show`, so no checkout or DVC cache is needed) or kept in --baseline-dir:
- accuracy: a model fails when its test_accuracy drops by more than gate.max_accuracy_drop.<model>;
- timing: the train stages' step time and the lstm-step cores' CPU step time, noise-aware
  (`timing_verdict`). Runs of different settings (epochs, images, seed, ...) are refused, exit 2.

`ab` measures the base rev and the head rev (default: the working tree) on this machine in one job:
one worker process per rev, each building the LSTM core training steps from its own rev's code
(`pipeline.steps.make_train_step`), driven in interleaved pairs (A B, B A, A B, ...), and gates on
the per-pair time ratio (`ab_verdict`); `gate.ab_processes` independent worker pairs guard against a
process that is slow for its whole life. This is the mode for speed in CI: absolute times taken in
different runs or on different machines are not comparable; times taken side by side are.

Exit status: 0 pass, 1 a gate failed, 2 a usage error (no baseline, missing metric, unreadable file),
the last two with one clear line on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import cli, params
from pipeline.atomic import write_text

# A median's standard error is about 1.2533 * sigma / sqrt(n) for normal noise, and sigma is about
# IQR / 1.349: the conversion used for the spread that the metrics record.
MEDIAN_SE_PER_IQR = 1.2533 / 1.349
SETTINGS = ("epochs", "train_images", "batch_size", "learning_rate", "seed", "normalize")
WORKER = Path(__file__).with_name("ab_worker.py")


class GateUsageError(cli.UsageError):
    """No baseline, a missing metric or an unreadable file: exit 2."""


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
class Row:
    metric: str
    baseline: str
    current: str
    change: str
    allowed: str
    passed: bool


def accuracy_verdict(metric: str, baseline: float, current: float, max_drop: float) -> Row:
    """Fail when accuracy falls by more than `max_drop` (absolute); a rise always passes."""
    change = current - baseline
    return Row(metric, f"{baseline:.4f}", f"{current:.4f}", f"{change:+.4f}", f">= {-max_drop:+.4f}",
               change >= -max_drop)


def timing_verdict(metric: str, baseline: Timing, current: Timing, max_slowdown: float, z: float) -> Row:
    """Fail only when the slowdown exceeds both `max_slowdown` and the measured noise.

    slowdown = current / baseline - 1 (of the medians). noise = z * sqrt(se_b^2 + se_c^2) / baseline,
    where se is the standard error of each median from its recorded IQR and count. A change within
    the noise is not evidence of anything, however large; a change beyond the noise but within the
    threshold is real but tolerated.
    """
    slowdown = current.median_ms / baseline.median_ms - 1
    noise = z * math.hypot(baseline.standard_error_ms, current.standard_error_ms) / baseline.median_ms
    return Row(
        metric,
        f"{baseline.median_ms:.2f} ms (IQR {baseline.iqr_ms:.2f}, n={baseline.n})",
        f"{current.median_ms:.2f} ms (IQR {current.iqr_ms:.2f}, n={current.n})",
        f"{slowdown:+.1%}",
        f"<= {max_slowdown:+.1%} or within noise {noise:.1%}",
        not (slowdown > max_slowdown and slowdown > noise),
    )


def _median_ratio_ci(base_ms, head_ms, confidence: float, seed: int) -> tuple[float, float, float]:
    ratios = np.asarray(head_ms, float) / np.asarray(base_ms, float)
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(ratios, size=(2000, len(ratios)), replace=True), axis=1)
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(np.median(ratios)), float(low), float(high)


def ab_verdict(metric: str, groups, max_slowdown: float, confidence: float, seed: int = 0) -> Row:
    """Gate interleaved (base, head) time pairs on the per-pair ratio head / base.

    `groups` holds one (base_ms, head_ms) list pair per pair of worker processes. Within a group the
    ratio's noise is measured by bootstrapping its median; a group shows a regression when its median
    slowdown exceeds `max_slowdown` and its lower confidence bound is above 1 (the slowdown is larger
    than both the threshold and the measured noise). The verdict fails only when every group shows
    it: a process can land on a slower core or memory layout for its whole life (seen here in an
    A/A run: +9% for identical code), which interleaving inside one process pair cannot cancel.
    """
    per_group = [_median_ratio_ci(b, h, confidence, seed) for b, h in groups]
    regressed = [ratio - 1 > max_slowdown and low > 1 for ratio, low, _ in per_group]
    base_all = np.concatenate([np.asarray(b, float) for b, _ in groups])
    head_all = np.concatenate([np.asarray(h, float) for _, h in groups])
    overall = float(np.median(head_all / base_all))
    detail = "; ".join(f"{r - 1:+.1%} [{lo - 1:+.1%} .. {hi - 1:+.1%}]" for r, lo, hi in per_group)
    return Row(
        metric,
        f"{np.median(base_all):.2f} ms",
        f"{np.median(head_all):.2f} ms",
        f"{overall - 1:+.1%} ({len(base_all)} pairs; per process pair, {confidence:.0%} CI: {detail})",
        f"<= {max_slowdown:+.1%}",
        not all(regressed),
    )


def markdown(title: str, sections: dict[str, list[Row]], notes: list[str]) -> str:
    lines = [f"## {title}", ""]
    failed = sum(not r.passed for rows in sections.values() for r in rows)
    lines += [f"**{'FAIL' if failed else 'PASS'}**: {failed} of "
              f"{sum(len(rows) for rows in sections.values())} checks failed.", ""]
    for name, rows in sections.items():
        lines += [f"### {name}", "", "| metric | baseline | current | change | allowed | verdict |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r.metric} | {r.baseline} | {r.current} | {r.change} | {r.allowed} | "
                  f"{'pass' if r.passed else '**FAIL**'} |" for r in rows]
        lines.append("")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- compare mode


def _read_metrics(source: str, names: list[str], read) -> dict:
    metrics = {}
    for name in names:
        try:
            metrics[name] = json.loads(read(name))
        except (OSError, subprocess.CalledProcessError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            detail = getattr(exc, "stderr", "") or exc
            raise GateUsageError(f"{source}: cannot read {name}: {str(detail).strip().splitlines()[0]}") from None
    return metrics


def metrics_at_rev(rev: str, metrics_dir: str, names: list[str]) -> dict:
    def read(name):
        return subprocess.run(["git", "show", f"{rev}:{metrics_dir}/{name}"], capture_output=True,
                              text=True, check=True).stdout
    return _read_metrics(f"baseline {rev}", names, read)


def metrics_in_dir(directory: Path, names: list[str], label: str) -> dict:
    return _read_metrics(label, names, lambda name: (directory / name).read_text())


def _get(metrics: dict, file: str, *keys):
    value = metrics[file]
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise GateUsageError(f"{file}: missing metric {'.'.join(keys)}")
        value = value[key]
    return value


def metric_files(paths: params.Paths) -> dict[str, str]:
    """The file name, inside the metrics directory, of each metrics file the gate reads."""
    files = {f"{kind}-{m}": Path(path(m)).name for m in params.MODEL_NAMES
             for kind, path in (("train", paths.train_metrics), ("evaluate", paths.evaluate_metrics))}
    return {**files, "lstm-step": Path(paths.lstm_step_metrics).name}


def compare(base: dict, cur: dict, cfg: params.Gate, files: dict[str, str]) -> tuple[dict[str, list[Row]], list[str]]:
    """Accuracy and timing rows of `cur` against `base`, both keyed by the names in `files`."""
    notes = []
    for model in params.MODEL_NAMES:
        file = files[f"train-{model}"]
        differ = [f"{k} {base[file].get(k)} vs {cur[file].get(k)}" for k in SETTINGS
                  if base[file].get(k) != cur[file].get(k)]
        if differ:
            raise GateUsageError(f"{file}: baseline and current come from different settings ({'; '.join(differ)}); "
                                 "compare runs of the same profile")
    accuracy = [
        accuracy_verdict(f"{m} test_accuracy", _get(base, files[f"evaluate-{m}"], "test_accuracy"),
                         _get(cur, files[f"evaluate-{m}"], "test_accuracy"), cfg.max_accuracy_drop.of(m))
        for m in params.MODEL_NAMES
    ]
    timing = []
    for m in params.MODEL_NAMES:
        file = files[f"train-{m}"]
        pick = lambda d: Timing(_get(d, file, "step_time_ms_median"), _get(d, file, "step_time_ms_iqr"),  # noqa: E731
                                _get(d, file, "timed_steps"))
        timing.append(timing_verdict(f"train-{m} step time", pick(base), pick(cur), cfg.max_slowdown, cfg.noise_z))
    for core in params.MODEL_NAMES:
        pick = lambda d: Timing(*(_get(d, files["lstm-step"], core, "cpu_generic", k)  # noqa: E731
                                  for k in ("step_time_ms_median", "step_time_ms_iqr", "rounds")))
        timing.append(timing_verdict(f"lstm-step {core} core, CPU step", pick(base), pick(cur), cfg.max_slowdown,
                                     cfg.noise_z))
    devices = {d[files[f"train-{params.MODEL_NAMES[0]}"]].get("device_name") for d in (base, cur)}
    if len(devices) > 1:
        notes.append(f"timings come from different devices ({' vs '.join(sorted(map(str, devices)))}): "
                     "prefer `python -m pipeline.gate ab` for speed")
    return {"Accuracy": accuracy, "Timing": timing}, notes


# ---------------------------------------------------------------- A/B mode


class Worker:
    """One rev's benchmark process (pipeline/ab_worker.py), driven line by line over pipes."""

    def __init__(self, label: str, rev_dir: Path, batch: int, warmup: int):
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(rev_dir), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, str(WORKER), "--batch", str(batch), "--warmup", str(warmup)], cwd=rev_dir, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            raise GateUsageError(f"{self.label}: benchmark worker exited: {err[-1] if err else 'no output'}")
        return json.loads(line)

    def step(self, core: str) -> float:
        self.proc.stdin.write(core + "\n")
        self.proc.stdin.flush()
        return self.reply()["ms"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _worktree(rev: str, into: Path) -> Path:
    result = subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(into), rev],
                            capture_output=True, text=True)
    if result.returncode:
        raise GateUsageError(f"git rev {rev!r}: cannot check out: {result.stderr.strip().splitlines()[-1]}")
    return into


def ab(base_rev: str, head_rev: str | None, cfg: params.Gate, batch: int, allow_missing_baseline: bool):
    with tempfile.TemporaryDirectory(prefix="gate-ab-") as tmp:
        dirs = {"base": _worktree(base_rev, Path(tmp) / "base")}
        dirs["head"] = _worktree(head_rev, Path(tmp) / "head") if head_rev else Path.cwd()
        labels = {"base": f"base ({base_rev})", "head": f"head ({head_rev or 'working tree'})"}
        workers = {side: [Worker(labels[side], dirs[side], batch, cfg.ab_warmup) for _ in range(cfg.ab_processes)]
                   for side in dirs}
        try:
            ready = {}
            for side in workers:
                try:
                    ready[side] = [worker.reply() for worker in workers[side]][0]
                except GateUsageError as exc:
                    if side == "base" and allow_missing_baseline:
                        return None, [f"no A/B baseline: {exc}"]
                    raise
            cores = ready["head"]["cores"]
            # times[side][core][process] -> list of ms; pair i runs on worker pair i % processes,
            # base first on even pairs and head first on odd ones.
            times = {side: {core: [[] for _ in range(cfg.ab_processes)] for core in cores} for side in workers}
            start = time.perf_counter()
            for i in range(cfg.ab_pairs):
                proc = i % cfg.ab_processes
                order = ("base", "head") if (i // cfg.ab_processes) % 2 == 0 else ("head", "base")
                for core in cores:
                    for side in order:
                        times[side][core][proc].append(workers[side][proc].step(core))
                print(f"gate ab: pair {i + 1}/{cfg.ab_pairs}", file=sys.stderr, flush=True)
            seconds = time.perf_counter() - start
        finally:
            for worker in (w for side in workers.values() for w in side):
                worker.close()
            if head_rev:
                subprocess.run(["git", "worktree", "remove", "--force", str(dirs["head"])], capture_output=True)
            subprocess.run(["git", "worktree", "remove", "--force", str(dirs["base"])], capture_output=True)
    rows = [ab_verdict(f"LSTM {core} core CPU train step", list(zip(times["base"][core], times["head"][core])),
                       cfg.max_slowdown, cfg.ab_confidence) for core in cores]
    notes = [f"base {base_rev} vs head {head_rev or 'working tree'}, interleaved on this machine "
             f"with {cfg.ab_processes} worker process(es) per side; "
             f"measurement took {seconds:.1f} s (warm-up {ready['head']['warmup_s']:.1f} s, "
             f"backend {ready['head']['backend']})"]
    return {"Timing (A/B, same machine)": rows}, notes


# ---------------------------------------------------------------- command line


def _gate(argv) -> int:
    parser = cli.ArgumentParser(prog="python -m pipeline.gate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    cmp_ = sub.add_parser("compare", help="current metrics against a baseline rev or directory")
    cmp_.add_argument("--baseline", default="main", help="git rev whose committed metrics are the baseline")
    cmp_.add_argument("--baseline-dir", type=Path, help="a directory of baseline metrics instead of a rev")
    cmp_.add_argument("--current-dir", type=Path, help="current metrics (default: paths.metrics_dir)")
    ab_ = sub.add_parser("ab", help="interleaved same-machine timing of two revs")
    ab_.add_argument("--base", default="HEAD~1", help="baseline git rev (default HEAD~1)")
    ab_.add_argument("--head", help="head git rev (default: the working tree)")
    ab_.add_argument("--pairs", type=int, help="interleaved pairs (default gate.ab_pairs)")
    ab_.add_argument("--allow-missing-baseline", action="store_true",
                     help="pass with a notice when the base rev cannot be benchmarked (e.g. it predates the hook)")
    for p in (cmp_, ab_):
        p.add_argument("--report", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    p = params.load()
    cfg = p.gate if not getattr(args, "pairs", None) else dataclasses.replace(p.gate, ab_pairs=args.pairs)
    if args.mode == "compare":
        files = metric_files(p.paths)
        current_dir = args.current_dir or Path(p.paths.metrics_dir)
        cur = metrics_in_dir(current_dir, list(files.values()), f"current {current_dir}")
        if args.baseline_dir:
            base = metrics_in_dir(args.baseline_dir, list(files.values()), f"baseline {args.baseline_dir}")
            label = str(args.baseline_dir)
        else:
            base = metrics_at_rev(args.baseline, p.paths.metrics_dir, list(files.values()))
            label = args.baseline
        sections, notes = compare(base, cur, cfg, files)
        title = f"Gate: {current_dir} against {label}"
    else:
        sections, notes = ab(args.base, args.head, cfg, p.train.batch_size, args.allow_missing_baseline)
        title = f"Gate (A/B): {args.head or 'working tree'} against {args.base}"
        if sections is None:
            print(f"## {title}\n\n- {notes[0]}; speed not gated.")
            return 0
    report = markdown(title, sections, notes)
    print(report)
    if args.report:
        write_text(args.report, report)
    failed = [r.metric for rows in sections.values() for r in rows if not r.passed]
    if failed:
        print(f"pipeline.gate: FAIL: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """The gate's exit status: 0 pass, 1 a gate failed, 2 a usage error (any error is one line)."""
    return cli.run(_gate, argv, prog="pipeline.gate", error_exit=2)


if __name__ == "__main__":
    sys.exit(main())
