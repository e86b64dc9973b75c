"""Synthetic CIFAR-10 batches, pickles and tar archives for tests, in the official python layout:
small, fast, and hostile where a test needs it.

`official_members` returns the pickled payloads of a well-formed archive; tests replace or add
members (`pickled` payloads, `Calls` for code that must never run, hand-made `member` headers) to
build hostile variants, and `tar_bytes` / `write_archive` pack them exactly as the official tar.gz is
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
FOLDER = "cifar-10-batches-py"


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


def pickled(obj) -> bytes:
    """`obj` pickled as the official files are (protocol 2)."""
    return pickle.dumps(obj, protocol=2)


class Calls:
    """Pickles as a call of `func(arg)`, made by whoever unpickles it: code a safe reader must never run."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def official_members(per_batch: int = 40, test: int = 100) -> dict[str, bytes]:
    members = {f"data_batch_{i}": pickled(batch(per_batch, seed=i, label_offset=i)) for i in range(1, 6)}
    members["test_batch"] = pickled(batch(test, seed=99))
    members["batches.meta"] = pickled(
        {b"label_names": [n.encode() for n in CLASS_NAMES], b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return members


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    """A hand-made tar header (any path, a link, a size) for `tar_bytes`' `extra`."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def tar_bytes(members: dict[str, bytes], *extra: tarfile.TarInfo, folder: str = FOLDER) -> bytes:
    """A .tar.gz in the ustar format, as the mirror tool and the official archive are: the `extra`
    headers first (a file's payload is `size` bytes of b"x"), then `members` under `folder`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.USTAR_FORMAT) as tar:
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def write_archive(path: Path, members: dict[str, bytes], *extra: tarfile.TarInfo, folder: str = FOLDER) -> str:
    """Write `tar_bytes(members, *extra, folder=folder)` to `path`; return the archive's md5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tar_bytes(members, *extra, folder=folder))
    return hashlib.md5(path.read_bytes()).hexdigest()
