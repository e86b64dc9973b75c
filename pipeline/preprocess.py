"""Stage `preprocess`: turn the verified archive into compact train/test arrays.

Reads params `preprocess.*` and `paths.archive`; writes `<paths.prepared_dir>/train.npz` and
`test.npz`. Each holds uint8 images (N x 32 x 32 x 3), uint8 labels, the class names and the
per-channel `offset` and `scale` of the chosen normalization, which `pipeline.data` applies at load:
float = (uint8 - offset) * scale. Storing uint8 keeps the full set at 180 MB instead of 740 MB.

- normalize `raw`: the tutorial's 0-255 floats; `unit`: / 255; `standardize`: per-channel mean and std
  of the (possibly subset) training split, applied to both splits.
- train_limit / test_limit: 0 keeps everything; N keeps a seeded, class-balanced subset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline import cifar, params, stage
from pipeline.params import PipelineError


def balanced_subset(labels: np.ndarray, limit: int, seed: int, key: str) -> np.ndarray:
    """Indices (sorted) of `limit` samples with equal counts per class; all indices when limit is 0."""
    if limit == 0 or limit == len(labels):
        return np.arange(len(labels))
    if limit > len(labels):
        raise PipelineError(f"{key} = {limit} exceeds the {len(labels)} images available")
    keep, _ = train_test_split(np.arange(len(labels)), train_size=limit, stratify=labels, random_state=seed)
    return np.sort(keep)


def normalization(mode: str, train_images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (offset, scale) such that float = (uint8 - offset) * scale."""
    if mode == "raw":
        return np.zeros(3, np.float32), np.ones(3, np.float32)
    if mode == "unit":
        return np.zeros(3, np.float32), np.full(3, 1 / 255, np.float32)
    if mode == "standardize":
        # float64 sums: 50k x 1024 values per channel lose digits in float32.
        mean = train_images.mean(axis=(0, 1, 2), dtype=np.float64)
        std = train_images.std(axis=(0, 1, 2), dtype=np.float64)
        return mean.astype(np.float32), (1 / std).astype(np.float32)
    raise PipelineError(f"preprocess.normalize = {mode!r} is invalid; allowed: {' | '.join(params.NORMALIZE_MODES)}")


def save_split(path: Path, images, labels, class_names, mode, offset, scale) -> None:
    with stage.atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            images=images,
            labels=labels,
            class_names=np.array(class_names),
            normalize=np.array(mode),
            offset=offset,
            scale=scale,
        )


def main() -> None:
    p = params.load()
    cfg = p.preprocess
    data = cifar.load_archive(Path(p.paths.archive))
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    train_keep = balanced_subset(train_y, cfg.train_limit, cfg.seed, "preprocess.train_limit")
    test_keep = balanced_subset(test_y, cfg.test_limit, cfg.seed, "preprocess.test_limit")
    train_x, train_y = train_x[train_keep], train_y[train_keep]
    test_x, test_y = test_x[test_keep], test_y[test_keep]
    offset, scale = normalization(cfg.normalize, train_x)
    save_split(p.paths.train_arrays, train_x, train_y, data["class_names"], cfg.normalize, offset, scale)
    save_split(p.paths.test_arrays, test_x, test_y, data["class_names"], cfg.normalize, offset, scale)
    print(
        f"preprocess: {len(train_y)} train / {len(test_y)} test images, normalize={cfg.normalize}, "
        f"offset={np.round(offset, 3).tolist()} scale={np.round(scale, 5).tolist()} -> {p.paths.prepared_dir}"
    )


if __name__ == "__main__":
    stage.run(main)
