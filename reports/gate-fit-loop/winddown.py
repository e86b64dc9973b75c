"""What `model.fit` does after the epoch that the fit-loop rows leave out: its wall and CPU time.

    .venv/bin/python reports/gate-fit-loop/winddown.py [EPOCHS]     (from the repository root)

For each model, runs EPOCHS (default 10) calls of pipeline/lib/speed.py's FitLoop (one 3-batch epoch of the
train stage's loop each) in this process and prints, per call: the row's own time (epoch start to
epoch end), the wind-down after it (the end of the epoch to fit's return) in wall-clock ms, and the
process's CPU time over that wind-down. Run it on an otherwise idle machine.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.lib import speed  # noqa: E402


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    found = speed.benchmarks(100, 100, 0.001, "crossentropy")
    print("model,call,row_ms,winddown_ms,winddown_cpu_ms")
    for name in ("sequential fit loop", "parallel fit loop"):
        bench = found[name]
        bench.loop.verbose = 0
        for call in range(epochs + 1):  # call 0 compiles: shown, not counted in the summary below
            marks = {}

            def report(ms):
                marks["end"], marks["cpu"] = time.perf_counter(), time.process_time()

            row = bench(report)
            done, cpu = time.perf_counter(), time.process_time()
            print(f"{name.split()[0]},{call},{row:.0f},{(done - marks['end']) * 1000:.0f},"
                  f"{(cpu - marks['cpu']) * 1000:.0f}", flush=True)


if __name__ == "__main__":
    main()
