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
        data = run.data
        try:
            while True:
                run.at = run.pos
                op = data[run.pos]
                run.pos += 1
                step = OPCODES.get(op)
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


# Each opcode's step: it reads its argument, changes the run's state, and returns True only for STOP.


def _put(size: int):
    def put(run: _Run) -> None:
        key = run.argument(size)
        run.memo[key] = run.stack[-1]
        run.created += 1

    return put


def _get(size: int):
    def get(run: _Run) -> None:
        run.stack.append(run.memo[run.argument(size)])

    return get


def _binint1(run: _Run) -> None:
    run.stack.append(run.argument(1))


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
    run.stack.append(int.from_bytes(run.data[run.pos + 1 : run.pos + 1 + size], "little", signed=True))
    run.pos += 1 + size
    run.created += 1


def _string(size_of, text: bool):
    """SHORT_BINSTRING and BINSTRING (-> bytes, the archive's Python 2 strings), BINUNICODE (-> str)."""

    def string(run: _Run) -> None:
        size = size_of(run)
        if size < 0 or run.pos + size > run.end:
            raise PipelineError(f"a string of {size:,} bytes at byte {run.at} runs past the end")
        chunk = memoryview(run.data)[run.pos : run.pos + size]
        run.stack.append(str(chunk, "utf-8", "surrogatepass") if text else bytes(chunk))
        run.pos += size
        run.created += 1

    return string


def _signed_size(run: _Run) -> int:
    size = _I4(run.data, run.pos)[0]
    run.pos += 4
    return size


def _tuple_of(n: int):
    """TUPLE1, TUPLE2, TUPLE3: the top n values become one tuple."""

    def tuple_n(run: _Run) -> None:
        if len(run.stack) < n:
            raise IndexError
        run.stack[-n:] = [tuple(run.stack[-n:])]
        run.created += 1 + n

    return tuple_n


def _tuple(run: _Run) -> None:
    items = run.pop_mark()
    run.stack.append(tuple(items))
    run.created += 1 + len(items)


def _push(value, counted: bool):
    """EMPTY_TUPLE, NONE, NEWTRUE, NEWFALSE (constants, not counted); EMPTY_LIST, EMPTY_DICT (a new one each time)."""

    def push(run: _Run) -> None:
        run.stack.append(value() if counted else value)
        run.created += counted

    return push


def _mark(run: _Run) -> None:
    run.marks.append(len(run.stack))
    run.created += 1


def _append(run: _Run, items: list) -> None:
    if type(run.stack[-1]) is not list:
        raise PipelineError(f"APPEND on {_describe(run.stack[-1])}: only lists take items")
    run.stack[-1].extend(items)
    run.created += len(items)


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


def _reduce(run: _Run) -> None:
    args = run.stack.pop()
    func = run.stack[-1]
    if not isinstance(func, StandIn) or type(args) is not tuple:
        raise PipelineError(
            f"REDUCE may only call an allowed global with a tuple, got {_describe(func)}{_describe(args)}"
        )
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
    name = data[stop + 1 : stop2].decode("ascii", "replace")
    run.stack.append(run.unpickler.find_class(module, name))
    run.pos = stop2 + 1


def _stop(run: _Run) -> bool:
    if len(run.stack) != 1 or run.marks:
        raise PipelineError(
            f"STOP at byte {run.at} leaves {len(run.stack)} values and {len(run.marks)} marks, not one value"
        )
    if run.pos != run.end:
        raise PipelineError(f"{run.end - run.pos:,} bytes after STOP")
    return True


def _proto(run: _Run) -> None:
    raise PipelineError(f"PROTO at byte {run.at}: the protocol is set once, at the start")


OPCODES = {
    code[0]: step
    for code, step in {
        pickle.PROTO: _proto,
        pickle.STOP: _stop,
        pickle.MARK: _mark,
        pickle.NONE: _push(None, False),
        pickle.NEWTRUE: _push(True, False),
        pickle.NEWFALSE: _push(False, False),
        pickle.BININT: _binint,
        pickle.BININT1: _binint1,
        pickle.BININT2: _binint2,
        pickle.LONG1: _long1,
        pickle.SHORT_BINSTRING: _string(lambda run: run.argument(1), text=False),
        pickle.BINSTRING: _string(_signed_size, text=False),
        pickle.BINUNICODE: _string(lambda run: run.argument(4), text=True),
        pickle.EMPTY_TUPLE: _push((), False),
        pickle.TUPLE: _tuple,
        pickle.TUPLE1: _tuple_of(1),
        pickle.TUPLE2: _tuple_of(2),
        pickle.TUPLE3: _tuple_of(3),
        pickle.EMPTY_LIST: _push(list, True),
        pickle.APPEND: lambda run: _append(run, [run.stack.pop()]),
        pickle.APPENDS: lambda run: _append(run, run.pop_mark()),
        pickle.EMPTY_DICT: _push(dict, True),
        pickle.SETITEM: _setitem,
        pickle.SETITEMS: lambda run: _set(run, run.pop_mark()),
        pickle.BINPUT: _put(1),
        pickle.LONG_BINPUT: _put(4),
        pickle.BINGET: _get(1),
        pickle.LONG_BINGET: _get(4),
        pickle.GLOBAL: _global,
        pickle.REDUCE: _reduce,
        pickle.BUILD: _build,
    }.items()
}


def unpickle(payload: bytes, source: str):
    """Interpret one archive member with `SafeUnpickler`; refusals name the member."""
    try:
        return SafeUnpickler(payload).load()
    except PipelineError as exc:
        raise PipelineError(f"{source}: refused to unpickle: {exc}") from None
