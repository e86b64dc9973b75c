"""Worker for tests/test_backends.py: a few training steps of one model under the backend it runs in.

    KERAS_BACKEND=jax python -m tests.backend_losses --model parallel --loss crossentropy [LOSS...] \
        --weights W.npz [--save-weights] --data D.npz --steps 3

For each loss (one process for all of them: each start imports a backend), builds
`models.build(model, 0.001, loss)` and either saves its seeded initial weights to W.npz
(`--save-weights`, keyed by variable path; the weights do not depend on the loss) or loads them from
there, so that every backend and loss starts from the same numbers (the backends' random generators
differ). Then it trains `--steps` batches of D.npz (images, labels) with `train_on_batch`, one batch per
step in file order, and prints {"backend", "losses": {loss: [per step]}} as JSON on its last line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pipeline.lib import models, params, registry


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.backend_losses", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=registry.names(), required=True)
    parser.add_argument("--loss", choices=params.LOSSES, nargs="+", action="extend", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--save-weights", action="store_true")
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, required=True)
    args = parser.parse_args()
    if len(set(args.loss)) != len(args.loss):
        parser.error(f"--loss names a loss twice: {' '.join(args.loss)}")
    import keras

    with np.load(args.data) as batches:
        images, labels = batches["images"], batches["labels"]
    targets = keras.utils.to_categorical(labels, models.NUM_CLASSES)
    batch = len(labels) // args.steps
    losses = {}
    for n, loss in enumerate(args.loss):
        keras.utils.set_random_seed(0)
        model = models.build(args.model, 0.001, loss)
        if args.save_weights and n == 0:
            np.savez(args.weights, **{v.path: keras.ops.convert_to_numpy(v) for v in model.weights})
        with np.load(args.weights) as saved:
            for variable in model.weights:
                variable.assign(saved[variable.path])
        losses[loss] = []
        for i in range(args.steps):
            model.reset_metrics()  # the loss of this step's batch alone, not a running mean
            logs = model.train_on_batch(images[i * batch:(i + 1) * batch], targets[i * batch:(i + 1) * batch],
                                        return_dict=True)
            losses[loss].append(float(logs["loss"]))
    print(json.dumps({"backend": keras.config.backend(), "losses": losses}))


if __name__ == "__main__":
    main()
