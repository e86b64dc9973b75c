"""The prepared-data format, written and read here only: one `.npz` per split.

Each file holds uint8 `images` (N x 32 x 32 x 3), uint8 `labels`, the `class_names`, and the
per-channel `offset` and `scale` of the chosen normalization (`normalize`), applied at load:
float = (uint8 - offset) * scale. It's faster to store uint8 and scale once at load than to store
float32: the files are 4x smaller in the DVC cache (180 MB instead of 740 MB for all of CIFAR-10) and
load in well under a second. `allow_pickle=False` keeps loading free of code.

Every reader goes through `_read`, which checks the file against this format before any array is used:
a 0-byte, truncated or unreadable file, a missing array, images that are not uint8 N x 32 x 32 x 3,
labels that are not N integers in 0..9, class names that are not 10 strings, an unknown normalization
or an offset and scale that are not 3 finite floats (scale > 0) each stop the stage with one line that
names the file. Bad data never trains.
"""

from __future__ import annotations

import dataclasses
import zipfile
import zlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.lib.atomic import atomic_output
from pipeline.lib.params import NORMALIZE_MODES, PipelineError

KEYS = ("images", "labels", "class_names", "normalize", "offset", "scale")
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


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
    """The arrays `keys` of a prepared split, each checked against the format (`_problem`)."""
    try:
        if path.stat().st_size == 0:
            raise PipelineError(f"{path}: is empty (0 bytes); rerun the preprocess stage")
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise PipelineError(f"{path}: missing array {missing[0]!r}; rerun the preprocess stage")
            arrays = {k: npz[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        detail = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PipelineError(f"{path}: cannot load prepared arrays (truncated or not an .npz?): {detail}") from None
    problem = _problem(arrays)
    if problem:
        raise PipelineError(f"{path}: {problem}; rerun the preprocess stage")
    return arrays


def _problem(arrays: dict) -> str | None:
    """What is wrong with the prepared arrays present in `arrays`, or None."""
    images, labels = arrays.get("images"), arrays.get("labels")
    if images is not None and (images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE
                               or len(images) == 0):
        return (f"images must be uint8 N x {' x '.join(map(str, IMAGE_SHAPE))} with N >= 1, "
                f"got {images.dtype} {images.shape}")
    if labels is not None:
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            return f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}"
        if images is not None and len(labels) != len(images):
            return f"{len(labels)} labels for {len(images)} images"
        if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            return f"labels must be in 0..{NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}"
    names = arrays.get("class_names")
    if names is not None and (names.dtype.kind != "U" or names.shape != (NUM_CLASSES,)):
        return f"class_names must be {NUM_CLASSES} strings, got {names.dtype} {names.shape}"
    normalize = arrays.get("normalize")
    if normalize is not None and (normalize.shape != () or str(normalize) not in NORMALIZE_MODES):
        return f"normalize must be one of {' | '.join(NORMALIZE_MODES)}, got {normalize!r}"
    for key in ("offset", "scale"):
        value = arrays.get(key)
        if value is not None and (value.dtype.kind != "f" or value.shape != (3,) or not np.all(np.isfinite(value))
                                  or (key == "scale" and not np.all(value > 0))):
            allowed = "3 finite floats" + (" > 0" if key == "scale" else "")
            return f"{key} must be {allowed} (one per channel), got {value.dtype} {value.shape}"
    return None


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
    """How many images a prepared split holds, reading (and checking) its labels only."""
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
