#!/usr/bin/env bash
# The fit-loop rows' error rates: 20 A/A runs and 20 runs with +15% per batch inside the train stage's
# loop (reports/gate-power/run.py's `loop15`), in turn, against BASE, on an otherwise idle machine.
# Resumable: each kind stops at 20 recorded runs in runs/, so a campaign cut short goes on where it was.
#   BASE=<commit> bash reports/gate-fit-loop/campaign.sh        (from the repository root or anywhere; the
#   runs on main: BASE=6e260a4. d447199/ and three-batches/ hold earlier campaigns of other gate designs)
#   .venv/bin/python reports/gate-power/summary.py --dir reports/gate-fit-loop
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
