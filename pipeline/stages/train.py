"""Stage `train@<model>` (dvc.yaml `foreach` over params.yaml's `models:`): train one registered model.

    python -m pipeline.stages.train <model>      (a model of pipeline/lib/registry.py)

Reads params `train.*`, `models.<model>.{epochs,evals_per_epoch,target_accuracy}`, `evaluate.batch_size`,
`<paths.prepared_dir>/train.npz` and the held-out `test.npz`.
Writes `<paths.models_dir>/<model>.keras`, `<paths.metrics_dir>/train-<model>.json`, the per-epoch
history `<paths.plots_dir>/train-<model>.csv` and the held-out curve `<paths.plots_dir>/heldout-<model>.csv`
(paths from `params.Paths`).

The held-out curve (pipeline/lib/heldout.py): the test images scored `evals_per_epoch` times per epoch,
never used for a decision; the metrics hold it (`heldout_curve`) and the time to the model's target
accuracy read from it: `images_to_target`, `epochs_to_target`, `seconds_to_target` (training seconds,
the scoring excluded), or null for each and `target_reached: false`, with the best score reached.

Resumable: every completed epoch is checkpointed in `<paths.checkpoints_dir>/<model>/`, which is
machine-local (no DVC output, never pushed; see dvc.yaml), so a run killed midway continues from its
last completed epoch on the next `dvc repro` (`training.fit`). The timing metrics then cover the epochs
trained after the resume (`resumed_after_epoch`); the held-out curve covers every epoch, its training
seconds running on from the checkpoint's. `--time-limit-s S` (scripts/gpu-check; never in dvc.yaml) stops
before an epoch that would end past S seconds of wall clock, held-out scoring included: the outputs then
hold the epochs done (`epochs_completed` < `epochs`) and the checkpoint stays for a rerun to continue.
With `train.distribution: data_parallel` the same loop runs inside the backend's distribution engine
(pipeline/lib/distribute.py); across several processes (jax on several hosts) each process feeds its
share of every batch, so no held-out curve is recorded (an empty one, the target not reached).
"""

from __future__ import annotations

import math

import pandas as pd

from pipeline.lib import cli, data, distribute, environment, heldout, params, registry, training
from pipeline.lib.atomic import atomic_output
from pipeline.lib.metrics import validate as validate_metrics, write as write_metrics


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m pipeline.stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=registry.names())
    parser.add_argument("--time-limit-s", type=float, default=None, metavar="S",
                        help="stop before an epoch that would end more than S seconds after the start "
                             "(the checkpoint stays, so a rerun continues); not for dvc repro")
    args = parser.parse_args(argv)
    name = args.model
    if args.time_limit_s is not None and not (math.isfinite(args.time_limit_s) and args.time_limit_s > 0):
        parser.error(f"--time-limit-s must be a finite number of seconds > 0, got {args.time_limit_s}")
    p = params.load()
    cfg = p.train
    replicas = distribute.setup(cfg.distribution, cfg.devices, cfg.batch_size)  # before any device work
    split = data.load_split(p.paths.train_arrays)
    test = data.load_split(p.paths.test_arrays)
    if test.normalize != split.normalize:
        raise params.PipelineError(f"{p.paths.test_arrays}: normalize={test.normalize}, but "
                                   f"{p.paths.train_arrays} has {split.normalize}; rerun the preprocess stage")
    model_cfg = p.models[name]
    epochs = model_cfg.epochs
    print(f"train-{name}: {len(split.labels)} images, {epochs} epochs, batch {cfg.batch_size}, "
          f"lr {cfg.learning_rate}, loss {cfg.loss}, seed {cfg.seed}, normalize={split.normalize}, "
          f"{cfg.distribution} on {replicas.count} replica(s): {', '.join(replicas.devices)}")
    scored = test if replicas.processes == 1 else None
    if scored is None:  # each process holds a shard of every batch: predict would see its own share only
        print(f"train-{name}: no held-out curve across {replicas.processes} processes (no time to target)")
    checkpoint_dir = p.paths.checkpoint(name)
    model, history, timing = training.fit(name, split, seed=cfg.seed, batch_size=cfg.batch_size,
                                          learning_rate=cfg.learning_rate, epochs=epochs, loss=cfg.loss,
                                          checkpoint_dir=checkpoint_dir, replicas=replicas,
                                          time_limit_s=args.time_limit_s, heldout=scored,
                                          evals_per_epoch=model_cfg.evals_per_epoch,
                                          eval_batch_size=p.evaluate.batch_size)
    curve = timing.pop("heldout_curve", [])
    timing.setdefault("heldout_eval_seconds", 0.0)
    reached = heldout.to_target(curve, model_cfg.target_accuracy, len(test.labels), len(split.labels))
    metrics = {
        "model": name,
        "param_count": model.count_params(),
        "epochs": epochs,
        "epochs_completed": len(history),
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
        "heldout_images": len(test.labels),
        "evals_per_epoch": model_cfg.evals_per_epoch,
        **reached,
        "heldout_curve": curve,
        **environment.record(),
    }
    metrics_file = p.paths.train_metrics(name)
    validate_metrics("train", metrics, metrics_file)  # before any output is replaced
    with atomic_output(p.paths.model(name)) as tmp:
        model.save(tmp)
    with atomic_output(p.paths.train_history(name)) as tmp:
        history.to_csv(tmp)
    with atomic_output(p.paths.heldout_curve(name)) as tmp:
        pd.DataFrame(curve, columns=heldout.CURVE_COLUMNS).to_csv(tmp, index=False)
    write_metrics("train", metrics_file, metrics)
    if timing["stopped_at_time_limit"]:
        print(f"train-{name}: stopped at the time limit after {len(history)}/{epochs} epochs; "
              f"rerun to continue from {checkpoint_dir}")
        return
    training.Checkpoint(checkpoint_dir, {}).clear()
    print(f"train-{name}: {metrics['train_images_per_s']} images/s steady state, "
          f"compile {metrics['compile_seconds']} s -> {p.paths.model(name)}")
    print(f"train-{name}: " + (
        f"held-out {reached['target_accuracy']} reached after {reached['images_to_target']} images "
        f"({reached['epochs_to_target']} epochs, {reached['seconds_to_target']} s of training)"
        if reached["target_reached"] else
        f"held-out {reached['target_accuracy']} not reached (best {reached['best_heldout_accuracy']})"))


if __name__ == "__main__":
    cli.main(main)
