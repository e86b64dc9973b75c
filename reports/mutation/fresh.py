"""Check mutants each in a fresh Python process: for modules whose tests train Keras models.

    cd mutants && ../.venv/bin/python ../reports/mutation/fresh.py 'pipeline.lib.heldout.*' [PATTERN ...]

(after a `mutmut run` has generated mutants/ and its test statistics). mutmut forks each worker from the
process that ran the test suite, TensorFlow included, and TensorFlow's thread pools do not survive a
fork: a worker whose tests train a model stalls until mutmut's time limit, and the mutant reads as
caught (a timeout) whatever it changed (reports/mutation/README.md has what that did to the held-out
scoring's mutants).

This runs the tests mutmut selected for each mutant matching a PATTERN (fnmatch over mutant names;
mutants/mutmut-stats.json), in a new process with MUTANT_UNDER_TEST naming it, with mutmut's pytest
arguments (pyproject.toml) and a wall-time limit, and records the exit code in mutmut's results
(mutants/<module>.py.meta) as mutmut does: 1 caught, 0 survived, 33 no tests, 36 timed out.
reports/mutation/score.py then reads them like any other. `--tests` runs the given tests instead of
mutmut's selection, for tests written after mutmut collected its statistics.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.lib.atomic import write_text  # noqa: E402  (the repository's, not the mutated copy's)

NO_TESTS, TIMEOUT = 33, 36


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="+", help="mutant names or fnmatch patterns")
    parser.add_argument("--limit", type=float, default=300.0, help="wall seconds per mutant (default 300)")
    parser.add_argument("--tests", nargs="+", help="run these tests instead of mutmut's selection (tests written "
                                                   "after mutmut collected its statistics)")
    args = parser.parse_args()
    if not Path("mutmut-stats.json").is_file():
        sys.exit("fresh.py: no mutmut-stats.json here: run it in mutants/ after a mutmut run")
    tests_by_function = json.loads(Path("mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    config = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]
    pytest_args = ["-x", "-q", *config.get("pytest_add_cli_args", [])]
    for meta_path in sorted(Path("pipeline").rglob("*.py.meta")):
        meta = json.loads(meta_path.read_text())
        names = [n for n in meta["exit_code_by_key"] if any(fnmatch.fnmatch(n, p) for p in args.patterns)]
        for i, name in enumerate(names, 1):
            tests = args.tests or sorted(tests_by_function.get(name.rsplit("__mutmut_", 1)[0], []))
            began = time.monotonic()
            if not tests:
                code = NO_TESTS
            else:
                try:
                    code = subprocess.run([sys.executable, "-m", "pytest", *pytest_args, *tests],
                                          env=os.environ | {"MUTANT_UNDER_TEST": name}, capture_output=True,
                                          timeout=args.limit).returncode
                except subprocess.TimeoutExpired:
                    code = TIMEOUT
            spent = time.monotonic() - began
            meta["exit_code_by_key"][name] = code
            meta.setdefault("durations_by_key", {})[name] = round(spent, 3)
            write_text(meta_path, json.dumps(meta, indent=4))  # atomically: an interrupt leaves mutmut's results whole
            print(f"{i}/{len(names)} {name}: exit {code} ({spent:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
