"""The training loop both train stages and the collapse study share: seeded epochs, checkpoint and
resume, step timing, and a clean stop on SIGINT/SIGTERM.

`fit` builds one of the registry's models (`registry.MODELS`) and trains it epoch by epoch. Each epoch
sees the images in a permutation seeded by (seed, epoch), and every completed epoch can be checkpointed
(`Checkpoint`), so a
run killed midway resumes from its last completed epoch and reaches the same final weights as an
uninterrupted one. Throughput is steady state: the first step, where the backend traces and compiles
the train function, is timed separately as `compile_seconds` and left out of `train_images_per_s`.
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

from pipeline.lib import data, distribute, models, stats
from pipeline.lib.atomic import atomic_output, write_json
from pipeline.lib.heldout import HeldOut


class StepTimer(keras.callbacks.Callback):
    """Wall-clock time at the end of every training step and epoch, across several fit() calls.

    Its `clock` is perf_counter less the time other callbacks declared as not training (`exclude`: the
    held-out evaluations of pipeline/lib/heldout.py), so that steps and epochs time training alone.
    """

    def __init__(self):
        super().__init__()
        self.start = time.perf_counter()
        self.excluded = 0.0
        self.step_ends: list[float] = []
        self.epoch_ends: list[float] = []

    def clock(self) -> float:
        return time.perf_counter() - self.excluded

    def exclude(self, seconds: float) -> None:
        self.excluded += seconds

    def on_train_batch_end(self, batch, logs=None):
        self.step_ends.append(self.clock())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(self.clock())


def timing_summary(timer: StepTimer, num_images: int, batch_size: int, epochs: int) -> dict:
    """Steady-state throughput and step-time spread from a StepTimer, excluding the first step."""
    ends = np.array(timer.step_ends)
    steps = np.diff(ends) * 1000.0
    steady_images = num_images * epochs - min(batch_size, num_images)
    steady_seconds = ends[-1] - ends[0]
    return {
        "train_seconds": round(ends[-1] - timer.start, 3),
        "compile_seconds": round(ends[0] - timer.start, 3),
        "first_epoch_seconds": round(timer.epoch_ends[0] - timer.start, 3),
        "train_images_per_s": round(steady_images / steady_seconds, 2) if steady_seconds > 0 else None,
        **stats.spread(steps),
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
        with atomic_output(self.directory / model_file) as tmp:
            model.save(tmp)
        write_json(self.state_file, {"fingerprint": self.fingerprint, "epochs_done": epochs_done,
                                           "model_file": model_file, "history": history, "timing": timing})
        for old in self.directory.glob("model-epoch*.keras"):
            if old.name != model_file:
                old.unlink()

    def clear(self) -> None:
        """Empty the directory once the outputs are in place (it is machine-local, no DVC output)."""
        for path in self.directory.glob("*"):
            path.unlink()


class EpochLoop:
    """The train stage's epochs of one built model over one split, as `fit` runs them.

    Each `run(epoch)` trains one epoch: a permutation of the images seeded by (seed, epoch), this
    process's share of it (`replicas.local_batches`), and one `model.fit` with the stage's callbacks
    (StepTimer, OneEpoch, StopOnSignal, then `callbacks`). The speed gate's `<model> fit loop`
    benchmark (pipeline/lib/speed.py) runs this same loop, so work added to it is timed by `gate ab`.
    """

    def __init__(self, model: keras.Model, images: np.ndarray, targets: np.ndarray, *, seed: int, batch_size: int,
                 epochs: int, replicas: distribute.Replicas, callbacks=(), verbose=None, timer=None):
        self.model, self.images, self.targets = model, images, targets
        self.seed, self.batch_size, self.epochs, self.replicas = seed, batch_size, epochs, replicas
        self.callbacks = list(callbacks)
        self.verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
        self.timer, self.stop = timer or StepTimer(), StopOnSignal()

    def run(self, epoch: int) -> dict[str, float]:
        """Train epoch `epoch` (0-based); its last logged value of each metric. `began` is the clock
        (perf_counter) when the epoch's work started, before its permutation."""
        self.began = time.perf_counter()
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.targets))
        rows_fed, batch_fed = self.replicas.local_batches(order, self.batch_size)  # this process's share
        history = self.model.fit(
            self.images[rows_fed],
            self.targets[rows_fed],
            batch_size=batch_fed,
            initial_epoch=epoch,
            epochs=self.epochs,
            shuffle=False,
            verbose=self.verbose,
            callbacks=[self.timer, OneEpoch(), self.stop, *self.callbacks],
        )
        return {k: float(v[-1]) for k, v in history.history.items()}


def data_digest(split: data.Split) -> str:
    digest = hashlib.md5(np.ascontiguousarray(split.images).data)
    digest.update(np.ascontiguousarray(split.labels).data)
    return digest.hexdigest()


def _scoring(heldout: data.Split | None, curve: list, timer: StepTimer, train_images: int, batch_size: int,
             evals_per_epoch: int, eval_batch_size: int, loss: str) -> HeldOut | None:
    """The held-out scoring of a run (None without held-out images), its seconds going on from `curve`, the
    curve of the epochs a resumed run did before."""
    if heldout is None:
        return None
    return HeldOut(heldout.images, heldout.labels, train_images=train_images, batch_size=batch_size,
                   evals_per_epoch=evals_per_epoch, eval_batch_size=eval_batch_size,
                   from_logits=models.FROM_LOGITS[loss], timer=timer,
                   seconds_before=curve[-1]["train_seconds"] if curve else 0.0)


def fit(name: str, split: data.Split, *, seed: int, batch_size: int, learning_rate: float, epochs: int,
        loss: str = "crossentropy", checkpoint_dir=None, verbose=None, callbacks=(),
        replicas: distribute.Replicas | None = None, time_limit_s: float | None = None,
        heldout: data.Split | None = None, evals_per_epoch: int = 1,
        eval_batch_size: int = 100) -> tuple[keras.Model, pd.DataFrame, dict]:
    """Build and train `name` on `split`; return the tutorial's model (`models.classifier`: softmax
    output, the one to save and score), its per-epoch history and timing.

    Each epoch sees the images in the order of a permutation seeded by (seed, epoch), so a run
    resumed from the checkpoint of epoch k trains exactly like an uninterrupted one. With
    `checkpoint_dir`, every completed epoch is checkpointed there and a matching checkpoint is
    resumed. `verbose=None` shows a progress bar on a terminal and one line per epoch in a log file.
    `callbacks` are added to every epoch's fit() (e.g. diagnostics.Probe). `replicas`
    (from `distribute.setup`) trains data-parallel; by default on the backend's default device.
    `time_limit_s` caps the wall clock of this call, held-out scoring included: no epoch starts that the
    previous epoch's duration says would end past it (`timing["stopped_at_time_limit"]`; the checkpoint
    lets a later call go on).
    `heldout` (the test split) is scored `evals_per_epoch` times per epoch (`heldout.HeldOut`, batches of
    `eval_batch_size`): `timing["heldout_curve"]` holds its rows, also across a resume, and
    `timing["heldout_eval_seconds"]` the time spent scoring, which no other timing includes. Like the other
    timings, it covers this call; the curve's `train_seconds` run on from the checkpoint's.
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
                "from_logits": models.FROM_LOGITS[loss],
                "epochs": epochs, "data_md5": data_digest(split), "backend": keras.config.backend(),
                "replicas": replicas.count,
                **({"heldout_md5": data_digest(heldout), "evals_per_epoch": evals_per_epoch,
                    "eval_batch_size": eval_batch_size} if heldout is not None else {})})
            resumed = checkpoint.load()
            if resumed:
                model, done, rows, timing = resumed
                print(f"train-{name}: resuming after epoch {done} from {checkpoint_dir}", flush=True)
        timer = StepTimer()
        curve = list((timing or {}).get("heldout_curve", []))
        scoring = _scoring(heldout, curve, timer, len(targets), batch_size, evals_per_epoch, eval_batch_size, loss)
        callbacks = [*callbacks, scoring] if scoring else callbacks
        loop = EpochLoop(model, split.images, targets, seed=seed, batch_size=batch_size, epochs=epochs,
                         replicas=replicas, callbacks=callbacks, verbose=verbose, timer=timer)
        stop = loop.stop
        previous = {sig: signal.signal(sig, stop.note) for sig in (signal.SIGINT, signal.SIGTERM)}
        stopped = False
        wall_ends = [timer.start]  # the wall clock at each epoch's end, scoring included
        try:
            for epoch in range(done, epochs):
                if time_limit_s is not None and len(wall_ends) > 1:
                    last_epoch = wall_ends[-1] - wall_ends[-2]
                    if wall_ends[-1] - timer.start + last_epoch > time_limit_s:
                        stopped = True
                        break
                logs = loop.run(epoch)
                wall_ends.append(time.perf_counter())
                previous_end = timer.epoch_ends[-2] if len(timer.epoch_ends) > 1 else timer.start
                rows.append({
                    "epoch": epoch + 1,
                    **logs,
                    "epoch_seconds": round(timer.epoch_ends[-1] - previous_end, 3),
                })
                timing = {**timing_summary(timer, len(targets), batch_size, epoch + 1 - done),
                          "resumed_after_epoch": done}
                if scoring:
                    timing.update(heldout_curve=curve + scoring.rows,
                                  heldout_eval_seconds=round(scoring.eval_seconds, 3))
                if checkpoint:
                    checkpoint.save(model, epoch + 1, rows, timing)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if stop.received:  # arrived after the last step: the checkpoint is saved, stop all the same
            raise KeyboardInterrupt
        timing = {**timing, "time_limit_s": time_limit_s, "stopped_at_time_limit": stopped}
        return models.classifier(model), pd.DataFrame(rows).set_index("epoch"), timing
