"""Synthetic prepared splits of `archives.batch` images: in memory as a stage loads them
(`synthetic_split`), and on disk as the preprocess stage writes them (`write_prepared`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import data
from tests import archives


def _arrays(images: int, seed: int, normalize: str):
    """uint8 N x 32 x 32 x 3 pixels, uint8 labels, and the per-channel (offset, scale) of `normalize`."""
    batch = archives.batch(images, seed=seed)
    pixels = batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    offset, scale = data.normalization(normalize, pixels)
    return pixels, np.array(batch[b"labels"], np.uint8), offset, scale


def synthetic_split(images: int, seed: int, normalize: str = "unit") -> data.Split:
    """What `data.load_split` returns for the file `write_prepared` writes with the same arguments."""
    pixels, labels, offset, scale = _arrays(images, seed, normalize)
    return data.Split(images=((pixels.astype(np.float32) - offset) * scale).astype(np.float32, copy=False),
                      labels=labels.astype(np.int64), class_names=tuple(archives.CLASS_NAMES), normalize=normalize)


def write_prepared(project: Path, images: int, seed: int, split: str = "train", normalize: str = "unit") -> None:
    """`data/prepared/<split>.npz` in `project`, as the preprocess stage writes it, of synthetic images."""
    pixels, labels, offset, scale = _arrays(images, seed, normalize)
    (project / "data" / "prepared").mkdir(parents=True, exist_ok=True)
    data.save_split(project / "data" / "prepared" / f"{split}.npz", pixels, labels, archives.CLASS_NAMES,
                    normalize, offset, scale)
