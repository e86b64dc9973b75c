"""Gate a change on accuracy and speed, with a markdown report for a pull-request comment.

    python -m pipeline.gate compare [--baseline REV | --baseline-dir DIR] [--current-dir DIR] [--report FILE]
    python -m pipeline.gate ab [--base REV] [--head REV] [--processes N] [--min-pairs N] [--max-pairs N]
                               [--budget-s S] [--record FILE] [--report FILE] [--allow-missing-baseline]
    python -m pipeline.gate ab --list

`compare` gates accuracy. It reads the metrics in the workspace (or --current-dir) and those committed
at REV (default `main`, read with `git show`, so no checkout or DVC cache is needed) or kept in
--baseline-dir. A model fails when its test accuracy drops by more than models.<model>.max_accuracy_drop,
decided in correctly classified images (`accuracy_verdict`): on 2,000 test images a tolerance of 0.03
allows a drop of exactly 60 images, and 61 fail, whatever the baseline. The models are the registry's
(pipeline/registry.py): one the baseline has no metrics of is a new, advisory row; one the baseline has
and the registry no longer does is a removed, advisory row.
Runs of different settings (any of `SETTINGS`: image counts, epochs and limits, loss, learning rate, seed,
normalization, distribution, backend, lstm-step settings) are refused, exit 2. Its timing rows are advisory (`timing_advisory`): times from
two runs differ by more than their within-run noise, so they never fail the gate.

`ab` gates speed. It measures the base rev and the head rev (default: the working tree) side by side on
this machine: `gate.ab_processes` worker processes per rev (pipeline/ab_worker.py), each timing its own
rev's benchmarks (pipeline/speed.py: each model's fit loop, the train stage's own epoch loop over a
few batches, and its inference batch), driven in interleaved rounds (`sample`). Each benchmark is one
row: the slowdown pooled over the worker pairs with a hierarchical-bootstrap interval
(`pooled_slowdown`), failing when the slowdown exceeds gate.max_slowdown and the interval lies above 0
(`regressed`). Sampling stops once every
interval lies on one side of the allowance, or at gate.ab_max_pairs / gate.ab_budget_s. The command-line
overrides go through the same checks as params.yaml. docs/gates.md has the measured error rates.
`ab` imports and runs the code of both revisions: use it on revisions whose code you trust.

Exit status: 0 pass, 1 a gate failed, 2 a usage error (no baseline, missing metric, unreadable file,
different settings, an invalid override), the last ones with one clear line on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import cli, params, profiles, registry
from pipeline.atomic import write_text
from pipeline.gitcmd import git, revision

# A median's standard error is about 1.2533 * sigma / sqrt(n) for normal noise, and sigma is about
# IQR / 1.349: the conversion used for the spread that the metrics record.
MEDIAN_SE_PER_IQR = 1.2533 / 1.349
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
    advisory: bool = False  # reported, never fails: timing compared across runs (compare mode)


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
    machine, its load, the process's memory layout): two runs of the benchmark profile on main, with no
    timed code changed between them, differed by -11% in sequential training throughput, +40% in
    sequential inference throughput and +13% in the sequential LSTM core's step time
    (docs/benchmarks.md). Speed is gated by `ab` instead.
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


def markdown(title: str, sections: dict[str, list[Row]], notes: list[str]) -> str:
    lines = [f"## {title}", ""]
    failed = sum(not r.passed for rows in sections.values() for r in rows)
    checks = sum(not r.advisory for rows in sections.values() for r in rows)
    lines += [f"**{'FAIL' if failed else 'PASS'}**: {failed} of {checks} checks failed.", ""]
    for name, rows in sections.items():
        lines += [f"### {name}", "", "| metric | baseline | current | change | allowed | verdict |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r.metric} | {r.baseline} | {r.current} | {r.change} | {r.allowed} | "
                  f"{'advisory' if r.advisory else 'pass' if r.passed else '**FAIL**'} |" for r in rows]
        lines.append("")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- compare mode


def _read_metrics(source: str, names: list[str], read) -> dict:
    metrics = {}
    for name in names:
        try:
            metrics[name] = json.loads(read(name))
        except (OSError, params.PipelineError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GateUsageError(f"{source}: cannot read {name}: {(str(exc).strip().splitlines() or ['?'])[0]}") from None
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


# What must be equal for two runs to be compared, per metrics file kind: everything that changes the
# accuracy (image counts, limits, loss, learning rate, seed, distribution, backend) or what lstm-step times.
SETTINGS = {
    "train": ("model", "epochs", "epochs_completed", "train_images", "batch_size", "learning_rate", "loss", "seed",
              "normalize", "distribution", "replicas", "processes", "time_limit_s", "backend"),
    "evaluate": ("model", "test_images", "backend"),
    "lstm-step": ("batch_size", "units", "warmup_steps", "rounds", "backend", "float32", "cpu_sgemm_n",
                  "gpu_sgemm_n"),
}


def changed_settings(base: dict, cur: dict, files: dict[str, str]) -> dict[str, str]:
    """{file key: what differs} for every file whose settings differ between the runs."""
    changed = {}
    for key, file in files.items():
        kind = key if key in SETTINGS else key.split("-")[0]
        missing = "(not recorded)"
        differ = [f"{k} {base[file].get(k, missing)} vs {cur[file].get(k, missing)}" for k in SETTINGS[kind]
                  if base[file].get(k, missing) != cur[file].get(k, missing)]
        if differ:
            changed[key] = f"{file}: baseline and current come from different settings ({'; '.join(differ)})"
    return changed


def _shown(metrics: dict, file: str) -> str:
    score = scored(metrics, file)
    return f"{float(score.accuracy):.4f} ({score.correct} of {score.images})"


def compare(base: dict, cur: dict, cfg: params.Gate, files: dict[str, str], drops: dict[str, float],
            allow_new_settings: bool = False, removed: dict[str, str] | None = None) -> tuple[dict[str, list[Row]], list[str]]:
    """Accuracy rows (gated) and timing rows (advisory) of `cur` against `base`, keyed by `files`.

    `drops` holds each current model's allowed accuracy drop (params.yaml's models.<model>.max_accuracy_drop).
    A current model whose files `base` lacks is new: an advisory row. `removed` ({model: its evaluate file in
    `base`}) are the baseline's models that the current run no longer has: an advisory row each.
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
    for core in (m for m in common if m in registry.lstm_cores()):
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
    notes += [f"{why}: its accuracy is not gated at this commit" for why in changed.values()]
    if devices[0] != devices[1]:
        notes.append(f"timings come from different devices ({devices[0]} vs {devices[1]})")
    return {"Accuracy": accuracy, "Timing (advisory, across runs)": timing}, notes


# ---------------------------------------------------------------- A/B mode


# How long a worker may take: to start (import, build, warm up six benchmarks; 35-50 s for 6 workers
# sharing 2 cores, docs/gates.md) and for one step (up to about 2 s). Past these the gate stops with one
# line, no hang.
START_TIMEOUT_S = 600
STEP_TIMEOUT_S = 120
NOTHING_TO_BENCHMARK = 3  # pipeline/ab_worker.py's exit status for a rev without benchmarks


class SettingsChanged(GateUsageError):
    """The two runs come from different settings: there is nothing to compare."""


class WorkerError(GateUsageError):
    """A benchmark worker died, hung or answered nonsense: exit 2, one line."""

    def __init__(self, message: str, nothing_to_benchmark: bool = False):
        super().__init__(message)
        self.nothing_to_benchmark = nothing_to_benchmark


class Worker:
    """One rev's benchmark process (pipeline/ab_worker.py), driven line by line over pipes."""

    def __init__(self, label: str, rev_dir: Path, p: params.Params):
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(rev_dir), "PYTHONUNBUFFERED": "1"}
        args = ["--batch", p.train.batch_size, "--inference-batch", p.evaluate.batch_size,
                "--learning-rate", p.train.learning_rate, "--loss", p.train.loss, "--warmup", p.gate.ab_warmup]
        # stderr to a file, not a pipe: a worker that logs more than a pipe holds would block on it
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], cwd=rev_dir, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def _failed(self, what: str, exit_wait_s: float = 10) -> WorkerError:
        try:  # a worker whose stdout closed is exiting: let it, so that its exit status is its own
            code = self.proc.wait(timeout=exit_wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.stderr.seek(0)
        err = self.stderr.read().strip().splitlines()
        return WorkerError(f"{self.label}: benchmark worker {what}: {err[-1] if err else 'no output'}",
                           nothing_to_benchmark=code == NOTHING_TO_BENCHMARK)

    def reply(self, timeout_s: float | None = None) -> dict:
        timeout_s = START_TIMEOUT_S if timeout_s is None else timeout_s
        # one request, one line: nothing is left in the reader's buffer between replies, so select() on
        # the pipe tells whether the next line has started to arrive
        if not select.select([self.proc.stdout], [], [], timeout_s)[0]:
            raise self._failed(f"gave no answer in {timeout_s:g} s", exit_wait_s=0)
        line = self.proc.stdout.readline()
        if not line:
            raise self._failed("exited")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise self._failed(f"answered {line.strip()[:80]!r}", exit_wait_s=0) from None

    def step(self, name: str) -> float:
        try:
            self.proc.stdin.write(name + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise self._failed("exited") from None
        return self.reply(STEP_TIMEOUT_S)["ms"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()


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


def ab(base_rev: str, head_rev: str | None, p: params.Params, allow_missing_baseline: bool, record: Path | None = None):
    cfg = p.gate
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
            workers = {side: [Worker(labels[side], dirs[side], p) for _ in range(cfg.ab_processes)] for side in SIDES}
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


# ---------------------------------------------------------------- command line


# Command-line overrides of the A/B settings: (flag, gate key, type); each goes through params' checks.
AB_OVERRIDES = (("--processes", "ab_processes", int), ("--min-pairs", "ab_min_pairs", int),
                ("--max-pairs", "ab_max_pairs", int), ("--budget-s", "ab_budget_s", float))


def with_overrides(overrides: dict, path: Path = params.PARAMS_FILE) -> params.Params:
    """params.yaml with dotted-key `overrides`, read once and validated exactly as the file itself is."""
    return params.parse(profiles.apply(params.load_mapping(path), overrides), f"{path} with the command-line overrides")


def _gate(argv) -> int:
    parser = cli.ArgumentParser(prog="python -m pipeline.gate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    cmp_ = sub.add_parser("compare", help="current metrics against a baseline rev or directory")
    cmp_.add_argument("--baseline", default="main", help="git rev whose committed metrics are the baseline")
    cmp_.add_argument("--baseline-dir", type=Path, help="a directory of baseline metrics instead of a rev")
    cmp_.add_argument("--current-dir", type=Path, help="current metrics (default: paths.metrics_dir)")
    cmp_.add_argument("--allow-new-settings", action="store_true",
                      help="a model whose settings changed gets an advisory accuracy row (a commit that changed "
                           "the profile); the other model is still gated")
    ab_ = sub.add_parser("ab", help="interleaved same-machine timing of two revs (runs the code of both: "
                                    "use it on revisions you trust)",
                         description="Time the benchmarks of two revisions side by side on this machine. "
                                     "It imports and runs the code of BOTH revisions (their pipeline/speed.py and "
                                     "what it imports): use it only on revisions whose code you trust.")
    ab_.add_argument("--base", default="HEAD~1", help="baseline git rev (default HEAD~1)")
    ab_.add_argument("--head", help="head git rev (default: the working tree)")
    for flag, key, kind in AB_OVERRIDES:
        ab_.add_argument(flag, dest=key, type=kind, metavar="N", help=f"override gate.{key} (checked like params.yaml)")
    ab_.add_argument("--record", type=Path, help="also write every step time and the verdicts here (JSON)")
    ab_.add_argument("--list", action="store_true",
                     help="print the head's benchmark rows (the working tree's pipeline/speed.py) and measure nothing")
    ab_.add_argument("--allow-missing-baseline", action="store_true",
                     help="pass with a notice when the base rev cannot be benchmarked (e.g. it predates the hook)")
    for p in (cmp_, ab_):
        p.add_argument("--report", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    for option in ("baseline", "base", "head"):
        if getattr(args, option, None) is not None:
            revision(getattr(args, option), f"--{option}")
    overrides = {f"gate.{key}": getattr(args, key) for _, key, _ in AB_OVERRIDES
                 if getattr(args, key, None) is not None}
    p = with_overrides(overrides) if overrides else params.load()
    cfg = p.gate
    if args.mode == "compare":
        current = registry.names()
        current_dir = args.current_dir or Path(p.paths.metrics_dir)
        cur = metrics_in_dir(current_dir, list(metric_files(p.paths, current).values()), f"current {current_dir}")
        if args.baseline_dir:
            present, label = files_in_dir(args.baseline_dir), str(args.baseline_dir)
            read = lambda names: metrics_in_dir(args.baseline_dir, names, f"baseline {args.baseline_dir}")  # noqa: E731
        else:
            present, label = files_at_rev(args.baseline, p.paths.metrics_dir), args.baseline
            read = lambda names: metrics_at_rev(args.baseline, p.paths.metrics_dir, names)  # noqa: E731
        # the baseline's models: those it has files of (a current model it lacks entirely is new); with no
        # model's file there at all, every current model's files are required, so the error names one
        in_base = models_in(present, p.paths) or current
        base = read(list(metric_files(p.paths, in_base).values()))
        gone = [m for m in in_base if m not in current]
        removed = {m: metric_files(p.paths, [m])[f"evaluate-{m}"] for m in gone}
        files = metric_files(p.paths, current)
        title = f"Gate: {current_dir} against {label}"
        drops = {m: p.models[m].max_accuracy_drop for m in current}
        sections, notes = compare(base, cur, cfg, files, drops, args.allow_new_settings, removed)
    elif args.list:
        from pipeline import speed  # the working tree's rows; nothing is built or run

        cli.emit("\n".join(speed.names()))
        return 0
    else:
        sections, notes = ab(args.base, args.head, p, args.allow_missing_baseline, args.record)
        title = f"Gate (A/B): {args.head or 'working tree'} against {args.base}"
        if sections is None:
            notes = [f"{notes[0]}; speed not gated"]
    if sections is None:
        report = f"## {title}\n\n- {notes[0]}.\n"
        cli.emit(report)
        if args.report:
            write_text(args.report, report)
        return 0
    report = markdown(title, sections, notes)
    cli.emit(report)
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
