"""Hand-assembled protocol-2 pickles, opcode by opcode: the official archive's Python 2 layout, and
the hostile streams that only the allowed globals and opcodes can express (views that outlive the
buffer they point into, zero strides over one byte) and that `pickle.dumps` of a Python object never
writes.

`Asm` emits one opcode per call and returns itself, so a stream reads top to bottom as the stack
machine runs it; `array`, `dtype` and `view` emit numpy's own pickling sequences.
"""

from __future__ import annotations

import struct

import numpy as np

RECONSTRUCT = ("numpy.core.multiarray", "_reconstruct")


class Asm:
    """A protocol-2 pickle under construction."""

    def __init__(self):
        self.parts = [b"\x80\x02"]
        self.slots = 0

    def op(self, code: bytes) -> Asm:
        self.parts.append(code)
        return self

    def int(self, value: int) -> Asm:
        if 0 <= value < 256:
            return self.op(b"K" + bytes([value]))
        if 0 <= value < 65536:
            return self.op(b"M" + struct.pack("<H", value))
        if -(2**31) <= value < 2**31:
            return self.op(b"J" + struct.pack("<i", value))
        size = (value.bit_length() + 8) // 8
        return self.op(b"\x8a" + bytes([size]) + value.to_bytes(size, "little", signed=True))

    def bytes(self, value: bytes) -> Asm:
        """A Python 2 str, which the reader (like `pickle.loads(encoding='bytes')`) turns into bytes."""
        if len(value) < 256:
            return self.op(b"U" + bytes([len(value)]) + value)
        return self.op(b"T" + struct.pack("<i", len(value)) + value)

    def text(self, value: str) -> Asm:
        encoded = value.encode("utf-8", "surrogatepass")
        return self.op(b"X" + struct.pack("<I", len(encoded)) + encoded)

    def latin1(self, value: bytes) -> Asm:
        """Bytes as Python 3 writes them at protocol 2: _codecs.encode(text, 'latin1')."""
        return self.glob("_codecs", "encode").text(value.decode("latin1")).text("latin1").tuple(2).reduce()

    def glob(self, module: str, name: str) -> Asm:
        return self.op(b"c" + f"{module}\n{name}\n".encode())

    def tuple(self, size: int) -> Asm:
        """TUPLE1/2/3 of the top values, or EMPTY_TUPLE; larger tuples use `mark()` ... `op(b"t")`."""
        return self.op({0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}[size])

    def mark(self) -> Asm:
        return self.op(b"(")

    def reduce(self) -> Asm:
        return self.op(b"R")

    def build(self) -> Asm:
        return self.op(b"b")

    def put(self) -> int:
        """Memoize the top value; return its slot for `get`."""
        slot = self.slots
        self.slots += 1
        self.op(b"q" + bytes([slot]) if slot < 256 else b"r" + struct.pack("<I", slot))
        return slot

    def get(self, slot: int) -> Asm:
        return self.op(b"h" + bytes([slot]) if slot < 256 else b"j" + struct.pack("<I", slot))

    def stop(self) -> bytes:
        return b"".join(self.parts) + b"."


def dtype(asm: Asm, spec: str = "u1", order: str | None = None, py2: bool = True, memoize: bool = False) -> Asm:
    """numpy.dtype(spec, 0, 1) built with its version-3 state; `memoize` as in `array`."""
    order = order or ("|" if spec[-1] == "1" else "<")
    text = asm.bytes if py2 else asm.text
    asm.glob("numpy", "dtype")
    _put(asm, memoize)
    text(spec.encode() if py2 else spec).int(0).int(1).tuple(3).reduce()
    _put(asm, memoize)
    asm.mark().int(3)
    text(order.encode() if py2 else order)
    return asm.op(b"NNN").int(-1).int(-1).int(0).op(b"t").build()


def array(asm: Asm, shape: tuple, raw: bytes, spec: str = "u1", order: str | None = None, fortran: bool = False,
          module: str = RECONSTRUCT[0], memoize: bool = False) -> Asm:
    """An ndarray as numpy pickles it: _reconstruct(ndarray, (0,), b'b'), then BUILD with its state.
    `memoize` puts each global and call result in the memo, as cPickle does."""
    asm.glob(module, "_reconstruct")
    _put(asm, memoize)
    asm.glob("numpy", "ndarray")
    _put(asm, memoize)
    asm.int(0).tuple(1).bytes(b"b").tuple(3).reduce()
    _put(asm, memoize)
    asm.mark().int(1)
    _shape(asm, shape)
    dtype(asm, spec, order, memoize=memoize)
    asm.op(b"\x88" if fortran else b"\x89").bytes(raw)
    return asm.op(b"t").build()


def _put(asm: Asm, memoize: bool) -> None:
    if memoize:
        asm.put()


def view(asm: Asm, shape: tuple, buffer, offset: int = 0, strides: tuple | None = None) -> Asm:
    """numpy.ndarray(shape, uint8, buffer, offset, strides): a second array over another value's memory.
    `buffer` is a memo slot, or a function that emits the buffer's value in place."""
    asm.glob("numpy", "ndarray").mark()
    _shape(asm, shape)
    dtype(asm)
    asm.get(buffer) if isinstance(buffer, int) else buffer()
    asm.int(offset)
    if strides is not None:
        _shape(asm, strides)
    return asm.op(b"t").reduce()


def _shape(asm: Asm, values: tuple) -> Asm:
    asm.mark()
    for v in values:
        asm.int(v)
    return asm.op(b"t")


def official_batch(labels: list[int], data: np.ndarray, py2: bool = True) -> bytes:
    """A batch in the official archive's layout: Python 2 strings (py2) or Python 3's protocol 2.

    Assembled from how Python 2's cPickle writes protocol 2, not copied from the official file (which
    this project does not have): every dict, list, string, global and call result is memoized (BINPUT),
    as cPickle does for each object it still holds a reference to; ints and argument tuples are not."""
    asm = Asm()

    def key(value: bytes) -> None:
        asm.bytes(value) if py2 else asm.latin1(value)
        asm.put()

    asm.op(b"}")
    asm.put()
    asm.mark()
    key(b"batch_label")
    key(b"training batch 1 of 5")
    key(b"labels")
    asm.op(b"]")
    asm.put()
    asm.mark()
    for label in labels:
        asm.int(label)
    asm.op(b"e")
    key(b"data")
    array(asm, data.shape, data.tobytes(), memoize=True)
    key(b"filenames")
    asm.op(b"]")
    asm.put()
    asm.mark()
    for i in range(len(labels)):
        key(f"img_{i}.png".encode())
    asm.op(b"e")
    return asm.op(b"u").stop()


def use_after_free(images: int = 40) -> bytes:
    """A view over array A's buffer, then BUILD on A (numpy frees the buffer), then SETITEM through the
    view: with numpy's own reconstruction the view writes into freed memory and becomes `data`."""
    asm = Asm().op(b"}").mark()
    asm.bytes(b"scratch").op(b"]").mark()
    array(asm, (images, 3072), bytes(images * 3072))
    a = asm.put()
    view(asm, (images, 3072), a)
    v = asm.put()
    asm.get(a).mark().int(1)
    _shape(asm, (1,))
    dtype(asm)
    asm.op(b"\x89").bytes(b"\x00").op(b"t").build()  # A now owns one byte; its old buffer is freed
    asm.get(v).int(0).int(255).op(b"s")  # view[0] = 255: 3072 bytes written into freed memory
    asm.op(b"e")
    asm.bytes(b"data").get(v)
    asm.bytes(b"labels").op(b"]").mark()
    for i in range(images):
        asm.int(i % 10)
    asm.op(b"e")
    return asm.op(b"u").stop()


def zero_strides(images: int = 100_000) -> bytes:
    """`data` and `labels` with zero strides over one byte: a few hundred bytes that pass a shape and
    dtype check and ask for images x 3072 bytes when made contiguous."""
    asm = Asm().op(b"}").mark()
    asm.bytes(b"byte").bytes(b"\x00")
    one = asm.put()
    asm.bytes(b"data")
    view(asm, (images, 3072), one, 0, (0, 0))
    asm.bytes(b"labels")
    view(asm, (images,), one, 0, (0,))
    return asm.op(b"u").stop()
