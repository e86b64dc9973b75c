#!/usr/bin/env bash
# The schedule of the recorded campaign (runs.csv): 20 rounds; rounds 1-10 run all five kinds, 11-20 A/A
# and +15%. Each run.py call makes its own throwaway commit. Round-robin over the kinds, so that drift
# in the machine's state spreads over all of them.
set -u
cd "$(dirname "$0")/../.."   # the repository root: run it from a worktree of the commit measured
PY=${PY:-.venv/bin/python}
for r in $(seq 1 20); do
  kinds="aa slow15"
  if [ "$r" -le 10 ]; then kinds="aa slow15 slow10 slow25 lstm-impl1"; fi
  for k in $kinds; do
    $PY reports/gate-power/run.py "$k" 1 --base HEAD || echo "run failed: $k round $r"
  done
done
echo CAMPAIGN DONE
