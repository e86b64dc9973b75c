"""Stage `preprocess`: turn the verified archive into compact train/test arrays.

Reads params `preprocess.*` and `paths.archive`; writes `<paths.prepared_dir>/train.npz` and
`test.npz` in the prepared-data format of pipeline/lib/data.py (uint8 images, normalized at load).

- normalize `raw`: the tutorial's 0-255 floats; `unit`: / 255; `standardize`: per-channel mean and std
  of the (possibly subset) training split, applied to both splits.
- train_limit / test_limit: 0 keeps everything; N keeps a seeded, class-balanced subset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.lib import cifar, cli, data, params


def main(argv=None) -> None:
    cli.ArgumentParser(prog="python -m pipeline.stages.preprocess", description=__doc__.splitlines()[0]).parse_args(
        argv
    )
    p = params.load()
    cfg = p.preprocess
    archive = cifar.load_archive(Path(p.paths.archive))
    (train_x, train_y), (test_x, test_y) = archive["train"], archive["test"]
    train_keep = data.balanced_subset(train_y, cfg.train_limit, cfg.seed, "preprocess.train_limit")
    test_keep = data.balanced_subset(test_y, cfg.test_limit, cfg.seed, "preprocess.test_limit")
    train_x, train_y = train_x[train_keep], train_y[train_keep]
    test_x, test_y = test_x[test_keep], test_y[test_keep]
    offset, scale = data.normalization(cfg.normalize, train_x)
    for path, images, labels in ((p.paths.train_arrays, train_x, train_y), (p.paths.test_arrays, test_x, test_y)):
        data.save_split(path, images, labels, archive["class_names"], cfg.normalize, offset, scale)
    print(
        f"preprocess: {len(train_y)} train / {len(test_y)} test images, normalize={cfg.normalize}, "
        f"offset={np.round(offset, 3).tolist()} scale={np.round(scale, 5).tolist()} -> {p.paths.prepared_dir}"
    )


if __name__ == "__main__":
    cli.main(main)
