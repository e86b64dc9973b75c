"""What the speed gate times (`python -m pipeline.gate ab`): one rev's benchmarks, each a callable that
runs one step and returns when the step has completed.

For each model of the registry (`registry.MODELS`):
- `<model> fit loop`: one epoch of the train stage's own loop (`training.EpochLoop`: the seeded
  permutation and indexing, then `model.fit` with the stage's callbacks) over the model's
  `fit_loop_batches` (pipeline/lib/registry.py) of raw 0-255 images held in memory, on the model the
  train stage trains (`models.build`: the same layers, loss, Adam optimizer and compiled train
  function). Each batch is one training step (forward,
  backward, the Adam update), so a slower model, loss or optimizer shows here, and so does what the
  stage adds around the step (a callback, per-batch bookkeeping). It times itself (`FitLoop`): from the
  start of the epoch to its end as the stage's StepTimer sees it (after every callback's last batch),
  leaving out what `model.fit` does after the epoch, mostly waiting for its tf.data threads to stop
  (idle, for a time that varies at random; docs/gates.md), which is not the stage's per-step work and
  would drown a per-batch slowdown;
- `<model> inference batch`: one batch through the tutorial's classifier (`models.classifier`), the
  compiled predict function that the evaluate stage's `model.predict` runs per batch.

Earlier revs had more rows, which `gate ab` against such a rev notes as no longer gated:
- `<model> train step`, one `train_on_batch` of the same model: the train stage never calls it, the fit
  loop runs the same step as the stage does, and compiling it a second way cost each worker start-up
  time (docs/gates.md);
- `<model> LSTM core step`, the model's LSTM(50) core alone (`steps.CoreStep`): its work is inside
  both fit loops (most of each training step), the lstm-step stage still times it for every commit,
  and its rows cost the gate part of its time budget (docs/gates.md).

The gate's worker (pipeline/gate/ab_worker.py) imports each rev's copy of this module, so a change to the
models, the loss, the optimizer or the LSTM code shows in that rev's times. Inputs are seeded random
images and labels: speed does not depend on their values.
"""

from __future__ import annotations

import time
from typing import Callable

import keras
import numpy as np

from pipeline.lib import distribute, models, registry, training

# Batches per `fit loop` step are each model's `fit_loop_batches` (pipeline/lib/registry.py): enough that the
# epoch's fixed cost (permutation, data adapter, fit's set-up) and its noise do not drown a per-batch
# slowdown, few enough that a step stays under a second on the CPU (docs/gates.md). The permutation and
# indexing cover these images only, not the stage's 10,000: a per-epoch cost that grows with the split
# shows only in the stage.


def model_inputs(batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`batch` raw images (float32, 0-255, as preprocess's `raw` writes them) and one-hot labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, *models.INPUT_SHAPE), dtype=np.uint8).astype(np.float32)
    labels = rng.integers(0, models.NUM_CLASSES, batch)
    return images, keras.utils.to_categorical(labels, models.NUM_CLASSES)


class _EpochEnd(keras.callbacks.Callback):
    def __init__(self, fit_loop: "FitLoop"):
        super().__init__()
        self.fit_loop = fit_loop

    def on_epoch_end(self, epoch, logs=None):
        self.fit_loop.ended = time.perf_counter()
        if self.fit_loop.report:
            self.fit_loop.report(self.fit_loop.ms_per_batch())


class FitLoop:
    """`<model> fit loop`: one epoch of `training.EpochLoop`, timed from the start of the epoch to its end
    and reported per batch (the epoch's ms / its batches), so that a rev which runs more or fewer
    batches per step is still compared like for like.

    A benchmark that times itself (`reports_own_time`): called with `report`, it calls report(ms) as
    soon as the epoch has ended, before `model.fit` returns, so that the gate's worker can answer while
    fit winds down; it returns the same ms.
    """

    reports_own_time = True

    def __init__(self, model: keras.Model, images: np.ndarray, targets: np.ndarray, *, batch_size: int, seed: int):
        self.report, self.ended = None, None
        self.batches = -(-len(targets) // batch_size)
        self.loop = training.EpochLoop(model, images, targets, seed=seed, batch_size=batch_size, epochs=1,
                                       replicas=distribute.SINGLE, callbacks=[_EpochEnd(self)])

    def __call__(self, report: Callable[[float], object] | None = None) -> float:
        self.report, self.ended = report, None
        try:
            self.loop.run(0)
        finally:
            self.report = None
        if self.ended is None:
            raise RuntimeError("the fit loop's epoch never ended: nothing was timed")
        return self.ms_per_batch()

    def ms_per_batch(self) -> float:
        return (self.ended - self.loop.began) * 1000 / self.batches


KINDS = ("fit loop", "inference batch")


def names() -> list[str]:
    """The benchmarks' names, `<model> <kind>` for every model of the registry, without building any."""
    return [f"{model} {kind}" for model in registry.names() for kind in KINDS]


def benchmarks(batch_size: int, inference_batch_size: int, learning_rate: float, loss: str,
               seed: int = 0) -> dict[str, Callable[[], object]]:
    """Every benchmark of this rev, by name (in the order of `names`); each call runs one step to completion."""
    found = {}
    for name, entry in registry.MODELS.items():
        keras.utils.set_random_seed(seed)
        model = models.build(name, learning_rate, loss)
        images, targets = model_inputs(batch_size * entry.fit_loop_batches, seed + 2)
        found[f"{name} {KINDS[0]}"] = FitLoop(model, images, targets, batch_size=batch_size, seed=seed)
        x_infer, _ = model_inputs(inference_batch_size, seed + 1)
        scorer = models.classifier(model)
        found[f"{name} {KINDS[1]}"] = lambda m=scorer, x=x_infer: m.predict_on_batch(x)
    return found
