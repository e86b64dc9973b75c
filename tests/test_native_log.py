"""A stage's stderr holds its own messages, not TensorFlow's native start-up notices."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.lib import native_log
from tests.project import ROOT, run_stage, scratch_params

# Captured from TensorFlow 2.21.0 on this 2-core CPU machine, importing keras and running one op.
NOTICES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796031468.718760    2774 port.cc:153] oneDNN custom operations are on. You may see "
    b"slightly different numerical results due to floating-point round-off errors from different computation "
    b"orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    b"I0000 00:00:1796031468.719174    2774 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    b"GPU will not be used.",
    b"I0000 00:00:1796031468.806754    2774 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to "
    b"use available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, "
    b"rebuild TensorFlow with the appropriate compiler flags.",
    b"E0000 00:00:1796031472.282970    2774 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    b"Failed call to cuInit: UNKNOWN ERROR (303)",
]


def test_known_notices_are_dropped_and_everything_else_is_kept():
    kept = [b"pipeline.stages.train: error: data/prepared/train.npz: cannot load prepared arrays",
            b"E0000 00:00:1796031472.282970    2774 bfc_allocator.cc:291] Allocator ran out of memory",
            b"Epoch 1/3"]
    chunk = b"\n".join(NOTICES[:3] + kept[:1] + NOTICES[3:] + kept[1:]) + b"\n"
    assert native_log.drop_notices(chunk) == b"\n".join(kept) + b"\n"


def test_a_partial_line_such_as_a_progress_bar_is_forwarded_at_once():
    assert native_log.drop_notices(b"\r 40%|####      | 4/10") == b"\r 40%|####      | 4/10"
    assert native_log.drop_notices(NOTICES[0] + b"\n\r 50%|") == b"\r 50%|"


@pytest.mark.parametrize("command, exit_code", [
    ("pipeline.stages.evaluate sequential", 1),  # no prepared arrays: a PipelineError
    ("pipeline.stages.lstm_step --bogus", 2),    # a usage error
    ("pipeline.stages.train bogus", 2),          # a model name the registry does not hold
])
def test_a_stage_that_loads_tensorflow_prints_only_its_own_line(tmp_path, command, exit_code):
    # Each stage loads Keras (and TensorFlow) at import, then refuses with one line.
    scratch_params(tmp_path)
    code, _, err = run_stage(tmp_path, *command.split())
    assert code == exit_code
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command.split()[0]}: error: "), err


def _filtered(code: str, cwd) -> subprocess.Popen:
    """A Python process in `cwd` that installs the stage filter, then runs `code`."""
    prelude = "import os, sys\nfrom pipeline.lib import native_log\nnative_log.filter_stderr()\n"
    return subprocess.Popen([sys.executable, "-c", prelude + code], cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("death", ["os.abort()", "os._exit(3)"])
def test_what_was_written_before_a_crash_still_reaches_stderr(tmp_path, death):
    notice = NOTICES[2].decode()  # dropped: proof that stderr went through the filter
    proc = _filtered(f"sys.stderr.write({notice!r} + '\\nbefore the crash\\n'); sys.stderr.flush()\n{death}\n",
                     tmp_path)  # an abort may leave a core file in the working directory
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert err == b"before the crash\n"


def test_a_process_whose_stderr_reader_went_away_does_not_hang(tmp_path):
    code = ("try:\n    for _ in range(200):\n        sys.stderr.write('x' * 1000 + '\\n')\n    sys.stderr.flush()\n"
            "except BrokenPipeError:\n    print('broken pipe', flush=True)\n    os._exit(1)\n")
    proc = _filtered(code, tmp_path)
    proc.stderr.close()  # nobody reads stderr any more: writes to it must fail, not block
    out, _ = proc.communicate(timeout=60)
    assert out == b"broken pipe\n"  # BrokenPipeError, as without the filter
