"""A stand-in for pipeline/ab_worker.py that answers scripted step times: `gate ab` end to end in seconds.

Run by the gate in place of the real worker (tests monkeypatch `gate.WORKER`), in the worktree of its side
(`base` or `head`). $AB_STANDIN is JSON: {"benchmarks": [names], "ms": {side: {name: [[ms, ...] per
worker]}}, "claims": dir}. Each worker claims the first free index of its side in `claims`, then its k-th
step of a benchmark answers ms[side][name][index][k % len], without timing anything.
"""

import json
import os
import sys
from pathlib import Path

script = json.loads(os.environ["AB_STANDIN"])
side = Path.cwd().name
index = 0
while True:
    try:
        os.close(os.open(Path(script["claims"]) / f"{side}-{index}", os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        index += 1
print(json.dumps({"benchmarks": script["benchmarks"], "backend": "stand-in", "warmup_s": 0}), flush=True)
steps = {name: 0 for name in script["benchmarks"]}
for line in sys.stdin:
    name = line.strip()
    times = script["ms"][side][name][index]
    print(json.dumps({"ms": times[steps[name] % len(times)]}), flush=True)
    steps[name] += 1
