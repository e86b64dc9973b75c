"""One training step (train_on_batch, batch 100, random 0-255 images), the model code of c42820f against 75da9d7's
(logits model + softmax layer), interleaved in one process: 3 warm-up steps each, then 40 (sequential) and 16 (parallel) pairs in
alternating order; prints the median ms. Run from the repository root:
    git show c42820f:pipeline/models.py > /tmp/old_models.py && .venv/bin/python reports/model-ab/ab.py
"""
import sys, time, importlib.util
import numpy as np, keras
sys.path.insert(0, ".")
from pipeline import models as new
spec = importlib.util.spec_from_file_location("old_models", "/tmp/old_models.py"); old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (100, 32, 32, 3)).astype(np.float32); y = keras.utils.to_categorical(rng.integers(0, 10, 100), 10)
for name in ("sequential", "parallel"):
    m = {"old": old.build(name, 0.001), "new": new.build(name, 0.001)}
    for k in m:
        for _ in range(3): m[k].train_on_batch(x, y)
    t = {"old": [], "new": []}
    for i in range(40 if name == "sequential" else 16):
        for k in (("old", "new") if i % 2 == 0 else ("new", "old")):
            s = time.perf_counter(); m[k].train_on_batch(x, y); t[k].append(time.perf_counter() - s)
    print(name, {k: round(float(np.median(v)) * 1000, 1) for k, v in t.items()}, flush=True)
