#!/usr/bin/env bash
# The whole `preprocess` stage and `cifar.load_archive` alone, with the reader of this checkout and
# with the one at BEFORE (default 2cfdd19, in a temporary worktree), interleaved, in fresh processes:
#   bash reports/unpickler-speed/stage.sh [ROUNDS] [BEFORE]      (from the repository root)
# Needs data/cifar-10-python.tar.gz (make repro-mirror, or dvc repro). Runs the stage with params.yaml
# as committed; it rewrites data/prepared with the same bytes. Writes stage.csv beside this script.
set -euo pipefail
rounds=${1:-15}
before=${2:-2cfdd19}
root=$(pwd)
python=$root/.venv/bin/python
archive=$root/data/cifar-10-python.tar.gz
out=$root/reports/unpickler-speed/stage.csv
old=$(mktemp -d)/before
git worktree add -q --detach "$old" "$before"
trap 'git worktree remove --force "$old"' EXIT
mkdir -p "$old/data" && ln -s "$archive" "$old/data/"
echo "step,reader,round,wall_s,peak_rss_kib" > "$out"
for round in $(seq 1 "$rounds"); do
  for reader in now "$before"; do
    dir=$root; [ "$reader" = now ] || dir=$old
    (cd "$dir" && /usr/bin/time -f "preprocess,$reader,$round,%e,%M" "$python" -m pipeline.stages.preprocess 2>&1 >/dev/null \
      | tail -1 >> "$out")
    (cd "$dir" && PYTHONPATH=$dir /usr/bin/time -f "load_archive,$reader,$round,%e,%M" "$python" -c \
      "from pipeline.lib import cifar; cifar.load_archive('$archive')" 2>&1 | tail -1 >> "$out")
  done
  echo "round $round/$rounds" >&2
done
"$python" - "$out" <<'PY'
import sys
import numpy as np
import pandas as pd
runs = pd.read_csv(sys.argv[1])
print(runs.groupby(["step", "reader"]).agg(median_s=("wall_s", "median"), q1_s=("wall_s", lambda s: s.quantile(.25)),
      q3_s=("wall_s", lambda s: s.quantile(.75)), peak_rss_mib=("peak_rss_kib", lambda k: round(k.max() / 1024))))
rng = np.random.default_rng(0)
for step, rows in runs.groupby("step"):  # now / before, paired by round, with a 95% bootstrap interval
    wide = rows.pivot(index="round", columns="reader", values="wall_s")
    ratios = (wide["now"] / wide.drop(columns="now").iloc[:, 0]).to_numpy()
    boot = np.median(rng.choice(ratios, (5000, len(ratios))), axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    print(f"{step}: now / before, median of {len(ratios)} paired ratios {np.median(ratios):.3f} ({low:.3f}-{high:.3f})")
PY
