"""Stages `train-sequential` and `train-parallel`: train one of the tutorial's models.

Run as `python -m pipeline.train sequential|parallel`; the argument is the only difference between
the two stages.

Reads params `train.seed`, `train.batch_size`, `train.learning_rate`, `train.<model>.epochs` and
`<paths.prepared_dir>/train.npz`. Writes `<paths.models_dir>/<model>.keras`,
`<paths.metrics_dir>/train-<model>.json` and the per-epoch history `<paths.plots_dir>/train-<model>.csv`.

Throughput is steady state: the first step, where the backend traces and compiles the train
function, is timed separately as `compile_seconds` and left out of `train_images_per_s`.
"""

from __future__ import annotations

import sys
import time

import keras
import numpy as np
import pandas as pd

from pipeline import data, models, params, stage
from pipeline.params import PipelineError


class StepTimer(keras.callbacks.Callback):
    """Wall-clock time at the end of every training step and epoch."""

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.step_ends: list[float] = []
        self.epoch_ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.step_ends.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(time.perf_counter())


def timing_summary(timer: StepTimer, num_images: int, batch_size: int, epochs: int) -> dict:
    """Steady-state throughput and step-time spread from a StepTimer, excluding the first step."""
    ends = np.array(timer.step_ends)
    steps = np.diff(ends) * 1000.0
    steady_images = num_images * epochs - min(batch_size, num_images)
    steady_seconds = ends[-1] - ends[0]
    q25, q50, q75 = np.percentile(steps, [25, 50, 75]) if len(steps) else (np.nan,) * 3
    return {
        "train_seconds": round(ends[-1] - timer.start, 3),
        "compile_seconds": round(ends[0] - timer.start, 3),
        "first_epoch_seconds": round(timer.epoch_ends[0] - timer.start, 3),
        "train_images_per_s": round(steady_images / steady_seconds, 2) if steady_seconds > 0 else None,
        "step_time_ms_median": round(float(q50), 3),
        "step_time_ms_iqr": round(float(q75 - q25), 3),
        "timed_steps": int(len(steps)),
    }


def fit(name: str, split: data.Split, *, seed: int, batch_size: int, learning_rate: float, epochs: int,
        verbose=None) -> tuple[keras.Model, pd.DataFrame, dict]:
    """Build and train `name` on `split`; return the model, its per-epoch history and timing.

    `verbose=None` shows a progress bar on a terminal and one line per epoch in a log file.
    """
    keras.utils.set_random_seed(seed)
    model = models.build(name, learning_rate)
    targets = keras.utils.to_categorical(split.labels, models.NUM_CLASSES)
    timer = StepTimer()
    history = model.fit(
        split.images,
        targets,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose,
        callbacks=[timer],
    )
    per_epoch = pd.DataFrame(history.history, index=pd.RangeIndex(1, epochs + 1, name="epoch"))
    per_epoch["epoch_seconds"] = np.diff(timer.epoch_ends, prepend=timer.start).round(3)
    return model, per_epoch, timing_summary(timer, len(split.labels), batch_size, epochs)


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in models.BUILDERS:
        raise PipelineError(f"usage: python -m pipeline.train {{{'|'.join(models.BUILDERS)}}}")
    name = sys.argv[1]
    p = params.load()
    cfg = p.train
    split = data.load_split(p.paths.train_arrays)
    epochs = cfg.epochs(name)
    print(f"train-{name}: {len(split.labels)} images, {epochs} epochs, batch {cfg.batch_size}, "
          f"lr {cfg.learning_rate}, seed {cfg.seed}, normalize={split.normalize}")
    model, history, timing = fit(name, split, seed=cfg.seed, batch_size=cfg.batch_size,
                                 learning_rate=cfg.learning_rate, epochs=epochs)
    with stage.atomic_output(p.paths.model(name)) as tmp:
        model.save(tmp)
    with stage.atomic_output(p.paths.train_history(name)) as tmp:
        history.to_csv(tmp)
    metrics = {
        "model": name,
        "param_count": model.count_params(),
        "epochs": epochs,
        "train_images": len(split.labels),
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "seed": cfg.seed,
        "normalize": split.normalize,
        "final_train_loss": round(float(history["loss"].iloc[-1]), 5),
        "final_train_accuracy": round(float(history["accuracy"].iloc[-1]), 5),
        **timing,
        **stage.environment(),
    }
    stage.write_json(p.paths.train_metrics(name), metrics)
    print(f"train-{name}: {metrics['train_images_per_s']} images/s steady state, "
          f"compile {metrics['compile_seconds']} s -> {p.paths.model(name)}")


if __name__ == "__main__":
    stage.run(main)
