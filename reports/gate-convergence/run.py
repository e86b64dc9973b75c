"""Runs of the per-commit profile's train stage, unchanged or with a convergence regression, as run records.

    .venv/bin/python reports/gate-convergence/run.py ARM SEED [SEED ...] [--base REV]   (from the repository root)

Each run checks out REV (default HEAD) in a temporary worktree, applies ARM's code change (none for
`unchanged`), sets params.yaml's train.seed to SEED and runs the train stage of every model
(`python -m pipeline.stages.train <model>`: the same code `dvc repro` runs, on the prepared arrays of
this checkout's data/prepared, which must hold the profile's 10k/2k split). The record, a run directory
in the layout of pipeline/runs.py (run.yaml, params.yaml, metrics/train-<model>.json,
plots/train-<model>.csv and plots/heldout-<model>.csv, and patch.diff for a regression), goes to

- reports/runs/curve-10k-seed<SEED>/ for `unchanged`: a profile run, one seed of the convergence
  reference and of the false-alarm measurement (reports/gate-convergence/summary.py);
- reports/gate-convergence/runs/<ARM>-seed<SEED>/ for a regression.

A record that exists is skipped, so a campaign cut short goes on where it was. The regressions change
how fast a model learns and leave its step time alone:

- `lr3`: the learning rate handed to Adam divided by 3 (a units mix-up in a refactor);
- `lrx3`: the same mix-up the other way, multiplied by 3 (added once lr3's first runs had shown that a
  lower rate speeds these raw-pixel recipes up rather than slowing them);
- `init`: every kernel's initial values multiplied by INIT_SCALE (a mis-scaled initialiser);
- `labels5`: the labels of a seeded 5% of the training images shuffled among themselves (a data-order
  or join bug that mislabels a few images);
- `labels20`: the same for 20% of them (added with lrx3, to see how detection grows with the share).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from pipeline import profiles  # noqa: E402
from pipeline.lib import registry  # noqa: E402

INIT_SCALE = 3.0
BUILD_LINE = "model = logits if FROM_LOGITS[loss] else classifier(logits)"
ADAM_LINE = "optimizer=keras.optimizers.Adam(learning_rate=learning_rate),"
TARGETS_LINE = "targets = keras.utils.to_categorical(split.labels, models.NUM_CLASSES)"


def _edit(root: Path, path: str, old: str, new: str) -> None:
    file = root / path
    text = file.read_text()
    assert text.count(old) == 1, f"{path} no longer has the line this regression edits: {old}"
    file.write_text(text.replace(old, new))


def lr3(root: Path) -> None:
    _edit(root, "pipeline/lib/models.py", ADAM_LINE, "optimizer=keras.optimizers.Adam(learning_rate=learning_rate / 3),")


def lrx3(root: Path) -> None:
    _edit(root, "pipeline/lib/models.py", ADAM_LINE, "optimizer=keras.optimizers.Adam(learning_rate=learning_rate * 3),")


def init(root: Path) -> None:
    _edit(root, "pipeline/lib/models.py", BUILD_LINE,
          BUILD_LINE + f"\n    for w in logits.weights:  # injected: mis-scaled initial kernels"
                       f"\n        if w.path.endswith('kernel'):\n            w.assign(w * {INIT_SCALE})")


def shuffled_labels(percent: int):  # percent: a divisor of 100
    def edit(root: Path) -> None:
        _edit(root, "pipeline/lib/training.py", TARGETS_LINE,
              f"labels = split.labels.copy()  # injected: {percent}% of the labels shuffled among themselves\n"
              f"        some = np.random.default_rng(seed).choice(len(labels), len(labels) // {100 // percent}, "
              "replace=False)\n"
              "        labels[some] = np.random.default_rng(seed + 1).permutation(labels[some])\n"
              "        targets = keras.utils.to_categorical(labels, models.NUM_CLASSES)")
    return edit


ARMS = {"unchanged": None, "lr3": lr3, "lrx3": lrx3, "init": init, "labels5": shuffled_labels(5),
        "labels20": shuffled_labels(20)}


def git(*args, cwd=ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def destination(arm: str, seed: int) -> Path:
    if arm == "unchanged":
        return ROOT / "reports/runs" / f"curve-10k-seed{seed}"
    return ROOT / "reports/gate-convergence/runs" / f"{arm}-seed{seed}"


def run(arm: str, seed: int, base: str) -> None:
    dest = destination(arm, seed)
    if dest.exists():
        print(f"{dest.relative_to(ROOT)} exists: skipped", flush=True)
        return
    sha = git("rev-parse", "--verify", f"{base}^{{commit}}")
    work = Path(tempfile.mkdtemp(prefix=f"conv-{arm}-{seed}-"))
    tree = work / "tree"
    git("worktree", "add", "--detach", str(tree), sha)
    try:
        if ARMS[arm]:
            ARMS[arm](tree)
        (tree / "data").mkdir()
        (tree / "data/prepared").symlink_to(ROOT / "data/prepared")
        settings = yaml.safe_load((tree / "params.yaml").read_text())
        (tree / "params.yaml").write_text(yaml.safe_dump(profiles.apply(settings, {"train.seed": seed}),
                                                         sort_keys=False))
        began = datetime.datetime.now(datetime.timezone.utc)
        for model in registry.names():
            subprocess.run([sys.executable, "-m", "pipeline.stages.train", model], cwd=tree, check=True)
        staging = work / "record"
        files = [f"metrics/train-{m}.json" for m in registry.names()]
        files += [f"plots/{kind}-{m}.csv" for m in registry.names() for kind in ("train", "heldout")]
        for path in ["params.yaml", *files]:
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(tree / path, staging / path)
        patch = git("diff", "--", "pipeline", cwd=tree)
        if patch:
            (staging / "patch.diff").write_text(patch + "\n")
        record = {"name": dest.name, "rev": sha, "timestamp": began.isoformat(timespec="seconds"), "arm": arm,
                  "seed": seed, "files": files,
                  "made_with": f".venv/bin/python reports/gate-convergence/run.py {arm} {seed} --base {sha[:7]}"}
        (staging / "run.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(dest))
        print(f"{arm} seed {seed} -> {dest.relative_to(ROOT)}", flush=True)
    finally:
        git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arm", choices=ARMS)
    parser.add_argument("seeds", type=int, nargs="+")
    parser.add_argument("--base", default="HEAD")
    args = parser.parse_args()
    for seed in args.seeds:
        run(args.arm, seed, args.base)


if __name__ == "__main__":
    main()
