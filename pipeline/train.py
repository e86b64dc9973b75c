"""Stages `train-sequential` and `train-parallel`: train one of the tutorial's models.

Run as `python -m pipeline.train sequential|parallel`; the argument is the only difference between
the two stages.

Reads params `train.seed`, `train.batch_size`, `train.learning_rate`, `train.loss`, `train.distribution`,
`train.devices`, `train.<model>.epochs` and `<paths.prepared_dir>/train.npz`. Writes `<paths.models_dir>/<model>.keras`,
`<paths.metrics_dir>/train-<model>.json` and the per-epoch history `<paths.plots_dir>/train-<model>.csv`.

Throughput is steady state: the first step, where the backend traces and compiles the train
function, is timed separately as `compile_seconds` and left out of `train_images_per_s`.

Resumable: every completed epoch is checkpointed in `<paths.checkpoints_dir>/<model>/` (machine-local:
no DVC output, never pushed; see dvc.yaml), so a run killed midway continues from its last completed
epoch on the next `dvc repro` and reaches the same final weights as an uninterrupted run (`Checkpoint`, `fit`). The
timing metrics then cover the epochs trained after the resume (`resumed_after_epoch`).

Data-parallel (`train.distribution: data_parallel`, pipeline/distribute.py): the same loop inside the
backend's distribution engine, with the same global batch; the metrics record `replicas` and their devices.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from pipeline import data, distribute, models, params, stage
from pipeline.params import PipelineError


class StepTimer(keras.callbacks.Callback):
    """Wall-clock time at the end of every training step and epoch, across several fit() calls."""

    def __init__(self):
        super().__init__()
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


class OneEpoch(keras.callbacks.Callback):
    """Stop fit() after the epoch it started, so that fit(initial_epoch=k, epochs=total) trains epoch
    k+1 alone while the progress line still reads "Epoch k+1/total"."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


class StopOnSignal(keras.callbacks.Callback):
    """Defer SIGINT/SIGTERM during training to the next step boundary, then raise KeyboardInterrupt.

    Raised at an arbitrary point inside TensorFlow's Python wrappers, KeyboardInterrupt can abort the
    whole process (seen here: "free(): invalid next size" on SIGINT mid-step, about one run in four);
    raised between steps it unwinds cleanly and the stage exits with its one line.
    """

    def __init__(self):
        super().__init__()
        self.received = False

    def note(self, signum, frame):
        self.received = True

    def on_train_batch_end(self, batch, logs=None):
        if self.received:
            raise KeyboardInterrupt


class Checkpoint:
    """The last completed epoch of one training run, in `directory`, so a killed run can resume.

    `state.json` names the model file it belongs to and is written last, both atomically, so a
    kill at any moment leaves either the previous checkpoint or the new one, never a mix. A
    checkpoint is used only if its fingerprint (model, hyper-parameters, data digest, backend)
    matches the run's.
    """

    def __init__(self, directory, fingerprint: dict):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.state_file = self.directory / "state.json"

    def load(self):
        """(model, epochs_done, history rows, timing) of a matching checkpoint, or None."""
        try:
            state = json.loads(self.state_file.read_text())
            if state["fingerprint"] != self.fingerprint:
                return None
            model = keras.saving.load_model(self.directory / state["model_file"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no checkpoint, another run's, or unreadable: start from scratch
        return model, state["epochs_done"], state["history"], state["timing"]

    def save(self, model, epochs_done: int, history: list, timing: dict) -> None:
        model_file = f"model-epoch{epochs_done}.keras"
        with stage.atomic_output(self.directory / model_file) as tmp:
            model.save(tmp)
        stage.write_json(self.state_file, {"fingerprint": self.fingerprint, "epochs_done": epochs_done,
                                           "model_file": model_file, "history": history, "timing": timing})
        for old in self.directory.glob("model-epoch*.keras"):
            if old.name != model_file:
                old.unlink()

    def clear(self) -> None:
        """Empty the directory once the outputs are in place; it stays, as the DVC output it is."""
        for path in self.directory.glob("*"):
            path.unlink()


def data_digest(split: data.Split) -> str:
    digest = hashlib.md5(np.ascontiguousarray(split.images).data)
    digest.update(np.ascontiguousarray(split.labels).data)
    return digest.hexdigest()


def fit(name: str, split: data.Split, *, seed: int, batch_size: int, learning_rate: float, epochs: int,
        loss: str = "crossentropy", checkpoint_dir=None, verbose=None, callbacks=(),
        replicas: distribute.Replicas | None = None) -> tuple[keras.Model, pd.DataFrame, dict]:
    """Build and train `name` on `split`; return the model, its per-epoch history and timing.

    Each epoch sees the images in the order of a permutation seeded by (seed, epoch), so a run
    resumed from the checkpoint of epoch k trains exactly like an uninterrupted one. With
    `checkpoint_dir`, every completed epoch is checkpointed there and a matching checkpoint is
    resumed. `verbose=None` shows a progress bar on a terminal and one line per epoch in a log file.
    `callbacks` are added to every epoch's fit() (pipeline/diagnostics.py's Probe). `replicas`
    (from `distribute.setup`) trains data-parallel; by default on the backend's default device.
    """
    replicas = replicas or distribute.SINGLE
    with replicas.scope():  # build, resume and train inside the distribution engine, if any
        keras.utils.set_random_seed(seed)
        targets = keras.utils.to_categorical(split.labels, models.NUM_CLASSES)
        checkpoint = None
        model, done, rows, timing = models.build(name, learning_rate, loss), 0, [], None
        if checkpoint_dir is not None:
            checkpoint = Checkpoint(checkpoint_dir, {
                "model": name, "seed": seed, "batch_size": batch_size, "learning_rate": learning_rate, "loss": loss,
                "epochs": epochs, "data_md5": data_digest(split), "backend": keras.config.backend(),
                "replicas": replicas.count})
            resumed = checkpoint.load()
            if resumed:
                model, done, rows, timing = resumed
                print(f"train-{name}: resuming after epoch {done} from {checkpoint_dir}", flush=True)
        timer, stop = StepTimer(), StopOnSignal()
        previous = {sig: signal.signal(sig, stop.note) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for epoch in range(done, epochs):
                order = np.random.default_rng([seed, epoch]).permutation(len(targets))
                rows_fed, batch_fed = replicas.local_batches(order, batch_size)  # this process's share
                history = model.fit(
                    split.images[rows_fed],
                    targets[rows_fed],
                    batch_size=batch_fed,
                    initial_epoch=epoch,
                    epochs=epochs,
                    shuffle=False,
                    verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose,
                    callbacks=[timer, OneEpoch(), stop, *callbacks],
                )
                previous_end = timer.epoch_ends[-2] if len(timer.epoch_ends) > 1 else timer.start
                rows.append({"epoch": epoch + 1, **{k: float(v[-1]) for k, v in history.history.items()},
                             "epoch_seconds": round(timer.epoch_ends[-1] - previous_end, 3)})
                timing = {**timing_summary(timer, len(targets), batch_size, epoch + 1 - done),
                          "resumed_after_epoch": done}
                if checkpoint:
                    checkpoint.save(model, epoch + 1, rows, timing)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if stop.received:  # arrived after the last step: the checkpoint is saved, stop all the same
            raise KeyboardInterrupt
        return model, pd.DataFrame(rows).set_index("epoch"), timing


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in models.BUILDERS:
        raise PipelineError(f"usage: python -m pipeline.train {{{'|'.join(models.BUILDERS)}}}")
    name = sys.argv[1]
    p = params.load()
    cfg = p.train
    replicas = distribute.setup(cfg.distribution, cfg.devices, cfg.batch_size)  # before any device work
    split = data.load_split(p.paths.train_arrays)
    epochs = cfg.epochs(name)
    print(f"train-{name}: {len(split.labels)} images, {epochs} epochs, batch {cfg.batch_size}, "
          f"lr {cfg.learning_rate}, loss {cfg.loss}, seed {cfg.seed}, normalize={split.normalize}, "
          f"{cfg.distribution} on {replicas.count} replica(s): {', '.join(replicas.devices)}")
    checkpoint_dir = p.paths.checkpoint(name)
    model, history, timing = fit(name, split, seed=cfg.seed, batch_size=cfg.batch_size,
                                 learning_rate=cfg.learning_rate, epochs=epochs, loss=cfg.loss,
                                 checkpoint_dir=checkpoint_dir, replicas=replicas)
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
        "loss": cfg.loss,
        "seed": cfg.seed,
        "normalize": split.normalize,
        **replicas.metrics(),
        "final_train_loss": round(float(history["loss"].iloc[-1]), 5),
        "final_train_accuracy": round(float(history["accuracy"].iloc[-1]), 5),
        **timing,
        **stage.environment(),
    }
    stage.write_json(p.paths.train_metrics(name), metrics)
    Checkpoint(checkpoint_dir, {}).clear()
    print(f"train-{name}: {metrics['train_images_per_s']} images/s steady state, "
          f"compile {metrics['compile_seconds']} s -> {p.paths.model(name)}")


if __name__ == "__main__":
    stage.run(main)
