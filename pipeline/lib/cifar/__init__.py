"""Read the official CIFAR-10 python archive without trusting it.

`keras.datasets.cifar10` extracts the tar to disk and calls `pickle.load`, which runs whatever code a
hostile file names. Here nothing is extracted and no pickle machinery builds an object:

- **The tar** (tar.py) is one gzip member, inflated against one budget (`MAX_ARCHIVE_BYTES`) that counts every
  decompressed byte, tar headers and skipped members included; its CRC is checked and nothing may
  follow it. Only plain ustar/GNU headers are accepted, as in the official archive and the mirror: an
  extension header (GNU long name or link, pax records, GNU sparse map) or a negative size is refused
  before `tarfile` parses anything after it. Each member's
  path, type and size are checked before it is read; a duplicate or unexpected member is refused.
- **Each batch** is read by `SafeUnpickler` (unpickler.py), a small interpreter for the part of pickle protocol 2 that
  the archive uses (the grammar below). Its `find_class` returns inert stand-ins: `numpy.ndarray`,
  numpy's `_reconstruct` and `numpy.dtype` only record what the stream asks for (a shape, a dtype
  string, raw bytes), and `_codecs.encode` only turns latin-1 text into bytes. No numpy object exists
  until `parse_batch` (records.py) has checked every record, and then the arrays are copied out of the checked bytes.

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

The package: layout.py (the archive's folder, member names and image limit), tar.py (the gzip member
and its tar), unpickler.py (the interpreter, one function per opcode in a table keyed by `pickle`'s
constants), records.py (stand-ins, dtype and array records, the batch and meta checks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.lib.cifar.layout import FOLDER, MAX_IMAGES, META, NUM_CLASSES, TEST_BATCH, TRAIN_BATCHES
from pipeline.lib.cifar.records import parse_batch, parse_meta
from pipeline.lib.cifar.tar import read_members
from pipeline.lib.cifar.unpickler import SafeUnpickler, unpickle

__all__ = [
    "FOLDER",
    "MAX_IMAGES",
    "NUM_CLASSES",
    "SafeUnpickler",
    "load_archive",
    "parse_batch",
    "parse_meta",
    "read_members",
    "unpickle",
]


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
