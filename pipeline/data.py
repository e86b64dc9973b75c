"""The prepared-data format, written and read here only: one `.npz` per split.

Each file holds uint8 `images` (N x 32 x 32 x 3), uint8 `labels`, the `class_names`, and the
per-channel `offset` and `scale` of the chosen normalization (`normalize`), applied at load:
float = (uint8 - offset) * scale. It's faster to store uint8 and scale once at load than to store
float32: the files are 4x smaller in the DVC cache (180 MB instead of 740 MB for all of CIFAR-10) and
load in well under a second. `allow_pickle=False` keeps loading free of code.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.atomic import atomic_output
from pipeline.params import PipelineError

KEYS = ("images", "labels", "class_names", "normalize", "offset", "scale")


@dataclasses.dataclass(frozen=True)
class Split:
    images: np.ndarray  # float32, N x 32 x 32 x 3, normalized
    labels: np.ndarray  # int64, N
    class_names: tuple[str, ...]
    normalize: str


def normalization(mode: str, train_images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (offset, scale) such that float = (uint8 - offset) * scale, for a valid `mode`."""
    if mode == "raw":
        return np.zeros(3, np.float32), np.ones(3, np.float32)
    if mode == "unit":
        return np.zeros(3, np.float32), np.full(3, 1 / 255, np.float32)
    # standardize. float64 sums: 50k x 1024 values per channel lose digits in float32.
    mean = train_images.mean(axis=(0, 1, 2), dtype=np.float64)
    std = train_images.std(axis=(0, 1, 2), dtype=np.float64)
    return mean.astype(np.float32), (1 / std).astype(np.float32)


def save_split(path: Path | str, images: np.ndarray, labels: np.ndarray, class_names, normalize: str,
               offset: np.ndarray, scale: np.ndarray) -> None:
    """Write one split atomically: uint8 images and labels, and how to normalize them at load."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=images, labels=labels, class_names=np.array(class_names),
                 normalize=np.array(normalize), offset=offset, scale=scale)


def _read(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise PipelineError(f"{path}: missing array {missing[0]!r}; rerun the preprocess stage")
            return {k: npz[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PipelineError(f"{path}: cannot load prepared arrays: {exc}") from None


def load_split(path: Path | str) -> Split:
    arrays = _read(Path(path), KEYS)
    images = (arrays["images"].astype(np.float32) - arrays["offset"]) * arrays["scale"]
    return Split(
        images=images.astype(np.float32, copy=False),
        labels=arrays["labels"].astype(np.int64),
        class_names=tuple(str(n) for n in arrays["class_names"]),
        normalize=str(arrays["normalize"]),
    )


def split_size(path: Path | str) -> int:
    """How many images a prepared split holds, reading its labels only."""
    return len(_read(Path(path), ("labels",))["labels"])


def balanced_subset(labels: np.ndarray, limit: int, seed: int, key: str) -> np.ndarray:
    """Indices (sorted) of `limit` samples with equal counts per class; all indices when limit is 0.

    `key` names the param the limit came from, for the error when it exceeds what there is.
    """
    if limit == 0 or limit == len(labels):
        return np.arange(len(labels))
    if limit > len(labels):
        raise PipelineError(f"{key} = {limit} exceeds the {len(labels)} images available")
    keep, _ = train_test_split(np.arange(len(labels)), train_size=limit, stratify=labels, random_state=seed)
    return np.sort(keep)
