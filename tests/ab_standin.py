"""A stand-in for pipeline/gate/ab_worker.py that answers scripted step times: `gate ab` end to end in seconds.

Run by the gate in place of the real worker (tests monkeypatch `gate.WORKER`), in the worktree of its side
(`base`, or `head` for any other folder: its worktree or the working tree), with the command line the real
worker takes (parsed by its own `arguments()`). $AB_STANDIN is JSON: {"benchmarks": [names] or {side:
[names]}, "ms": {side: {name: [[ms, ...] per worker]}}, "claims": dir, and optionally
"fail": {side: [exit status, stderr text]}, "closes": [sides], "hangs": [sides]}. Each worker claims the first free index of its side in
`claims` and writes there what it was given (its arguments, PYTHONPATH, PYTHONUNBUFFERED, its folder); a
side in "fail" then writes the text to stderr and exits with the status; one in "closes" closes its
stdin, says it is ready and exits; one in "hangs" never answers a step. Otherwise its k-th step of a
benchmark answers ms[side][name][index][k % len], without timing anything.
"""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

spec = importlib.util.spec_from_file_location("ab_worker", Path(__file__).resolve().parent.parent / "pipeline" / "gate" / "ab_worker.py")
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
given = {"args": vars(worker.arguments().parse_args()), "cwd": os.getcwd(),
         **{key: os.environ.get(key) for key in ("PYTHONPATH", "PYTHONUNBUFFERED")}}
script = json.loads(os.environ["AB_STANDIN"])
side = "base" if Path.cwd().name == "base" else "head"  # head: its worktree, or the working tree itself
benchmarks = script["benchmarks"][side] if isinstance(script["benchmarks"], dict) else script["benchmarks"]
index = 0
while True:
    try:
        claim = os.open(Path(script["claims"]) / f"{side}-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        break
    except FileExistsError:
        index += 1
os.write(claim, json.dumps(given).encode())
os.close(claim)
if side in script.get("fail", {}):
    status, text = script["fail"][side]
    sys.stderr.write(text)
    sys.exit(status)
closes = side in script.get("closes", [])
if closes:  # stops reading before its first step: the gate's request finds no reader
    os.close(0)
print(json.dumps({"benchmarks": benchmarks, "backend": "stand-in", "warmup_s": 0}), flush=True)
if closes:
    time.sleep(0.5)
    sys.exit("stdin closed")
steps = {name: 0 for name in benchmarks}
for line in sys.stdin:
    name = line.strip()
    if side in script.get("hangs", []):
        time.sleep(60)
    times = script["ms"][side][name][index]
    print(json.dumps({"ms": times[steps[name] % len(times)]}), flush=True)
    steps[name] += 1
