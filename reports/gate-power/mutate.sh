#!/usr/bin/env bash
# Mutation check: .venv/bin/python must exist; run from anywhere: bash reports/gate-power/mutate.sh
# Each mutation weakens pipeline/gate/statistics.py (pipeline/gate.py until the gate became a package) in a scratch copy; the gate tests must fail on every one.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
run() {
  local name="$1" old="$2" new="$3"
  rm -rf /tmp/mut && mkdir -p /tmp/mut/reports && cp -r $SRC/pipeline $SRC/tests $SRC/params.yaml $SRC/pyproject.toml /tmp/mut/ \
    && cp -r $SRC/reports/gate-power /tmp/mut/reports/ && cd /tmp/mut
  python3 - "$old" "$new" <<'PY'
import sys
from pathlib import Path
p = Path("pipeline/gate/statistics.py"); s = p.read_text(); old, new = sys.argv[1], sys.argv[2]
assert s.count(old) == 1, old
p.write_text(s.replace(old, new))
PY
  # a git repository of its own: some unit tests check out HEAD in worktrees
  git init -q && git add -A && git -c user.name=mutate -c user.email=mutate@localhost commit -qm scratch
  out=$($SRC/.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_gate.py -m "not slow" 2>&1)
  echo "$name: $(echo "$out" | tail -1)"
  echo "$out" | grep '^FAILED' | sed 's/^/    /'
}
run "control (no mutation)" "RESAMPLES = 2000" "RESAMPLES = 2000"
run "threshold removed" "return pooled.slowdown > max_slowdown and pooled.low > 0" "return pooled.low > 0"
run "threshold doubled" "return pooled.slowdown > max_slowdown and pooled.low > 0" "return pooled.slowdown > 2 * max_slowdown and pooled.low > 0"
run "interval removed" "return pooled.slowdown > max_slowdown and pooled.low > 0" "return pooled.slowdown > max_slowdown"
run "interval widened (99%)" "low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])" "low, high = np.quantile(boot, [0.005, 0.995])"
run "interval widened (99.9%)" "low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])" "low, high = np.quantile(boot, [0.0005, 0.9995])"
run "pooling removed" "    rng = np.random.default_rng(seed)
    count = len(logs)" "    logs = [np.concatenate(logs)]
    rng = np.random.default_rng(seed)
    count = len(logs)"
run "every worker pair must fail" "return pooled.slowdown > max_slowdown and pooled.low > 0" "return min(pooled.per_process) > max_slowdown and pooled.low > 0"
