"""Synthetic prepared splits of `archives.batch` images: in memory as a stage loads them
(`synthetic_split`), on disk as the preprocess stage writes them (`write_prepared`), and broken on
disk in every way the prepared-data format refuses (`BAD_PREPARED`, `write_bad_prepared`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.lib import data
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


def _tampered(**arrays):
    """A writer of a 20-image split with `arrays` replaced (a callable gets the good array)."""
    def write(path: Path) -> None:
        pixels, labels, offset, scale = _arrays(20, 0, "raw")
        good = {"images": pixels, "labels": labels, "class_names": np.array(archives.CLASS_NAMES),
                "normalize": np.array("raw"), "offset": offset, "scale": scale}
        for key, value in arrays.items():
            good[key] = value(good[key]) if callable(value) else value
        with open(path, "wb") as f:
            np.savez(f, **good)
    return write


def _cut(path: Path) -> None:
    _tampered()(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# Every way a prepared split is refused: name -> (writer of the file, the message's distinctive part).
BAD_PREPARED = {
    "fewer-labels": (_tampered(labels=lambda y: y[:-1]), "19 labels for 20 images"),
    "label-10": (_tampered(labels=lambda y: np.where(np.arange(len(y)) == 3, 10, y).astype(np.uint8)),
                 "labels must be in 0..9, found 0..10"),
    "label-negative": (_tampered(labels=lambda y: np.where(np.arange(len(y)) == 3, -1, y.astype(np.int64))),
                       "labels must be in 0..9, found -1..9"),
    "float-labels": (_tampered(labels=lambda y: y.astype(np.float32)), "labels must be a 1-D integer array, got float32"),
    "2d-labels": (_tampered(labels=lambda y: y[:, None]), "labels must be a 1-D integer array, got uint8 (20, 1)"),
    "float-images": (_tampered(images=lambda x: x.astype(np.float32)),
                     "images must be uint8 N x 32 x 32 x 3 with N >= 1, got float32"),
    "gray-images": (_tampered(images=lambda x: x[..., 0]), "images must be uint8 N x 32 x 32 x 3 with N >= 1, got uint8 (20, 32, 32)"),
    "no-images": (_tampered(images=lambda x: x[:0], labels=lambda y: y[:0]), "with N >= 1, got uint8 (0, 32, 32, 3)"),
    "nine-classes": (_tampered(class_names=lambda n: n[:9]), "class_names must be 10 strings"),
    "unknown-normalize": (_tampered(normalize=np.array("minmax")), "normalize must be one of raw | unit | standardize"),
    "zero-scale": (_tampered(scale=np.zeros(3, np.float32)), "scale must be 3 finite floats > 0"),
    "nan-offset": (_tampered(offset=np.full(3, np.nan, np.float32)), "offset must be 3 finite floats"),
    "missing-labels": (lambda path: np.savez(path, images=_arrays(20, 0, "raw")[0]), "missing array 'labels'"),
    "0-bytes": (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    "truncated": (_cut, "cannot load prepared arrays (truncated or not an .npz?)"),
    "not-npz": (lambda path: path.write_text("previous good arrays"), "cannot load prepared arrays"),
}


def write_bad_prepared(project: Path, case: str, split: str = "train") -> None:
    """`data/prepared/<split>.npz` in `project`, broken as BAD_PREPARED[case] says."""
    (project / "data" / "prepared").mkdir(parents=True, exist_ok=True)
    BAD_PREPARED[case][0](project / "data" / "prepared" / f"{split}.npz")
