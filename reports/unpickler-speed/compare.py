"""The archive reader's speed against an earlier revision's, with the A/B gate's own machinery.

    .venv/bin/python reports/unpickler-speed/compare.py [--before REV] [--pairs N] [--out DIR]   (from the repository root)

`pipeline.gate.ab` checks `--before` out in a git worktree and runs the gate's workers (params.yaml's
`gate.ab_processes` per side, its other gate settings) over reader_worker.py, which parses the same 10,000-image batch with
that rev's reader and with the working tree's, in both pickle layouts (Python 3 protocol 2 as the mirror
writes it; the official archive's Python 2 cPickle layout as `tests/pickles.py` assembles it). The pairs
are interleaved as the gate interleaves them and pooled with its statistic (pipeline/gate/statistics.py).
Writes the gate's markdown report (report.md) and its --record (record.json) to --out, and prints both.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.gate.ab import ab  # noqa: E402
from pipeline.gate.report import markdown  # noqa: E402
from pipeline.lib import params  # noqa: E402
from pipeline.lib.atomic import write_text  # noqa: E402
from tests import archives, pickles  # noqa: E402


def layouts() -> dict[str, bytes]:
    """The same 10,000-image batch pickled in both layouts."""
    batch = archives.batch(10_000, seed=0)
    return {"python3-protocol2": archives.pickled(batch),
            "python2-cpickle": pickles.official_batch(list(batch[b"labels"]), batch[b"data"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="the earlier revision (default HEAD)")
    parser.add_argument("--pairs", type=int, default=30, help="(before, now) pairs per layout")
    parser.add_argument("--out", type=Path, default=HERE, help="where report.md and record.json go")
    args = parser.parse_args()
    p = params.load(ROOT / "params.yaml")
    # a fixed number of pairs, all of them taken: the gate's stopping rule is for verdicts, not estimates
    gate = dataclasses.replace(p.gate, ab_min_pairs=args.pairs, ab_max_pairs=args.pairs, ab_budget_s=3600.0)
    with tempfile.TemporaryDirectory() as tmp:
        payloads = Path(tmp) / "payloads.pickle"
        payloads.write_bytes(pickle.dumps(layouts()))
        command = [str(HERE / "reader_worker.py"), str(payloads), "--warmup", "3"]
        sections, notes = ab(args.before, None, dataclasses.replace(p, gate=gate), False,
                             args.out / "record.json", command=command)
    report = markdown(f"Archive reader: working tree against {args.before}", sections, notes)
    write_text(args.out / "report.md", report)
    print(report)


if __name__ == "__main__":
    main()
