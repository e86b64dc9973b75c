"""Read the official CIFAR-10 python archive without trusting it.

`keras.datasets.cifar10` extracts the tar to disk and calls `pickle.load`, which runs whatever code a
hostile file names. Here nothing is extracted: members are read into memory after their path, type
and size are checked, and each batch is unpickled by `SafeUnpickler`, which resolves only the globals
the official format needs. Every refusal is a `PipelineError` naming the archive member.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.params import PipelineError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
NUM_CLASSES = 10
ROW_BYTES = 3072
# An official data batch pickles to 31 MB; anything far larger is refused before it is read.
MAX_MEMBER_BYTES = 64 << 20


def _latin1_encode(text, encoding="latin1"):
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"). Other codecs
    # (zlib, base64, ...) are not part of the format.
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed")
    return codecs.encode(text, "latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, strings, numbers and plain numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.empty(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.empty(0))[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def unpickle(payload: bytes, source: str):
    """Unpickle one archive member with `SafeUnpickler`; Python 2 strings come back as bytes."""
    try:
        return SafeUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except PipelineError:
        raise
    except Exception as exc:  # any malformed pickle: the error type depends on where it breaks
        raise PipelineError(f"{source}: refused to unpickle: {type(exc).__name__}: {exc}") from None


def _checked_member(member: tarfile.TarInfo, archive: Path) -> str | None:
    """Return the member's file name inside FOLDER, None for entries to skip, or refuse it."""
    where = f"{archive}: member {member.name!r}"
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise PipelineError(f"{where} has an unsafe path (absolute or with '..')")
    if member.issym() or member.islnk():
        raise PipelineError(f"{where} is a link; the archive must hold plain files only")
    if not path.parts or path.parts[0] != FOLDER:
        raise PipelineError(f"{where} is outside the expected folder {FOLDER}/")
    if member.isdir():
        return None
    if not member.isfile():
        raise PipelineError(f"{where} is not a regular file")
    if len(path.parts) != 2:
        return None
    return path.name


def read_members(archive: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """Read the `wanted` files of FOLDER from a .tar.gz, checking every member before reading it."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = _checked_member(member, archive)
                if name not in wanted:
                    continue  # e.g. the official readme.html
                if member.size > MAX_MEMBER_BYTES:
                    raise PipelineError(
                        f"{archive}: member {member.name!r} is {member.size:,} bytes, "
                        f"more than the {MAX_MEMBER_BYTES:,} any real batch needs"
                    )
                found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise PipelineError(f"{archive}: not a readable .tar.gz archive (truncated or corrupt?): {exc}") from None
    missing = [name for name in wanted if name not in found]
    if missing:
        raise PipelineError(f"{archive}: missing member {FOLDER}/{missing[0]}")
    return found


def parse_batch(obj, source: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch dict -> (uint8 images N x 32 x 32 x 3, uint8 labels N), after checking both."""
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise PipelineError(f"{source}: expected a dict with keys b'data' and b'labels'")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_BYTES:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise PipelineError(f"{source}: data must be an N x {ROW_BYTES} uint8 array, got {dtype} {shape}")
    try:
        labels = np.asarray(obj[b"labels"])
    except Exception:
        raise PipelineError(f"{source}: labels are not a list of integers") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise PipelineError(f"{source}: labels must be a flat list of integers, got {labels.dtype} {labels.shape}")
    if len(labels) != len(data):
        raise PipelineError(f"{source}: {len(labels)} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise PipelineError(f"{source}: labels must be in 0..{NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    # Official rows are 1024 red, 1024 green, then 1024 blue values; Keras wants channels last.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def parse_meta(obj, source: str) -> list[str]:
    names = obj.get(b"label_names") if isinstance(obj, dict) else None
    if not isinstance(names, list) or len(names) != NUM_CLASSES or not all(isinstance(n, bytes) for n in names):
        raise PipelineError(f"{source}: label_names must be a list of {NUM_CLASSES} byte strings")
    return [n.decode("utf-8", "replace") for n in names]


def load_archive(archive: Path) -> dict:
    """Return {'train': (images, labels), 'test': (images, labels), 'class_names': [...]}."""
    archive = Path(archive)
    members = read_members(archive, TRAIN_BATCHES + (TEST_BATCH, META))

    def batch(name):
        source = f"{archive}: {FOLDER}/{name}"
        return parse_batch(unpickle(members.pop(name), source), source)

    parts = [batch(name) for name in TRAIN_BATCHES]
    train = (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))
    test = batch(TEST_BATCH)
    meta_source = f"{archive}: {FOLDER}/{META}"
    class_names = parse_meta(unpickle(members.pop(META), meta_source), meta_source)
    return {"train": train, "test": test, "class_names": class_names}
