"""The parallel model under one backend (KERAS_BACKEND): 5,000 raw images (a class-balanced subset of
the prepared 10k benchmark split), 1 epoch, batch 100, Adam(0.001), train.loss crossentropy, seeds 0-2; test
accuracy on the prepared 2,000 test images. Run from the repository root after `make repro-mirror`:
    PYTHONPATH=. KERAS_BACKEND=jax .venv/bin/python reports/backend-loss/run.py
"""
import json
import time
from pipeline.lib import data, training
import keras
train = data.load_split("data/prepared/train.npz")
test = data.load_split("data/prepared/test.npz")
keep = data.balanced_subset(train.labels, 5000, 0, "x")
split = data.Split(train.images[keep], train.labels[keep], train.class_names, train.normalize)
out = []
for seed in (0, 1, 2):
    t = time.time()
    model, hist, timing = training.fit("parallel", split, seed=seed, batch_size=100, learning_rate=0.001, epochs=1, verbose=2)
    acc = float((model.predict(test.images, batch_size=100, verbose=0).argmax(1) == test.labels).mean())
    out.append({"seed": seed, "final_train_loss": float(hist["loss"].iloc[-1]), "test_accuracy": acc, "seconds": time.time() - t})
    print(out[-1], flush=True)
print(json.dumps({"backend": keras.config.backend(), "keras": keras.__version__, "normalize": split.normalize, "train_images": len(keep), "test_images": len(test.labels), "runs": out}))
