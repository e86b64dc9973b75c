"""`SafeUnpickler`: an interpreter for the part of pickle protocol 2 that the archive uses (the grammar is
in the package docstring). Each accepted opcode is one small function in `OPCODES`, a table keyed by
`pickle`'s named opcode constants; any other opcode is refused with its name and offset. What the stream
does is counted against `MAX_ITEMS`, so a hostile stream cannot make it hold or run much more than a
real batch does."""

from __future__ import annotations

import pickle
import pickletools
import struct

from pipeline.lib.cifar.layout import MAX_IMAGES
from pipeline.lib.cifar.layout import describe as _describe
from pipeline.lib.cifar.layout import shown as _shown
from pipeline.lib.cifar.records import NDARRAY, RECONSTRUCT, ArrayRecord, Dtype, DtypeRecord, Encode, StandIn
from pipeline.lib.params import PipelineError

# Per pickle: objects made plus items put into containers, memo writes and marks (one count), and the
# stack depth (another). A 10,000-image batch of the mirror counts 100,141, one in the official Python 2
# layout 40,069.
MAX_ITEMS = 32 * MAX_IMAGES

_NAMES = {op.code.encode("latin1")[0]: op.name for op in pickletools.opcodes}
_U2 = struct.Struct("<H").unpack_from
_U4 = struct.Struct("<I").unpack_from
_I4 = struct.Struct("<i").unpack_from


class SafeUnpickler:
    """Interpret a protocol-2 pickle by the grammar in the package docstring; see `load`."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,
        ("numpy", "ndarray"): NDARRAY,
        ("numpy", "dtype"): Dtype("numpy.dtype"),
        ("_codecs", "encode"): Encode("_codecs.encode"),
    }

    def __init__(self, payload: bytes):
        self.payload = payload
        self.encoded = 0

    def find_class(self, module: str, name: str) -> StandIn:
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
        if self.payload[:2] != b"\x80\x02":
            raise PipelineError("not a protocol-2 pickle")
        run = _Run(self)
        data, steps = run.data, _STEPS
        try:
            while True:
                run.at = run.pos
                op = data[run.pos]
                run.pos += 1
                step = steps[op]
                if step is None:
                    raise PipelineError(
                        f"opcode {_NAMES.get(op, hex(op))} at byte {run.at} is not in the accepted grammar"
                    )
                if step(run):
                    return run.stack[0]
                if len(run.stack) > MAX_ITEMS or run.created > MAX_ITEMS:
                    raise PipelineError(
                        f"more than {MAX_ITEMS:,} objects, memo writes and marks, or stack entries "
                        f"(at byte {run.at}); a batch of {MAX_IMAGES:,} images needs far fewer"
                    )
        except PipelineError:
            raise
        except KeyError as exc:
            raise PipelineError(f"memo entry {exc} is read before it is written") from None
        except IndexError:
            if run.pos >= run.end:
                raise PipelineError("the pickle ends before STOP") from None
            raise PipelineError(
                f"{_NAMES.get(data[run.at], '?')} at byte {run.at} needs more values than the stack holds"
            ) from None
        except struct.error:
            raise PipelineError("the pickle ends inside an opcode's argument") from None
        except UnicodeDecodeError:
            raise PipelineError(f"BINUNICODE at byte {run.at} is not UTF-8") from None


class _Run:
    """One `load`'s state: the bytes, where the next opcode is (`pos`) and where this one began (`at`), the
    stack, the marks, the memo, and the count of objects made, items, memo writes and marks."""

    __slots__ = ("unpickler", "data", "end", "pos", "at", "stack", "marks", "memo", "created")

    def __init__(self, unpickler: SafeUnpickler):
        self.unpickler = unpickler
        self.data, self.end = unpickler.payload, len(unpickler.payload)
        self.pos = self.at = 2
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.created = 0

    def argument(self, size: int) -> int:
        """The opcode's unsigned 1-byte or 4-byte argument."""
        value = self.data[self.pos] if size == 1 else _U4(self.data, self.pos)[0]
        self.pos += size
        return value

    def pop_mark(self) -> list:
        """The values above the last MARK, taken off the stack."""
        if not self.marks:
            raise PipelineError("an opcode needs a MARK that is not there")
        start = self.marks.pop()
        if start > len(self.stack):
            raise PipelineError("an opcode took values from below its MARK")
        items = self.stack[start:]
        del self.stack[start:]
        return items


# Each opcode's step: a plain function of the run (no closure made at import, so that mutation testing
# reaches every one), which reads its argument, changes the run's state, and returns True only for STOP.


# The steps of the opcodes a batch holds thousands of (BININT1, BINPUT, BINGET) read their one-byte
# argument inline: a call less per opcode is a tenth of a 10,000-label batch's reading time.
def _binput(run: _Run) -> None:
    key = run.data[run.pos]
    run.pos += 1
    run.memo[key] = run.stack[-1]
    run.created += 1


def _long_binput(run: _Run) -> None:
    key = run.argument(4)
    run.memo[key] = run.stack[-1]
    run.created += 1


def _binget(run: _Run) -> None:
    key = run.data[run.pos]
    run.pos += 1
    run.stack.append(run.memo[key])


def _long_binget(run: _Run) -> None:
    run.stack.append(run.memo[run.argument(4)])


def _binint1(run: _Run) -> None:
    run.stack.append(run.data[run.pos])
    run.pos += 1


def _binint2(run: _Run) -> None:
    run.stack.append(_U2(run.data, run.pos)[0])
    run.pos += 2


def _binint(run: _Run) -> None:
    run.stack.append(_I4(run.data, run.pos)[0])
    run.pos += 4


def _long1(run: _Run) -> None:
    size = run.data[run.pos]
    if size > 8 or run.pos + 1 + size > run.end:
        raise PipelineError(f"LONG1 of {size} bytes at byte {run.at}: at most 8 are allowed")
    run.stack.append(int.from_bytes(run.data[run.pos + 1:run.pos + 1 + size], "little", signed=True))
    run.pos += 1 + size
    run.created += 1


def _string(run: _Run, size: int, text: bool) -> None:
    """A string of `size` bytes from here: str (BINUNICODE) or bytes (the archive's Python 2 strings)."""
    if size < 0 or run.pos + size > run.end:
        raise PipelineError(f"a string of {size:,} bytes at byte {run.at} runs past the end")
    chunk = memoryview(run.data)[run.pos:run.pos + size]
    run.stack.append(str(chunk, "utf-8", "surrogatepass") if text else bytes(chunk))
    run.pos += size
    run.created += 1


def _short_binstring(run: _Run) -> None:
    _string(run, run.argument(1), text=False)


def _binstring(run: _Run) -> None:
    size = _I4(run.data, run.pos)[0]
    run.pos += 4
    _string(run, size, text=False)


def _binunicode(run: _Run) -> None:
    _string(run, run.argument(4), text=True)


def _tuple_of(run: _Run, n: int) -> None:
    """TUPLE1, TUPLE2, TUPLE3: the top n values become one tuple."""
    if len(run.stack) < n:
        raise IndexError
    run.stack[-n:] = [tuple(run.stack[-n:])]
    run.created += 1 + n


def _tuple1(run: _Run) -> None:
    _tuple_of(run, 1)


def _tuple2(run: _Run) -> None:
    _tuple_of(run, 2)


def _tuple3(run: _Run) -> None:
    _tuple_of(run, 3)


def _tuple(run: _Run) -> None:
    items = run.pop_mark()
    run.stack.append(tuple(items))
    run.created += 1 + len(items)


def _empty_tuple(run: _Run) -> None:
    run.stack.append(())


def _none(run: _Run) -> None:
    run.stack.append(None)


def _newtrue(run: _Run) -> None:
    run.stack.append(True)


def _newfalse(run: _Run) -> None:
    run.stack.append(False)


def _empty_list(run: _Run) -> None:
    run.stack.append([])
    run.created += 1


def _empty_dict(run: _Run) -> None:
    run.stack.append({})
    run.created += 1


def _mark(run: _Run) -> None:
    run.marks.append(len(run.stack))
    run.created += 1


def _extend(run: _Run, items: list) -> None:
    if type(run.stack[-1]) is not list:
        raise PipelineError(f"APPEND on {_describe(run.stack[-1])}: only lists take items")
    run.stack[-1].extend(items)
    run.created += len(items)


def _append(run: _Run) -> None:
    _extend(run, [run.stack.pop()])


def _appends(run: _Run) -> None:
    _extend(run, run.pop_mark())


def _set(run: _Run, items: list) -> None:
    target = run.stack[-1]
    if type(target) is not dict or len(items) % 2:
        raise PipelineError(f"SETITEM on {_describe(target)}: only dicts take items")
    for i in range(0, len(items), 2):
        if type(items[i]) not in (bytes, str, int):
            raise PipelineError(f"dict key {_describe(items[i])}: keys must be bytes, str or int")
        target[items[i]] = items[i + 1]
    run.created += len(items)


def _setitem(run: _Run) -> None:
    items = run.stack[-2:]
    del run.stack[-2:]
    _set(run, items)


def _setitems(run: _Run) -> None:
    _set(run, run.pop_mark())


def _reduce(run: _Run) -> None:
    args = run.stack.pop()
    func = run.stack[-1]
    if not isinstance(func, StandIn) or type(args) is not tuple:
        raise PipelineError(f"REDUCE may only call an allowed global with a tuple, got "
                            f"{_describe(func)}{_describe(args)}")
    run.stack[-1] = func.call(args, run.unpickler)
    run.created += 1


def _build(run: _Run) -> None:
    state = run.stack.pop()
    target = run.stack[-1]
    if type(target) not in (ArrayRecord, DtypeRecord) and not isinstance(target, StandIn):
        raise PipelineError(f"BUILD on {_describe(target)}: only numpy records take a state")
    target.build(state)


def _global(run: _Run) -> None:
    data, pos = run.data, run.pos
    stop = data.find(b"\n", pos, pos + 64)
    stop2 = data.find(b"\n", stop + 1, stop + 65) if stop >= 0 else -1
    if stop2 < 0:
        raise PipelineError(f"GLOBAL at byte {run.at} has no module and name lines")
    module = data[pos:stop].decode("ascii", "replace")
    name = data[stop + 1:stop2].decode("ascii", "replace")
    run.stack.append(run.unpickler.find_class(module, name))
    run.pos = stop2 + 1


def _stop(run: _Run) -> bool:
    if len(run.stack) != 1 or run.marks:
        raise PipelineError(f"STOP at byte {run.at} leaves {len(run.stack)} values and {len(run.marks)} marks, "
                            "not one value")
    if run.pos != run.end:
        raise PipelineError(f"{run.end - run.pos:,} bytes after STOP")
    return True


def _proto(run: _Run) -> None:
    raise PipelineError(f"PROTO at byte {run.at}: the protocol is set once, at the start")


OPCODES = {code[0]: step for code, step in {
    pickle.PROTO: _proto, pickle.STOP: _stop, pickle.MARK: _mark,
    pickle.NONE: _none, pickle.NEWTRUE: _newtrue, pickle.NEWFALSE: _newfalse,
    pickle.BININT: _binint, pickle.BININT1: _binint1, pickle.BININT2: _binint2, pickle.LONG1: _long1,
    pickle.SHORT_BINSTRING: _short_binstring, pickle.BINSTRING: _binstring, pickle.BINUNICODE: _binunicode,
    pickle.EMPTY_TUPLE: _empty_tuple, pickle.TUPLE: _tuple,
    pickle.TUPLE1: _tuple1, pickle.TUPLE2: _tuple2, pickle.TUPLE3: _tuple3,
    pickle.EMPTY_LIST: _empty_list, pickle.APPEND: _append, pickle.APPENDS: _appends,
    pickle.EMPTY_DICT: _empty_dict, pickle.SETITEM: _setitem, pickle.SETITEMS: _setitems,
    pickle.BINPUT: _binput, pickle.LONG_BINPUT: _long_binput, pickle.BINGET: _binget, pickle.LONG_BINGET: _long_binget,
    pickle.GLOBAL: _global, pickle.REDUCE: _reduce, pickle.BUILD: _build,
}.items()}
_STEPS = [OPCODES.get(byte) for byte in range(256)]  # indexed by the opcode byte: faster than dict.get


def unpickle(payload: bytes, source: str):
    """Interpret one archive member with `SafeUnpickler`; refusals name the member."""
    try:
        return SafeUnpickler(payload).load()
    except PipelineError as exc:
        raise PipelineError(f"{source}: refused to unpickle: {exc}") from None
