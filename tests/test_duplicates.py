"""No repeated code in pipeline/ or tests/: pylint's duplicate-code check (4 or more similar lines,
comments, docstrings and imports ignored) finds nothing."""

import subprocess
import sys

from tests.project import ROOT


def test_pipeline_and_tests_hold_no_duplicated_code():
    done = subprocess.run([sys.executable, "-m", "pylint", "--disable=all", "--enable=duplicate-code",
                           "--score=n", "pipeline", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
