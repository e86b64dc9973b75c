"""Build CIFAR-10 archives in the official python layout for tests: synthetic, small and fast.

`official_members` returns the pickled payloads of a well-formed archive; tests replace or add
members to build hostile variants, and `write_archive` packs them exactly as the official tar.gz is
packed (cifar-10-batches-py/<member>).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def batch(num_images: int, seed: int, label_offset: int = 0) -> dict:
    """A batch dict as the official files hold it: class-balanced labels, images with a class signal."""
    rng = np.random.default_rng(seed)
    labels = [(i + label_offset) % 10 for i in range(num_images)]
    # Each class gets its own mean colour, so small models can learn something in a few steps.
    base = np.array(labels)[:, None] * 20 + 30
    data = np.clip(base + rng.integers(-25, 26, size=(num_images, 3072)), 0, 255).astype(np.uint8)
    return {
        b"batch_label": b"synthetic",
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(num_images)],
    }


def official_members(per_batch: int = 40, test: int = 100) -> dict[str, bytes]:
    members = {f"data_batch_{i}": pickle.dumps(batch(per_batch, seed=i, label_offset=i), protocol=2) for i in range(1, 6)}
    members["test_batch"] = pickle.dumps(batch(test, seed=99), protocol=2)
    members["batches.meta"] = pickle.dumps(
        {b"label_names": [n.encode() for n in CLASS_NAMES], b"num_cases_per_batch": per_batch, b"num_vis": 3072},
        protocol=2,
    )
    return members


def write_archive(path: Path, members: dict[str, bytes], folder: str = "cifar-10-batches-py") -> str:
    """Write members into a .tar.gz under `folder`; return the archive's md5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()
