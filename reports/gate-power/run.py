"""Measure the A/B speed gate's error rates with real gate runs on this machine.

    .venv/bin/python reports/gate-power/run.py KIND RUNS [--base REV] [--out DIR]     (from the repository root)

KIND is one of INJECTIONS: `aa` runs `python -m pipeline.gate ab --base REV --head REV` (identical code);
the others first make a throwaway commit on top of REV (in a temporary worktree, never on a branch)
that changes the code as described below, then run `--base REV --head <that commit>`. Each run writes
its record (every step time, the verdicts) to DIR/runs/KIND-NN.json and appends one line to
DIR/runs.csv (DIR: reports/gate-power, or --out); reports/gate-power/summary.py turns those into the
rates and their intervals. Run it on an otherwise idle machine: the gate runs are what is measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
FIELDS = ("kind", "run", "base", "head", "exit", "failed", "rows_failed", "wall_s", "warmup_s", "measured_s",
          "pairs", "stopped", "record")

# A calibrated slowdown of the whole-model training steps: after each train step the benchmark spins
# for FRACTION of that step's own time (both models; inference and the LSTM cores are untouched). Only
# for bases whose gate has `<model> train step` rows (up to the commit that replaced them by the fit
# loops); from then on, `loop15` slows the same step inside the train stage's loop.
SPIN = '''

def _spin_after(step, fraction):
    """Injected slowdown (reports/gate-power): after the step, spin for `fraction` of its time."""
    import time

    def slowed():
        start = time.perf_counter()
        result = step()
        elapsed = time.perf_counter() - start
        while time.perf_counter() - start < elapsed * (1 + fraction):
            pass
        return result
    return slowed
'''
TRAIN_LINE = 'found[f"{name} train step"] = lambda m=model, x=x, y=y: m.train_on_batch(x, y)'


def spin(fraction: float):
    def edit(root: Path) -> None:
        path = root / "pipeline/lib/speed.py"
        text = path.read_text()
        assert TRAIN_LINE in text, "pipeline/lib/speed.py no longer has the train-step line to slow down"
        slowed = TRAIN_LINE.replace("= lambda", "= _spin_after(lambda").rstrip() + f", {fraction})"
        path.write_text(text.replace(TRAIN_LINE, slowed) + SPIN)
    return edit


def lstm_implementation_1(root: Path) -> None:
    """A realistic code change: the models' LSTM layers built with Keras 2's `implementation=1` (four
    small matrix products per step instead of one fused one), as a snippet copied from Keras 2 code
    would. Same math, same weights; only the kernels' shape changes."""
    path = root / "pipeline/lib/models.py"
    text = path.read_text()
    edited, count = re.subn(r"layers\.LSTM\(LSTM_UNITS, ", "layers.LSTM(LSTM_UNITS, implementation=1, ", text)
    assert count == 2, f"expected 2 LSTM layers in pipeline/lib/models.py, found {count}"
    path.write_text(edited)


# A slowdown inside the train stage's own loop, which the train-step rows do not run: a callback added to
# training.EpochLoop that spins, after every batch, for FRACTION of that batch's own time.
LOOP_SPIN = '''

class _SpinAfterEachBatch(keras.callbacks.Callback):
    """Injected slowdown (reports/gate-power): after each batch, spin for `fraction` of its time."""

    def __init__(self, fraction):
        super().__init__()
        self.fraction = fraction

    def on_train_batch_begin(self, batch, logs=None):
        self.begin = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self.begin
        while time.perf_counter() - self.begin < elapsed * (1 + self.fraction):
            pass
'''
LOOP_CALLBACKS = "callbacks=[self.timer, OneEpoch(), self.stop, *self.callbacks],"


def loop_spin(fraction: float):
    def edit(root: Path) -> None:
        path = root / "pipeline/lib/training.py"
        text = path.read_text()
        assert LOOP_CALLBACKS in text, "pipeline/lib/training.py no longer has EpochLoop's callback list"
        slowed = LOOP_CALLBACKS.replace("*self.callbacks]", f"*self.callbacks, _SpinAfterEachBatch({fraction})]")
        path.write_text(text.replace(LOOP_CALLBACKS, slowed) + LOOP_SPIN)
    return edit


INJECTIONS = {"aa": None, "slow10": spin(0.10), "slow15": spin(0.15), "slow25": spin(0.25),
              "lstm-impl1": lstm_implementation_1, "loop15": loop_spin(0.15)}


def git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def throwaway_commit(base: str, kind: str) -> str:
    """A commit on top of `base` with KIND's change, reachable by its hash only."""
    with tempfile.TemporaryDirectory(prefix="gate-power-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", "--quiet", "--end-of-options", str(tree), base)
        try:
            INJECTIONS[kind](tree)
            git("commit", "--quiet", "-am", f"throwaway: {kind} (reports/gate-power/run.py)", cwd=tree)
            return git("rev-parse", "HEAD", cwd=tree)
        finally:
            git("worktree", "remove", "--force", str(tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(INJECTIONS))
    parser.add_argument("runs", type=int)
    parser.add_argument("--base", default="HEAD", help="the commit measured (default HEAD)")
    parser.add_argument("--out", type=Path, default=HERE, help="where runs/ and runs.csv go (default: this folder)")
    args = parser.parse_args()
    RUNS, CSV = args.out / "runs", args.out / "runs.csv"
    if args.base.startswith("-"):
        sys.exit(f"--base {args.base!r}: a revision cannot start with '-'")
    base = git("rev-parse", "--short", "--verify", "--end-of-options", args.base)
    head = base if args.kind == "aa" else throwaway_commit(base, args.kind)[:7]
    RUNS.mkdir(parents=True, exist_ok=True)
    done = [p for p in RUNS.glob(f"{args.kind}-*.json")]
    new_file = not CSV.exists()
    for i in range(len(done) + 1, len(done) + args.runs + 1):
        record = RUNS / f"{args.kind}-{i:02d}.json"
        start = time.perf_counter()
        gate = subprocess.run([sys.executable, "-m", "pipeline.gate", "ab", "--base", base, "--head", head,
                               "--record", str(record)], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if gate.returncode not in (0, 1):
            sys.exit(f"gate run {i} exited {gate.returncode}: {(gate.stderr.strip().splitlines() or ['?'])[-1]}")
        rec = json.loads(record.read_text())
        failed = [name for name, passed in rec["verdicts"].items() if not passed]
        pairs = min(sum(len(p) for p in sides["head"]) for sides in rec["times"].values())
        row = dict(kind=args.kind, run=i, base=base, head=head, exit=gate.returncode, failed=int(bool(failed)),
                   rows_failed=";".join(failed), wall_s=round(wall, 1), warmup_s=round(rec["warmup_s"], 1),
                   measured_s=round(rec["measured_s"], 1), pairs=pairs, stopped=rec["stopped"],
                   record=str(record.relative_to(args.out)))
        with CSV.open("a", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            if new_file:
                writer.writeheader()
                new_file = False
            writer.writerow(row)
        print(f"{args.kind} {i}: exit {gate.returncode}, {wall:.0f} s, {pairs} pairs, {rec['stopped']}; "
              f"failed: {', '.join(failed) or '-'}", flush=True)


if __name__ == "__main__":
    main()
