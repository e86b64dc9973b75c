"""Stage `collapse`: does the parallel model fall to chance (the tutorial's 10.0%), how often, and when?

A study, not part of the benchmark: it lives in studies/dvc.yaml and runs when named
(`dvc repro studies/dvc.yaml`, or `make study`).

Trains the parallel model `collapse.seeds` times (seeds 0, 1, ...) for `collapse.epochs` epochs on a
class-balanced subset of the prepared training images, with `train.batch_size` and
`train.learning_rate`, through the same `training.fit` as the train stages, under Keras 3 and, with
`collapse.keras2: true`, under Keras 2 (`tf_keras`, the tutorial's generation of Keras) with the same
model code, and with `train.loss` (`clipped_crossentropy`: the loss as the tutorial's Keras computed
it; Keras 3 only). A `diagnostics.Probe` records, every `collapse.probe_every` steps, the loss, gradient norms
per branch, LSTM gate saturation, dead ReLUs and logit magnitudes (see pipeline/lib/diagnostics.py).

Writes `<paths.plots_dir>/collapse/<arm>-seed<k>.csv` (one row per probe) and
`<paths.metrics_dir>/collapse.json`: per arm, each seed's test accuracy after every epoch, whether it
collapsed (final test accuracy below `params.COLLAPSED_BELOW`), the first NaN/inf step, and the extremes of
the diagnostics, plus mean and standard deviation over seeds.

Each arm runs in its own process (`python -m pipeline.stages.collapse --arm keras2 --out FILE`), because
Keras 2 is bound to the name `keras` before the model code is imported. Fixes are DVC experiments over the same
seeds, e.g. `dvc exp run studies/dvc.yaml:collapse -S preprocess.normalize=unit`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.lib import cli, data, environment, keras2, params
from pipeline.lib.atomic import atomic_output
from pipeline.lib.metrics import write as write_metrics
from pipeline.lib.params import PipelineError


def subset(split, limit: int, seed: int, key: str):
    keep = data.balanced_subset(split.labels, limit, seed, key)
    return split.images[keep], split.labels[keep]


def check_sizes(p: params.Params) -> None:
    """Refuse, in one line and before any worker starts, a subset larger than the prepared split."""
    cfg = p.collapse
    counts = {path: data.split_size(path) for path in (p.paths.train_arrays, p.paths.test_arrays)}
    train_images = cfg.train_limit or counts[p.paths.train_arrays]
    for key, limit, available, where in (
            ("collapse.train_limit", cfg.train_limit, counts[p.paths.train_arrays], p.paths.train_arrays),
            ("collapse.test_limit", cfg.test_limit, counts[p.paths.test_arrays], p.paths.test_arrays),
            ("collapse.probe_images", cfg.probe_images, train_images, "the training subset")):
        if limit > available:
            raise PipelineError(f"{key} = {limit} exceeds the {available} images in {where}")


def run_arm(arm: str, out: Path) -> None:
    """Worker: train every seed under one Keras, write the probes and per-epoch scores to `out`."""
    if arm == "keras2":
        keras2.bind()
    import keras

    from pipeline.lib import diagnostics, training

    p = params.load()
    cfg, tcfg = p.collapse, p.train
    full = data.load_split(p.paths.train_arrays)
    images, labels = subset(full, cfg.train_limit, p.preprocess.seed, "collapse.train_limit")
    test = data.load_split(p.paths.test_arrays)
    test_images, test_labels = subset(test, cfg.test_limit, p.preprocess.seed, "collapse.test_limit")
    probe_keep = data.balanced_subset(labels, cfg.probe_images, p.preprocess.seed, "collapse.probe_images")
    split = data.Split(images, labels, full.class_names, full.normalize)
    steps_per_epoch = -(-len(labels) // tcfg.batch_size)
    runs = []
    for seed in range(cfg.seeds):
        print(f"collapse: {arm} (keras {keras.__version__}) seed {seed + 1}/{cfg.seeds}: {len(labels)} images, "
              f"{cfg.epochs} epochs, normalize={full.normalize}", flush=True)
        probe = diagnostics.Probe(cfg.model, images[probe_keep], labels[probe_keep], cfg.probe_every,
                                  test_images, test_labels, steps_per_epoch)
        training.fit(
            cfg.model,
            split,
            seed=seed,
            batch_size=tcfg.batch_size,
            learning_rate=tcfg.learning_rate,
            loss=tcfg.loss,
            epochs=cfg.epochs,
            verbose=2,
            callbacks=[probe],
        )
        runs.append({"seed": seed, "probes": probe.rows, "epochs": probe.epochs,
                     "first_nonfinite_step": probe.first_nonfinite_step})
    out.write_text(json.dumps({"arm": arm, "keras_version": keras.__version__, "runs": runs,
                               "train_images": len(labels), "test_images": len(test_labels),
                               "normalize": full.normalize}))


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m pipeline.stages.collapse", description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=params.COLLAPSE_ARMS, help="worker: train every seed under this Keras only")
    parser.add_argument("--out", type=Path, help="worker: where the arm's results go (with --arm)")
    args = parser.parse_args(argv)
    if (args.arm is None) != (args.out is None):
        parser.error("--arm and --out go together (a worker's arm and where its results go)")
    if args.arm:
        run_arm(args.arm, args.out)
        return
    p = params.load()
    cfg = p.collapse
    if cfg.keras2 and p.train.loss != "crossentropy":
        raise PipelineError(f"train.loss = {p.train.loss!r} is Keras 3 only; set collapse.keras2: false with it")
    check_sizes(p)
    arms = params.COLLAPSE_ARMS if cfg.keras2 else params.COLLAPSE_ARMS[:1]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arm in arms:
            out = Path(tmp) / f"{arm}.json"
            code = subprocess.call([sys.executable, "-m", "pipeline.stages.collapse", "--arm", arm, "--out", str(out)])
            if code != 0:
                raise PipelineError(f"collapse: the {arm} worker failed (exit {code}); see its output above")
            results[arm] = json.loads(out.read_text())
    written = set()
    for arm, result in results.items():
        for run in result["runs"]:
            with atomic_output(p.paths.collapse_plot(arm, run["seed"])) as tmp:
                pd.DataFrame(run["probes"]).to_csv(tmp, index=False)
            written.add(p.paths.collapse_plot(arm, run["seed"]))
    for stale in set(p.paths.collapse_plots_dir.glob("*.csv")) - written:  # runs of an earlier, larger study
        stale.unlink()
    from pipeline.lib import diagnostics  # Keras 3 here; a worker binds its Keras before importing it

    first = next(iter(results.values()))
    metrics = {
        "model": cfg.model,
        "normalize": first["normalize"],
        "train_images": first["train_images"],
        "test_images": first["test_images"],
        "epochs": cfg.epochs,
        "batch_size": p.train.batch_size,
        "learning_rate": p.train.learning_rate,
        "loss": p.train.loss,
        "seeds": cfg.seeds,
        "collapsed_below": params.COLLAPSED_BELOW,
        **{arm: diagnostics.summarize_runs(result) for arm, result in results.items()},
        **environment.record(),
    }
    write_metrics("collapse", p.paths.collapse_metrics, metrics)
    for arm in results:
        m = metrics[arm]
        print(f"collapse: {arm}: {m['collapsed_runs']}/{m['runs']} runs collapsed, test accuracy "
              f"{m['test_accuracy_mean']:.4f} +- {m['test_accuracy_std']}")


if __name__ == "__main__":
    cli.main(main)
