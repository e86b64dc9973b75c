"""The agreement behind tests/test_backends.py: the parallel model, 3 training steps of 8 raw-pixel images,
from the same weights and batches, under every installed backend, for both losses; prints the losses and the
max relative difference to the first backend. Run from the repository root:
    PYTHONPATH=. .venv/bin/python reports/backend-loss/agreement.py > reports/backend-loss/agreement.json
"""
import json
import tempfile
from pathlib import Path
import numpy as np
from tests.test_backends import losses_per_backend, BACKENDS
out = {}
for loss in ("crossentropy", "clipped_crossentropy"):
    with tempfile.TemporaryDirectory() as d:
        r = losses_per_backend(Path(d), "parallel", loss)
    ref = np.array(r[BACKENDS[0]])
    out[loss] = {"losses": r, "max_rel_diff": {b: float(np.max(np.abs(np.array(v) - ref) / np.abs(ref))) for b, v in r.items()}}
print(json.dumps(out, indent=1))
