"""Read the official CIFAR-10 python archive without trusting it.

`keras.datasets.cifar10` extracts the tar to disk and calls `pickle.load`, which runs whatever code a
hostile file names. Here nothing is extracted and no pickle machinery builds an object:

- **The tar** is one gzip member, inflated against one budget (`MAX_ARCHIVE_BYTES`) that counts every
  decompressed byte, tar headers and skipped members included; its CRC is checked and nothing may
  follow it. Only plain ustar/GNU headers are accepted, as in the official archive and the mirror: an
  extension header (GNU long name or link, pax records, GNU sparse map) or a negative size is refused
  before `tarfile` parses anything after it. Each member's
  path, type and size are checked before it is read; a duplicate or unexpected member is refused.
- **Each batch** is read by `SafeUnpickler`, a small interpreter for the part of pickle protocol 2 that
  the archive uses (the grammar below). Its `find_class` returns inert stand-ins: `numpy.ndarray`,
  numpy's `_reconstruct` and `numpy.dtype` only record what the stream asks for (a shape, a dtype
  string, raw bytes), and `_codecs.encode` only turns latin-1 text into bytes. No numpy object exists
  until `parse_batch` has checked every record, and then the arrays are copied out of the checked bytes.

Grammar (protocol 2, as written by Python 2's cPickle for the official archive and by Python 3's
`pickle.dumps(..., protocol=2)`; any other opcode is refused with its name and offset):

    PROTO 2 (first, once)      MARK  STOP (one value left, nothing after it)
    NONE NEWTRUE NEWFALSE      BININT BININT1 BININT2 LONG1 (at most 8 bytes)
    SHORT_BINSTRING BINSTRING  -> bytes (the archive's Python 2 strings)
    BINUNICODE                 -> str
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3   EMPTY_LIST APPEND APPENDS (lists only)
    EMPTY_DICT SETITEM SETITEMS (dicts only; keys bytes, str or int)
    BINPUT LONG_BINPUT BINGET LONG_BINGET    (memo)
    GLOBAL                     -> a stand-in from `SafeUnpickler.ALLOWED`, nothing else
    REDUCE                     -> only a stand-in's call:
        _codecs.encode(str, "latin1")                  -> bytes
        numpy.dtype(SPEC, align 0, copy 1)             -> a dtype record; SPEC an integer type (u1, i8, ...)
        _reconstruct(numpy.ndarray, (0,), b"b")        -> an array record
    BUILD                      -> only a record's state, once:
        dtype record: (3, byte order, None, None, None, -1, -1, 0)
        array record: (1, shape of 1 or 2 ints, dtype record, False (C order), bytes of exactly
                       prod(shape) * itemsize)

What the stream does is counted against limits that a batch of `MAX_IMAGES` images fits inside many
times over: objects made, items put into containers, memo writes and marks together, the stack depth,
and the bytes `_codecs.encode` makes. An opcode that does not deepen the stack is counted, or follows
one that was (BUILD, once per record a REDUCE made; APPENDS or SETITEMS of nothing, after a MARK), so
a stream runs at most a few times `MAX_ITEMS` opcodes and holds at most `MAX_ITEMS` small objects and
memo entries beside its own strings, whatever its length. Values may nest deeper than Python's
recursion limit; nothing recurses into them. Every refusal is a `PipelineError` naming the archive
member.
"""

from __future__ import annotations

import math
import pickletools
import struct
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.params import PipelineError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
README = "readme.html"  # in the official archive; skipped, but its bytes count against the budget
NUM_CLASSES = 10
ROW_BYTES = 3072
MAX_IMAGES = 10_000  # per batch, as in the official archive
# An official data batch pickles to 31 MB (the Python-3 mirror's to 45 MB); a member larger than this
# is refused before it is read.
MAX_MEMBER_BYTES = 64 << 20
# Every decompressed byte of the archive (headers, skipped members, padding) counts: the six batches at
# their largest plus 16 MiB. The full mirror decompresses to 268.7 MB; a batch in the official Python 2
# layout is 30.9 MB, six of them about 186 MB.
MAX_ARCHIVE_BYTES = 6 * MAX_MEMBER_BYTES + (16 << 20)
# Per pickle: objects made plus items put into containers, memo writes and marks (one count), and the
# stack depth (another). A 10,000-image batch of the mirror counts 100,141, one in the official Python 2
# layout 40,069.
MAX_ITEMS = 32 * MAX_IMAGES
INTEGER_DTYPES = frozenset({"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"})


# ---------------------------------------------------------------- stand-ins and records


class _StandIn:
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


class _Encode(_StandIn):
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


class _Dtype(_StandIn):
    """`numpy.dtype(spec, align, copy)` -> an unfinished `DtypeRecord`."""

    __slots__ = ()

    def call(self, args, unpickler):
        if len(args) != 3 or _text(args[0]) not in INTEGER_DTYPES or not _flag(args[1], 0) or not _flag(args[2], 1):
            raise PipelineError(f"{self.name} accepts only (integer type code, 0, 1) with codes "
                                f"{', '.join(sorted(INTEGER_DTYPES))}, got {_describe(args)}")
        return DtypeRecord(_text(args[0]))


class _Reconstruct(_StandIn):
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


NDARRAY = _StandIn("numpy.ndarray")  # only ever the first argument of _reconstruct
_RECONSTRUCT = _Reconstruct("numpy._reconstruct")


def _text(value) -> str | None:
    if type(value) is bytes:
        return value.decode("latin1")
    return value if type(value) is str else None


def _shown(text: str, quote: bool = False, limit: int = 120) -> str:
    """Text from the input as it may appear in an error line: quoted and escaped when asked or when it
    holds anything unprintable (a line break would split the one error line), cut short when long."""
    shown = repr(text) if quote or not text.isprintable() else text
    return shown if len(shown) <= limit else shown[:limit - 30] + f"... ({len(text):,} characters)"


def _flag(value, expected: int) -> bool:
    return type(value) in (bool, int) and value == expected


def _describe(value, depth: int = 0) -> str:
    """A short description for an error line, never the repr of a large value; tuples are opened two
    levels deep at most, so a deeply nested one cannot exhaust the recursion limit."""
    if type(value) in (dict, list, tuple) and value:
        inner = ", ".join(_describe(v, depth + 1) for v in value[:3]) if type(value) is tuple and depth < 2 else None
        if inner:
            return f"({inner}{',' if len(value) == 1 else ', ...' if len(value) > 3 else ''})"
        return f"a {type(value).__name__} of {len(value):,} item{'s' if len(value) > 1 else ''}"
    if isinstance(value, (bytes, str)) and len(value) > 20:
        return f"{type(value).__name__} of length {len(value):,}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- the interpreter

_U2 = struct.Struct("<H").unpack_from
_U4 = struct.Struct("<I").unpack_from
_I4 = struct.Struct("<i").unpack_from
_NAMES = {op.code.encode("latin1")[0]: op.name for op in pickletools.opcodes}


class SafeUnpickler:
    """Interpret a protocol-2 pickle by the grammar in the module docstring; see `load`."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): NDARRAY,
        ("numpy", "dtype"): _Dtype("numpy.dtype"),
        ("_codecs", "encode"): _Encode("_codecs.encode"),
    }

    def __init__(self, payload: bytes):
        self.payload = payload
        self.encoded = 0

    def find_class(self, module: str, name: str) -> _StandIn:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise PipelineError(f"global {_shown(f'{module}.{name}')} is not allowed") from None

    def count_encoded(self, size: int) -> None:
        # A well-formed pickle encodes each string once, so the encoded total stays below its length;
        # re-encoding one memoized string many times would not.
        self.encoded += size
        if self.encoded > len(self.payload):
            raise PipelineError(f"_codecs.encode asked for more than the pickle's {len(self.payload):,} bytes in all")

    def load(self):
        """Run the stream; return the one value it leaves (dicts, lists, tuples, scalars and records)."""
        data, end = self.payload, len(self.payload)
        if data[:2] != b"\x80\x02":
            raise PipelineError("not a protocol-2 pickle")
        stack: list = []
        marks: list[int] = []
        memo: dict[int, object] = {}
        created = 0  # objects made, items put into containers, memo writes and marks
        pos = at = 2
        try:
            while True:
                op = data[pos]
                at = pos
                pos += 1
                if op == 0x71 or op == 0x68 or op == 0x72 or op == 0x6A:  # BINPUT, BINGET, LONG_BINPUT, LONG_BINGET
                    if op == 0x71 or op == 0x68:
                        key = data[pos]
                        pos += 1
                    else:
                        key = _U4(data, pos)[0]
                        pos += 4
                    if op == 0x71 or op == 0x72:
                        memo[key] = stack[-1]
                        created += 1
                    else:
                        stack.append(memo[key])
                elif op == 0x4B:  # BININT1
                    stack.append(data[pos])
                    pos += 1
                elif op == 0x58 or op == 0x55 or op == 0x54:  # BINUNICODE, SHORT_BINSTRING, BINSTRING
                    if op == 0x55:
                        size = data[pos]
                        pos += 1
                    else:
                        size = (_U4 if op == 0x58 else _I4)(data, pos)[0]
                        pos += 4
                    if size < 0 or pos + size > end:
                        raise PipelineError(f"a string of {size:,} bytes at byte {at} runs past the end")
                    chunk = memoryview(data)[pos:pos + size]
                    stack.append(str(chunk, "utf-8", "surrogatepass") if op == 0x58 else bytes(chunk))
                    pos += size
                    created += 1
                elif op == 0x86:  # TUPLE2
                    stack[-2:] = [(stack[-2], stack[-1])]
                    created += 3
                elif op == 0x52:  # REDUCE
                    args = stack.pop()
                    func = stack[-1]
                    if not isinstance(func, _StandIn) or type(args) is not tuple:
                        raise PipelineError(f"REDUCE may only call an allowed global with a tuple, got "
                                           f"{_describe(func)}{_describe(args)}")
                    stack[-1] = func.call(args, self)
                    created += 1
                elif op == 0x28:  # MARK
                    marks.append(len(stack))
                    created += 1
                elif op == 0x65 or op == 0x61:  # APPENDS, APPEND
                    items = self._pop_mark(stack, marks) if op == 0x65 else [stack.pop()]
                    if type(stack[-1]) is not list:
                        raise PipelineError(f"APPEND on {_describe(stack[-1])}: only lists take items")
                    stack[-1].extend(items)
                    created += len(items)
                elif op == 0x75 or op == 0x73:  # SETITEMS, SETITEM
                    items = self._pop_mark(stack, marks) if op == 0x75 else stack[-2:]
                    if op == 0x73:
                        del stack[-2:]
                    target = stack[-1]
                    if type(target) is not dict or len(items) % 2:
                        raise PipelineError(f"SETITEM on {_describe(target)}: only dicts take items")
                    for i in range(0, len(items), 2):
                        if type(items[i]) not in (bytes, str, int):
                            raise PipelineError(f"dict key {_describe(items[i])}: keys must be bytes, str or int")
                        target[items[i]] = items[i + 1]
                    created += len(items)
                elif op == 0x4D:  # BININT2
                    stack.append(_U2(data, pos)[0])
                    pos += 2
                elif op == 0x4A:  # BININT
                    stack.append(_I4(data, pos)[0])
                    pos += 4
                elif op == 0x8A:  # LONG1
                    size = data[pos]
                    if size > 8 or pos + 1 + size > end:
                        raise PipelineError(f"LONG1 of {size} bytes at byte {at}: at most 8 are allowed")
                    stack.append(int.from_bytes(data[pos + 1:pos + 1 + size], "little", signed=True))
                    pos += 1 + size
                    created += 1
                elif op == 0x85 or op == 0x87:  # TUPLE1, TUPLE3
                    n = 1 if op == 0x85 else 3
                    if len(stack) < n:
                        raise IndexError
                    stack[-n:] = [tuple(stack[-n:])]
                    created += 1 + n
                elif op == 0x74:  # TUPLE
                    items = self._pop_mark(stack, marks)
                    stack.append(tuple(items))
                    created += 1 + len(items)
                elif op == 0x29:  # EMPTY_TUPLE
                    stack.append(())
                elif op == 0x62:  # BUILD
                    state = stack.pop()
                    target = stack[-1]
                    if type(target) not in (ArrayRecord, DtypeRecord) and not isinstance(target, _StandIn):
                        raise PipelineError(f"BUILD on {_describe(target)}: only numpy records take a state")
                    target.build(state)
                elif op == 0x7D or op == 0x5D:  # EMPTY_DICT, EMPTY_LIST
                    stack.append({} if op == 0x7D else [])
                    created += 1
                elif op == 0x4E:  # NONE
                    stack.append(None)
                elif op == 0x88 or op == 0x89:  # NEWTRUE, NEWFALSE
                    stack.append(op == 0x88)
                elif op == 0x63:  # GLOBAL
                    stop = data.find(b"\n", pos, pos + 64)
                    stop2 = data.find(b"\n", stop + 1, stop + 65) if stop >= 0 else -1
                    if stop2 < 0:
                        raise PipelineError(f"GLOBAL at byte {at} has no module and name lines")
                    module = data[pos:stop].decode("ascii", "replace")
                    name = data[stop + 1:stop2].decode("ascii", "replace")
                    stack.append(self.find_class(module, name))
                    pos = stop2 + 1
                elif op == 0x2E:  # STOP
                    if len(stack) != 1 or marks:
                        raise PipelineError(f"STOP at byte {at} leaves {len(stack)} values and {len(marks)} marks, not one value")
                    if pos != end:
                        raise PipelineError(f"{end - pos:,} bytes after STOP")
                    return stack[0]
                elif op == 0x80:  # PROTO
                    raise PipelineError(f"PROTO at byte {at}: the protocol is set once, at the start")
                else:
                    raise PipelineError(f"opcode {_NAMES.get(op, hex(op))} at byte {at} is not in the accepted grammar")
                if len(stack) > MAX_ITEMS or created > MAX_ITEMS:
                    raise PipelineError(f"more than {MAX_ITEMS:,} objects, memo writes and marks, or stack entries "
                                        f"(at byte {at}); a batch of {MAX_IMAGES:,} images needs far fewer")
        except PipelineError:
            raise
        except KeyError as exc:
            raise PipelineError(f"memo entry {exc} is read before it is written") from None
        except IndexError:
            if pos >= end:
                raise PipelineError("the pickle ends before STOP") from None
            raise PipelineError(f"{_NAMES.get(data[at], '?')} at byte {at} needs more values than the stack holds") from None
        except struct.error:
            raise PipelineError("the pickle ends inside an opcode's argument") from None
        except UnicodeDecodeError:
            raise PipelineError(f"BINUNICODE at byte {at} is not UTF-8") from None

    @staticmethod
    def _pop_mark(stack: list, marks: list) -> list:
        if not marks:
            raise PipelineError("an opcode needs a MARK that is not there")
        start = marks.pop()
        if start > len(stack):
            raise PipelineError("an opcode took values from below its MARK")
        items = stack[start:]
        del stack[start:]
        return items


def unpickle(payload: bytes, source: str):
    """Interpret one archive member with `SafeUnpickler`; refusals name the member."""
    try:
        return SafeUnpickler(payload).load()
    except PipelineError as exc:
        raise PipelineError(f"{source}: refused to unpickle: {exc}") from None


# ---------------------------------------------------------------- batches


def parse_batch(obj, source: str) -> tuple[np.ndarray, np.ndarray]:
    """An unpickled batch -> (uint8 images N x 32 x 32 x 3, uint8 labels N), new arrays, after checking both."""
    if type(obj) is not dict or b"data" not in obj or b"labels" not in obj:
        raise PipelineError(f"{source}: expected a dict with keys b'data' and b'labels'")
    data = obj[b"data"]
    if type(data) is not ArrayRecord or data.raw is None:
        raise PipelineError(f"{source}: data must be a numpy array, got {_describe(data)}")
    if data.dtype.spec != "u1" or len(data.shape) != 2 or data.shape[1] != ROW_BYTES:
        raise PipelineError(f"{source}: data must be an N x {ROW_BYTES} uint8 array, got {data.dtype.numpy().name} {data.shape}")
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


# ---------------------------------------------------------------- the archive


class _Inflated:
    """The archive's one gzip member, inflated forward only, as the file `tarfile` reads.

    Every decompressed byte counts against `MAX_ARCHIVE_BYTES`, read or skipped (tarfile skips a member
    with a forward seek), and zlib makes at most `CHUNK` bytes at a time, so no compressed block expands
    unchecked. zlib checks the gzip header and, once `finish` has inflated to the end, the trailer's
    CRC-32 and length. Anything after the member (a second member, padding) is refused: Python's gzip
    module would walk through it a byte or a member at a time, a cost that no decompressed-byte budget
    sees.
    """

    CHUNK = 1 << 20

    def __init__(self, file, archive: Path):
        self.file, self.archive = file, archive
        self.inflate = zlib.decompressobj(wbits=31)  # 31: gzip framing
        self.pending, self.at = b"", 0  # the last inflated chunk, and how far into it has been read
        self.pos = 0  # bytes read or skipped
        self.spent = 0  # bytes inflated

    def _more(self) -> bytes:
        """The next inflated bytes; b"" once the member has ended."""
        while not self.inflate.eof:
            data = self.inflate.unconsumed_tail or self.file.read(self.CHUNK)
            if not data:
                raise EOFError("the gzip stream ends before its trailer")
            out = self.inflate.decompress(data, self.CHUNK)
            if out:
                self._spend(len(out))
                return out
        return b""

    def _spend(self, size: int) -> None:
        self.spent += size
        if self.spent > MAX_ARCHIVE_BYTES:
            self._over_budget()

    def _over_budget(self):
        raise PipelineError(f"{self.archive}: decompresses to more than {MAX_ARCHIVE_BYTES:,} bytes; "
                            "the CIFAR-10 archive needs far less")

    def _advance(self, size: int, keep: bool) -> list[bytes]:
        """Move up to `size` bytes forward (fewer only at the end of the member); return them as parts
        when `keep`, else nothing: a skipped member is never held."""
        if self.pos + size > MAX_ARCHIVE_BYTES:  # a header that asks for too much is refused unread
            self._over_budget()
        parts, need = [], size
        while need:
            if self.at == len(self.pending):
                self.pending, self.at = self._more(), 0
                if not self.pending:
                    break
            step = min(need, len(self.pending) - self.at)
            if keep:
                parts.append(self.pending[self.at:self.at + step])
            self.at += step
            need -= step
        self.pos += size - need
        return parts

    def read(self, size: int = -1) -> bytes:
        return b"".join(self._advance(MAX_ARCHIVE_BYTES - self.pos if size is None or size < 0 else size, keep=True))

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.pos + offset if whence == 1 else -1
        if target < self.pos:
            raise OSError("the archive is read forward only")
        self._advance(target - self.pos, keep=False)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def finish(self) -> None:
        """Inflate what is left after the tar's end (counted) and check the trailer; refuse trailing data."""
        while self._more():
            pass
        if self.inflate.unused_data or self.file.read(1):
            raise PipelineError(f"{self.archive}: data after the gzip stream (a second member or padding); "
                                "the archive is one gzip member")


class _HeaderRefused(Exception):
    pass


class _Header(tarfile.TarInfo):
    """A member's header as `tarfile` parses it, but only a plain one. `tarfile` reads an extension
    header's body whole into memory and parses it (pax records in quadratic time on Python < 3.11.10,
    CVE-2024-6232; GNU sparse maps of any length), and handles a chain of them by recursion. The
    official archive and the mirror have none, so each is refused here, at its first header, before
    any of that; so is a negative size (base-256; for an extension header tarfile would read its body
    as the rest of the file).
    `_proc_member` is where `tarfile` dispatches on the header type."""

    EXTENSIONS = {tarfile.GNUTYPE_LONGNAME: "GNU long name", tarfile.GNUTYPE_LONGLINK: "GNU long link",
                  tarfile.XHDTYPE: "pax", tarfile.XGLTYPE: "pax global", tarfile.SOLARIS_XHDTYPE: "Solaris pax",
                  tarfile.GNUTYPE_SPARSE: "GNU sparse"}

    def _proc_member(self, tar):
        if self.size < 0:
            raise _HeaderRefused(f"a tar header gives member {_shown(self.name, quote=True)} a negative size")
        if self.type in self.EXTENSIONS:
            raise _HeaderRefused(f"a {self.EXTENSIONS[self.type]} header (tar type {self.type.decode('latin1')!r}); "
                                 "the CIFAR-10 archive is plain ustar/GNU tar and has none")
        return super()._proc_member(tar)


def _checked_member(member: tarfile.TarInfo, archive: Path, wanted: tuple[str, ...], seen: set) -> str | None:
    """Return the member's file name inside FOLDER, None for entries to skip, or refuse it."""
    where = f"{archive}: member {_shown(member.name, quote=True)}"
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise PipelineError(f"{where} has an unsafe path (absolute or with '..')")
    if member.issym() or member.islnk():
        raise PipelineError(f"{where} is a link; the archive must hold plain files only")
    if not path.parts or path.parts[0] != FOLDER:
        raise PipelineError(f"{where} is outside the expected folder {FOLDER}/")
    if path.parts in seen:
        raise PipelineError(f"{where} appears twice; the archive must hold each member once")
    seen.add(path.parts)
    if path.parts == (FOLDER,) and member.isdir():
        return None
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise PipelineError(f"{where} is not a regular file")
    if len(path.parts) != 2 or path.name not in wanted + (README,):
        raise PipelineError(f"{where} is not part of the CIFAR-10 archive "
                            f"(expected {', '.join(wanted + (README,))} in {FOLDER}/)")
    if path.name == README:
        return None
    if member.size > MAX_MEMBER_BYTES:
        raise PipelineError(f"{where} is {member.size:,} bytes, more than the {MAX_MEMBER_BYTES:,} any real batch needs")
    return path.name


def read_members(archive: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """Read the `wanted` files of FOLDER from a .tar.gz, checking every member before reading it."""
    found: dict[str, bytes] = {}
    seen: set = set()
    try:
        with open(archive, "rb") as file:
            stream = _Inflated(file, archive)
            with tarfile.open(fileobj=stream, mode="r:", tarinfo=_Header) as tar:
                for member in tar:
                    name = _checked_member(member, archive, wanted, seen)
                    if name is not None:
                        found[name] = tar.extractfile(member).read()
            stream.finish()
    except _HeaderRefused as exc:
        raise PipelineError(f"{archive}: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        # ValueError: raised by tarfile's own parsing (of numbers, for one).
        raise PipelineError(f"{archive}: not a readable .tar.gz archive (truncated or corrupt?): "
                            f"{_shown(str(exc), limit=300)}") from None
    missing = [name for name in wanted if name not in found]
    if missing:
        raise PipelineError(f"{archive}: missing member {FOLDER}/{missing[0]}")
    return found


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
