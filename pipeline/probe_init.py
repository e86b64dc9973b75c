"""Both models at initialisation, before any training step: logits, gate saturation, gradients.

    python -m pipeline.probe_init [--images 200] [--seed 0]

Builds each model with `train.learning_rate` and each loss in `models.LOSSES` from the same seed,
and prints `diagnostics.Probe.measure()` on a class-balanced sample of `<paths.prepared_dir>/train.npz`
(so with the input scaling `preprocess.normalize` gave it). It shows whether the softmax is saturated,
and the tutorial-era loss blind, before training starts (docs/findings.md).
Not a stage: it reads the prepared arrays and writes nothing.
"""

from __future__ import annotations

import keras

from pipeline.lib import cli, data, diagnostics, models, params, registry


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m pipeline.probe_init", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="probe images, a multiple of 10 (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = parser.parse_args(argv)
    if args.images < 10 or args.images % 10:
        parser.error(f"--images must be a multiple of 10, at least 10 (one per class), got {args.images}")
    p = params.load()
    split = data.load_split(p.paths.train_arrays)
    keep = data.balanced_subset(split.labels, args.images, p.preprocess.seed, "--images")
    for name in registry.names():
        for loss in params.LOSSES:
            keras.utils.set_random_seed(args.seed)
            model = models.build(name, p.train.learning_rate, loss)
            probe = diagnostics.Probe(name, split.images[keep], split.labels[keep], 1, split.images[:10],
                                      split.labels[:10], 1)
            probe.set_model(model)
            row = probe.measure()
            shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("step", "epoch"))
            print(f"{name}, {loss}, normalize={split.normalize}, seed {args.seed}: {shown}")


if __name__ == "__main__":
    cli.main(main)
