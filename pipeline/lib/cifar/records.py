"""What the safe unpickler builds instead of objects: inert stand-ins for the globals the archive names,
records of the dtypes and arrays the stream asks for (checked when built), and the checks that turn an
unpickled batch or meta file into new numpy arrays and class names."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from pipeline.lib.cifar.layout import MAX_IMAGES, NUM_CLASSES, ROW_BYTES
from pipeline.lib.cifar.layout import describe as _describe
from pipeline.lib.params import PipelineError

if TYPE_CHECKING:
    from pipeline.lib.cifar.unpickler import SafeUnpickler

INTEGER_DTYPES = frozenset({"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"})


class StandIn:
    """What GLOBAL pushes: a named placeholder. BUILD on it, or calling one that is not callable, is refused."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def call(self, args: tuple, unpickler: SafeUnpickler):
        raise PipelineError(f"{self.name} cannot be called")

    def build(self, state):
        raise PipelineError(f"BUILD on {self.name} is not allowed")


class Encode(StandIn):
    """`_codecs.encode(text, "latin1")`: how Python 3 writes bytes into a protocol-2 pickle."""

    __slots__ = ()

    def call(self, args, unpickler):
        if len(args) != 2 or type(args[0]) is not str or args[1] != "latin1":
            raise PipelineError(f"{self.name} accepts only (str, 'latin1'), got {_describe(args)}")
        unpickler.count_encoded(len(args[0]))
        try:
            return args[0].encode("latin1")
        except UnicodeEncodeError:
            raise PipelineError(f"{self.name}: text is not latin-1") from None


class Dtype(StandIn):
    """`numpy.dtype(spec, align, copy)` -> an unfinished `DtypeRecord`."""

    __slots__ = ()

    def call(self, args, unpickler):
        if len(args) != 3 or _text(args[0]) not in INTEGER_DTYPES or not _flag(args[1], 0) or not _flag(args[2], 1):
            raise PipelineError(f"{self.name} accepts only (integer type code, 0, 1) with codes "
                                f"{', '.join(sorted(INTEGER_DTYPES))}, got {_describe(args)}")
        return DtypeRecord(_text(args[0]))


class Reconstruct(StandIn):
    """numpy's `_reconstruct(ndarray, (0,), b"b")` -> an unfinished `ArrayRecord`."""

    __slots__ = ()

    def call(self, args, unpickler):
        if len(args) != 3 or args[0] is not NDARRAY or args[1] != (0,) or args[2] != b"b":
            raise PipelineError(f"{self.name} accepts only (numpy.ndarray, (0,), b'b'), got {_describe(args)}")
        return ArrayRecord()


class DtypeRecord:
    """A dtype the stream asked for: an integer type code and, once built, its byte order."""

    __slots__ = ("spec", "byteorder")

    def __init__(self, spec: str):
        self.spec, self.byteorder = spec, None

    def __repr__(self) -> str:
        return f"dtype {self.spec}"

    @property
    def itemsize(self) -> int:
        return int(self.spec[1])

    def build(self, state):
        if self.byteorder is not None:
            raise PipelineError("BUILD on a dtype that is already built")
        ok = type(state) is tuple and len(state) == 8 and state[0] == 3 and state[2:] == (None, None, None, -1, -1, 0)
        order = _text(state[1]) if ok else None
        if order not in (("|",) if self.itemsize == 1 else ("<", ">")):
            raise PipelineError(f"dtype {self.spec} state must be (3, byte order, None, None, None, -1, -1, 0), "
                               f"got {_describe(state)}")
        self.byteorder = order

    def numpy(self) -> np.dtype:
        return np.dtype(self.byteorder + self.spec)


class ArrayRecord:
    """An array the stream asked for: shape, dtype record and raw C-order bytes, checked when built."""

    __slots__ = ("shape", "dtype", "raw")

    def __init__(self):
        self.shape = self.dtype = self.raw = None

    def __repr__(self) -> str:
        return "an unbuilt array" if self.raw is None else f"an array of shape {self.shape} and {self.dtype!r}"

    def build(self, state):
        if self.raw is not None:
            raise PipelineError("BUILD on an array that is already built")
        if type(state) is not tuple or len(state) != 5 or state[0] != 1:
            raise PipelineError(f"array state must be (1, shape, dtype, False, bytes), got {_describe(state)}")
        _, shape, dtype, fortran, raw = state
        if type(shape) is not tuple or not 1 <= len(shape) <= 2 or any(type(n) is not int or n < 0 for n in shape):
            raise PipelineError(f"array shape must be 1 or 2 non-negative ints, got {_describe(shape)}")
        if type(dtype) is not DtypeRecord or dtype.byteorder is None:
            raise PipelineError(f"array dtype must be a built numpy.dtype, got {_describe(dtype)}")
        if not _flag(fortran, 0):
            raise PipelineError("array must be in C order (Fortran order is not part of the format)")
        if type(raw) is not bytes:
            raise PipelineError(f"array data must be bytes, got {_describe(raw)}")
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise PipelineError(f"array of shape {shape} and dtype {dtype.spec} needs "
                               f"{math.prod(shape) * dtype.itemsize:,} bytes, got {len(raw):,}")
        self.shape, self.dtype, self.raw = shape, dtype, raw

    def numpy(self) -> np.ndarray:
        """A read-only view of the checked bytes (callers copy what they keep)."""
        return np.frombuffer(self.raw, dtype=self.dtype.numpy()).reshape(self.shape)


NDARRAY = StandIn("numpy.ndarray")  # only ever the first argument of _reconstruct
RECONSTRUCT = Reconstruct("numpy._reconstruct")


def _text(value) -> str | None:
    if type(value) is bytes:
        return value.decode("latin1")
    return value if type(value) is str else None


def _flag(value, expected: int) -> bool:
    return type(value) in (bool, int) and value == expected


def parse_batch(obj, source: str) -> tuple[np.ndarray, np.ndarray]:
    """An unpickled batch -> (uint8 images N x 32 x 32 x 3, uint8 labels N), new arrays, after checking both."""
    if type(obj) is not dict or b"data" not in obj or b"labels" not in obj:
        raise PipelineError(f"{source}: expected a dict with keys b'data' and b'labels'")
    data = obj[b"data"]
    if type(data) is not ArrayRecord or data.raw is None:
        raise PipelineError(f"{source}: data must be a numpy array, got {_describe(data)}")
    if data.dtype.spec != "u1" or len(data.shape) != 2 or data.shape[1] != ROW_BYTES:
        raise PipelineError(
            f"{source}: data must be an N x {ROW_BYTES} uint8 array, got {data.dtype.numpy().name} {data.shape}"
        )
    n = data.shape[0]
    if not 1 <= n <= MAX_IMAGES:
        raise PipelineError(f"{source}: a batch holds 1 to {MAX_IMAGES:,} images, got {n:,}")
    labels = _labels(obj[b"labels"], source)
    if len(labels) != n:
        raise PipelineError(f"{source}: {len(labels)} labels for {n} images")
    # Official rows are 1024 red, 1024 green, then 1024 blue values; Keras wants channels last. One
    # strided copy per channel takes half the time of numpy's copy of the transposed view
    # (reports/unpickler-speed/breakdown.csv), and leaves nothing pointing into the pickle's bytes.
    rows = data.numpy().reshape(n, 3, 1024)
    images = np.empty((n, 32, 32, 3), np.uint8)
    pixels = images.reshape(n, 1024, 3)  # a view of `images`
    for channel in range(3):
        pixels[:, :, channel] = rows[:, channel]
    return images, labels


def _labels(value, source: str) -> np.ndarray:
    """A flat list of ints or a 1-D integer array record, each in 0..9 -> a new uint8 array."""
    if type(value) is list:
        if not all(type(v) is int for v in value):
            raise PipelineError(f"{source}: labels must be a flat list of integers")
        values = value
        low, high = (min(value), max(value)) if value else (0, 0)
    elif type(value) is ArrayRecord and value.raw is not None and len(value.shape) == 1:
        values = value.numpy()
        low, high = (values.min(), values.max()) if len(values) else (0, 0)
    else:
        shape = value.shape if type(value) is ArrayRecord else None
        raise PipelineError(f"{source}: labels must be a flat list of integers or a 1-D integer array, "
                            f"got {_describe(value) if shape is None else f'an array of shape {shape}'}")
    if low < 0 or high >= NUM_CLASSES:
        raise PipelineError(f"{source}: labels must be in 0..{NUM_CLASSES - 1}, found {low}..{high}")
    return np.array(values, dtype=np.uint8)  # a new array either way


def parse_meta(obj, source: str) -> list[str]:
    names = obj.get(b"label_names") if type(obj) is dict else None
    if type(names) is not list or len(names) != NUM_CLASSES or not all(type(n) is bytes for n in names):
        raise PipelineError(f"{source}: label_names must be a list of {NUM_CLASSES} byte strings")
    return [n.decode("utf-8", "replace") for n in names]
