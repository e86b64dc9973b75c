"""Stage `evaluate@<model>` (dvc.yaml `foreach`): test accuracy, loss and inference throughput.

Run as `python -m pipeline.stages.evaluate <model>` (a model of pipeline/lib/registry.py). One stage per model (a
dvc.yaml `foreach` over params.yaml's `models:`), so that an experiment on one model (`dvc exp run
evaluate@parallel -S train.seed=3`) neither retrains nor re-scores the others; `dvc repro evaluate` runs
them all.

Reads params `evaluate.batch_size`, `<paths.prepared_dir>/test.npz` and `<paths.models_dir>/<model>.keras`.
Writes `<paths.metrics_dir>/evaluate-<model>.json` (with the tutorial's reported accuracy beside ours)
and `<paths.plots_dir>/confusion-<model>.csv` (actual, predicted class names) for DVC's confusion
template.

Inference throughput: one warm-up batch (tracing and compile) untimed, then one timed pass over the
whole test split.
"""

from __future__ import annotations

import sys
import time

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from pipeline.lib import cli, data, environment, heldout, models, params, registry
from pipeline.lib.atomic import atomic_output
from pipeline.lib.metrics import write as write_metrics
from pipeline.lib.params import PipelineError


def evaluate(model: keras.Model, split: data.Split, batch_size: int, name: str) -> tuple[dict, np.ndarray]:
    """Metrics of `model`, the registry's model `name`, on `split`, and its predicted class per image."""
    reported = registry.MODELS[name].reported
    model.predict(split.images[:batch_size], batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    probs = model.predict(split.images, batch_size=batch_size, verbose=1 if sys.stdout.isatty() else 0)
    seconds = time.perf_counter() - start
    accuracy, loss, _ = heldout.score(probs, split.labels)  # the arithmetic of the train stage's held-out curve
    predicted = probs.argmax(axis=1)
    labels = list(range(models.NUM_CLASSES))
    confusion = confusion_matrix(split.labels, predicted, labels=labels)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    metrics = {
        "test_accuracy": round(accuracy, 5),
        "test_loss": round(loss, 5),
        "per_class_accuracy": {name: round(float(a), 4) for name, a in zip(split.class_names, per_class)},
        "test_images": int(len(split.labels)),
        "inference_images_per_s": round(len(split.labels) / seconds, 2),
        "inference_batch_size": batch_size,
        "reported_test_accuracy": reported.accuracy if reported else None,
        "reported_epochs": reported.epochs if reported else None,
    }
    return metrics, predicted


def load_model(path) -> keras.Model:
    try:
        return keras.saving.load_model(path)  # safe_mode: refuses lambdas and arbitrary code
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: cannot load model: {exc}") from None


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m pipeline.stages.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=registry.names())
    name = parser.parse_args(argv).model
    p = params.load()
    split = data.load_split(p.paths.test_arrays)
    model = load_model(p.paths.model(name))
    print(f"evaluate-{name}: {len(split.labels)} test images")
    metrics, predicted = evaluate(model, split, p.evaluate.batch_size, name)
    names = np.array(split.class_names)
    confusion = pd.DataFrame({"actual": names[split.labels], "predicted": names[predicted]})
    with atomic_output(p.paths.confusion(name)) as tmp:
        confusion.to_csv(tmp, index=False)
    write_metrics("evaluate", p.paths.evaluate_metrics(name), {"model": name, **metrics, **environment.record()})
    reported = metrics["reported_test_accuracy"]
    print(f"evaluate-{name}: test accuracy {metrics['test_accuracy']:.4f}"
          + (f" (tutorial reported {reported:.4f})" if reported is not None else ""))


if __name__ == "__main__":
    cli.main(main)
