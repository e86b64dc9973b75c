#!/usr/bin/env bash
# The fit-loop rows' error rates: RUNS (default 20) A/A runs and RUNS runs with +15% per batch inside the
# train stage's loop (reports/gate-power/run.py's `loop15`), in turn, against BASE, on an otherwise idle
# machine, recorded in OUT (default reports/gate-fit-loop). Resumable: each kind stops at RUNS recorded
# runs in OUT/runs/, so a campaign cut short goes on where it was.
#   BASE=<commit> [OUT=DIR] [RUNS=N] bash reports/gate-fit-loop/campaign.sh   (from anywhere)
#   .venv/bin/python reports/gate-power/summary.py --dir OUT
# On main: runs/ (BASE=6e260a4, 20 + 20, with the LSTM-core rows), d054560/ (BASE=d054560
# OUT=reports/gate-fit-loop/d054560 RUNS=40, today's rows; d054560/perturbed/ holds 11 runs that had a
# niced process beside them, set apart), confirmation/ (BASE=06bf21c
# OUT=reports/gate-fit-loop/confirmation RUNS=20, planned before it ran);
# d447199/ and three-batches/ hold earlier designs.
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
BASE=${BASE:?set BASE to the commit whose gate is measured}
OUT=${OUT:-reports/gate-fit-loop}
RUNS=${RUNS:-20}
for r in $(seq 1 "$RUNS"); do
  for k in aa loop15; do
    if [ "$(ls "$OUT"/runs/"$k"-*.json 2>/dev/null | wc -l)" -ge "$RUNS" ]; then continue; fi
    $PY reports/gate-power/run.py "$k" 1 --base "$BASE" --out "$OUT" || echo "run failed: $k round $r"
  done
done
echo CAMPAIGN DONE
