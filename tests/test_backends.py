"""One meaning per param on every installed backend (tensorflow, jax, torch).

`train.loss: crossentropy` must be the same loss under each backend (computed from the logits), and
`clipped_crossentropy` the tutorial-era clipped one under each. Each backend runs in its own process
(tests/backend_losses.py), from the same initial weights and the same batches, on raw 0-255 pixels
and the parallel model: the regime where the true class's probability falls below 1e-7, so that a
backend computing from clipped probabilities would report at most -log(1e-7) = 16.12 per image.
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from tests.project import ROOT, run_stage

BACKENDS = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]
CAP = -math.log(1e-7)  # the clipped loss's ceiling per image
STEPS, BATCH = 3, 8
# float32 on different backends: measured here (tensorflow 2.21, jax 0.10.2, torch 2.13 CPU) the three
# steps' losses agreed within 4.1e-7 relative (crossentropy: 86.3, 1311.6, 1044.3; clipped: 13.94, 14.10,
# 14.10). Before the fix, JAX's and torch's crossentropy was the clipped one: off by a factor of 6 or more.
RTOL = 1e-5


LOSSES = ("crossentropy", "clipped_crossentropy")


def losses_per_backend(tmp_path, model: str) -> dict[str, dict[str, list[float]]]:
    """{backend: {loss: the losses of its steps}}, one process per backend for every loss."""
    rng = np.random.default_rng(3)
    data = tmp_path / "batches.npz"
    np.savez(data, images=rng.integers(0, 256, (STEPS * BATCH, 32, 32, 3)).astype(np.float32),
             labels=rng.integers(0, 10, STEPS * BATCH))
    weights = tmp_path / f"{model}-weights.npz"
    results = {}
    for i, backend in enumerate(BACKENDS):
        args = ["tests.backend_losses", "--model", model, "--loss", *LOSSES, "--weights", str(weights),
                "--data", str(data), "--steps", str(STEPS)] + (["--save-weights"] if i == 0 else [])
        code, out, err = run_stage(tmp_path, *args, timeout=900, KERAS_BACKEND=backend, PYTHONPATH=str(ROOT))
        assert code == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["backend"] == backend and list(result["losses"]) == list(LOSSES)
        results[backend] = result["losses"]
    return results


@pytest.mark.slow
def test_each_loss_param_computes_the_same_loss_on_every_backend(tmp_path):
    if len(BACKENDS) < 2:
        pytest.skip(f"needs two Keras backends installed, found {BACKENDS}")
    results = losses_per_backend(tmp_path, "parallel")
    for loss in LOSSES:
        reference = results[BACKENDS[0]][loss]
        for backend in BACKENDS:
            np.testing.assert_allclose(results[backend][loss], reference, rtol=RTOL,
                                       err_msg=f"{loss}: {backend} against {BACKENDS[0]}")
        if loss == "crossentropy":
            # The data reach the regime that tells the two apart: from the logits the loss is far above the cap.
            assert max(reference) > 2 * CAP, reference
        else:
            assert max(reference) <= CAP * (1 + 1e-5), reference
