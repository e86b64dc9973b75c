"""The safe archive reader: what the official format needs loads, everything else is refused."""

import gzip
import os
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.lib import cifar
from pipeline.lib.cifar import layout, tar
from pipeline.lib.params import PipelineError
from tests import archives


def parse(batch):
    """`batch` pickled as the official files are, then read back by the safe reader."""
    return cifar.parse_batch(cifar.unpickle(archives.pickled(batch), "data_batch_1"), "data_batch_1")


def test_reads_the_official_layout(tiny_archive):
    data = cifar.load_archive(tiny_archive[0])
    x, y = data["train"]
    assert x.shape == (200, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (200,) and set(y.tolist()) == set(range(10))
    assert data["test"][0].shape == (100, 32, 32, 3)
    assert data["class_names"] == archives.CLASS_NAMES


def test_rows_become_channels_last():
    # Official rows: 1024 red values, then 1024 green, then 1024 blue.
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    images, _ = parse({b"data": row[None], b"labels": [3]})
    assert images.shape == (1, 32, 32, 3)
    assert images[0, 5, 7].tolist() == [10, 20, 30]


def test_pickle_naming_another_global_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = archives.pickled({b"data": archives.Calls(os.system, f"touch {marker}"), b"labels": []})
    with pytest.raises(PipelineError, match=r"refused to unpickle: .*global (posix|os)\.system is not allowed"):
        cifar.unpickle(payload, "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("numpy", "load"), ("subprocess", "Popen")])
def test_only_format_globals_resolve(module, name):
    with pytest.raises(PipelineError, match="is not allowed"):
        cifar.SafeUnpickler(b"").find_class(module, name)


def test_bytes_codec_other_than_latin1_is_refused():
    payload = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xq\x01X\x04\x00\x00\x00zlibq\x02\x86q\x03Rq\x04."
    with pytest.raises(PipelineError, match=re.escape("_codecs.encode accepts only (str, 'latin1'), got ('x', 'zlib')")):
        cifar.unpickle(payload, "test_batch")


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "numpy.dtype accepts only (integer type code, 0, 1)"),
        ({b"data": np.zeros((2, 3072), np.int16), b"labels": [0, 1]}, "uint8 array, got int16 (2, 3072)"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "got uint8 (2, 100)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels must be in 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, "labels must be in 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "expected a dict with keys"),
        ([1, 2], "expected a dict with keys"),
    ],
)
def test_bad_batches_are_refused(batch, message):
    with pytest.raises(PipelineError, match=re.escape(message)):
        parse(batch)


@pytest.mark.parametrize(
    "member, message",
    [
        (archives.member("cifar-10-batches-py/../evil", size=1), "unsafe path"),
        (archives.member("/etc/evil", size=1), "unsafe path"),
        (archives.member("cifar-10-batches-py/data_batch_9", tarfile.SYMTYPE, link="/etc/passwd"), "is a link"),
        (archives.member("cifar-10-batches-py/x", tarfile.LNKTYPE, link="cifar-10-batches-py/test_batch"), "is a link"),
        (archives.member("elsewhere/data_batch_1", size=1), "outside the expected folder"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, member, message):
    path = tmp_path / "a.tar.gz"
    archives.write_archive(path, archives.official_members(), member)
    with pytest.raises(PipelineError, match=message):
        cifar.load_archive(path)


def test_missing_member_is_named(tmp_path):
    members = archives.official_members()
    del members["batches.meta"]
    path = tmp_path / "a.tar.gz"
    archives.write_archive(path, members)
    with pytest.raises(PipelineError, match="missing member cifar-10-batches-py/batches.meta"):
        cifar.load_archive(path)


def test_truncated_archive_is_refused(tmp_path, tiny_archive):
    path = tmp_path / "cut.tar.gz"
    blob = tiny_archive[0].read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PipelineError, match="not a readable .tar.gz archive"):
        cifar.load_archive(path)


def _meta(obj) -> dict[str, bytes]:
    members = archives.official_members()
    members["batches.meta"] = archives.pickled(obj)
    return members


def _without(name: str) -> dict[str, bytes]:
    members = archives.official_members()
    del members[name]
    return members


NAMES = [n.encode() for n in archives.CLASS_NAMES]
LABEL_NAMES = "cifar-10-batches-py/batches.meta: label_names must be a list of 10 byte strings"


@pytest.mark.parametrize("members, extra, message", [
    (archives.official_members(), [archives.member("cifar-10-batches-py/sub", tarfile.DIRTYPE)],
     "member 'cifar-10-batches-py/sub' is not a regular file"),
    (archives.official_members(), [archives.member("cifar-10-batches-py/extra", size=1)],
     "member 'cifar-10-batches-py/extra' is not part of the CIFAR-10 archive (expected data_batch_1, data_batch_2, "
     "data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta, readme.html in cifar-10-batches-py/)"),
    (archives.official_members(), [archives.member("cifar-10-batches-py/test_batch", size=1)],
     "member 'cifar-10-batches-py/test_batch' appears twice; the archive must hold each member once"),
    (_without("data_batch_1"), [archives.member("cifar-10-batches-py/data_batch_1", size=(64 << 20) + 1)],
     "member 'cifar-10-batches-py/data_batch_1' is 67,108,865 bytes, more than the 67,108,864 any real batch needs"),
    (_meta([1, 2]), [], LABEL_NAMES),
    (_meta({b"num_vis": 3072}), [], LABEL_NAMES),
    (_meta({b"label_names": NAMES[:9]}), [], LABEL_NAMES),
    (_meta({b"label_names": NAMES[:9] + ["truck"]}), [], LABEL_NAMES),
    ({**archives.official_members(), "data_batch_3": archives.pickled({b"data": np.zeros((2, 3072), np.uint8),
                                                                        b"labels": [0, 10]})}, [],
     "cifar-10-batches-py/data_batch_3: labels must be in 0..9, found 0..10"),
    ({**archives.official_members(), "batches.meta": b"\x80\x03}."}, [],
     "cifar-10-batches-py/batches.meta: refused to unpickle: not a protocol-2 pickle"),
    ({**archives.official_members(), "test_batch": b"\x80\x02}"}, [],
     "cifar-10-batches-py/test_batch: refused to unpickle: the pickle ends before STOP"),
], ids=["subfolder", "unknown", "twice", "too large", "meta list", "meta without names", "nine names",
        "a name not bytes", "bad batch", "meta no pickle", "test batch cut"])
def test_a_bad_archive_is_one_line_naming_the_archive_and_the_member(tmp_path, members, extra, message):
    path = tmp_path / "a.tar.gz"
    archives.write_archive(path, members, *extra)
    with pytest.raises(PipelineError) as refused:
        cifar.load_archive(path)
    assert str(refused.value) == f"{path}: {message}"


def test_a_member_of_the_largest_size_is_not_refused_for_its_size(tmp_path):
    path = tmp_path / "a.tar.gz"
    archives.write_archive(path, _without("data_batch_1"), archives.member("cifar-10-batches-py/data_batch_1", size=64 << 20))
    with pytest.raises(PipelineError) as refused:  # 64 MiB of b"x": read, then refused as no pickle
        cifar.load_archive(path)
    assert str(refused.value).startswith(f"{path}: cifar-10-batches-py/data_batch_1: ") and "bytes, more than" not in str(refused.value)


def test_class_names_that_are_not_utf8_are_read_with_replacement_characters(tmp_path):
    path = tmp_path / "a.tar.gz"
    archives.write_archive(path, _meta({b"label_names": [b"\xffplane", *NAMES[1:]]}))
    assert cifar.load_archive(path)["class_names"] == ["\ufffdplane", *archives.CLASS_NAMES[1:]]


@pytest.mark.parametrize("framing, message", [
    (zlib.compress, "not a readable .tar.gz archive (truncated or corrupt?): zlib error: Error -3 while decompressing "
                    "data: incorrect header check"),
    (lambda tar: gzip.compress(tar) + gzip.compress(b"more"),
     "data after the gzip stream (a second member or padding); the archive is one gzip member"),
    (lambda tar: gzip.compress(tar) + b"\0", "data after the gzip stream (a second member or padding); the archive is one gzip member"),
], ids=["zlib, not gzip", "two gzip members", "one byte after"])
def test_only_one_gzip_member_is_an_archive(tmp_path, framing, message):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(framing(gzip.decompress(archives.tar_bytes(archives.official_members()))))
    with pytest.raises(PipelineError) as refused:
        cifar.load_archive(path)
    assert str(refused.value) == f"{path}: {message}"


def _inflated(data: bytes) -> "tar._Inflated":
    import io
    return tar._Inflated(io.BytesIO(gzip.compress(data)), Path("a.tar.gz"))


def test_every_inflated_byte_counts_against_the_budget_and_a_larger_request_is_refused_unread(monkeypatch):
    monkeypatch.setattr(tar, "MAX_ARCHIVE_BYTES", 3 << 20)
    refusal = "a.tar.gz: decompresses to more than 3,145,728 bytes; the CIFAR-10 archive needs far less"
    stream = _inflated(bytes(4 << 20))
    assert len(stream.read(-1)) == 3 << 20  # all the budget allows, in 1 MiB chunks
    with pytest.raises(PipelineError) as refused:
        stream.finish()  # the fourth goes over
    assert str(refused.value) == refusal and stream.spent == 4 << 20
    stream = _inflated(bytes(4 << 20))
    with pytest.raises(PipelineError) as refused:
        stream.read((3 << 20) + 1)
    assert str(refused.value) == refusal and stream.spent == 0


def test_the_inflated_stream_reads_and_seeks_forward_only():
    stream = _inflated(bytes(range(256)) * 4)
    assert stream.read(0) == b"" and stream.spent == 0
    assert stream.read(3) == bytes([0, 1, 2]) and stream.seek(5, 1) == 8 and stream.tell() == 8
    assert stream.seek(10) == 10 and stream.read(2) == bytes([10, 11])
    for offset, whence in ((0, 2), (5, 0), (-1, 1)):
        with pytest.raises(OSError, match="^the archive is read forward only$"):
            stream.seek(offset, whence)
    assert stream.read() == (bytes(range(256)) * 4)[12:] and stream.read(5) == b""


def test_seeking_from_the_end_is_refused_even_at_the_start():
    for read in (0, 1):
        stream = _inflated(b"abc")
        assert stream.read(read) == b"abc"[:read]
        for offset in (0, 1, 3):
            with pytest.raises(OSError, match="^the archive is read forward only$"):
                stream.seek(offset, 2)
        assert stream.tell() == read


@pytest.mark.parametrize("length", [300, 301])
def test_the_reason_an_archive_is_unreadable_is_shown_up_to_300_characters(tmp_path, monkeypatch, length):
    def reason(path):
        try:
            open(path, "rb").close()
        except OSError as exc:
            return str(exc)
        raise AssertionError(f"{path} exists")

    monkeypatch.chdir(tmp_path)  # a relative path: the reason's length does not depend on where tmp_path is
    size = length - len(reason(Path("x"))) + 1  # a missing path of this many characters makes it so
    folders = (size - 1) // 100  # folders of 99 characters, then a file name of 1-100: no name too long
    path = Path(("y" * 99 + "/") * folders + "x" * (size - 100 * folders))
    text = reason(path)
    assert len(text) == length and len(str(path)) == size
    with pytest.raises(PipelineError) as refused:
        cifar.load_archive(path)
    shown = text if length <= 300 else f"{text[:270]}... ({length} characters)"
    assert str(refused.value) == f"{path}: not a readable .tar.gz archive (truncated or corrupt?): {shown}"


def test_a_cut_gzip_stream_is_named_as_such(tmp_path, tiny_archive):
    path = tmp_path / "cut.tar.gz"
    blob = tiny_archive[0].read_bytes()
    path.write_bytes(blob[:-8])  # everything but the trailer (CRC-32 and length)
    with pytest.raises(PipelineError) as refused:
        cifar.load_archive(path)
    assert str(refused.value) == (f"{path}: not a readable .tar.gz archive (truncated or corrupt?): "
                                  "the gzip stream ends before its trailer")


@pytest.mark.parametrize("value, described", [
    ((1,), "(1,)"), ((1, 2, 3), "(1, 2, 3)"), ((1, 2, 3, 4), "(1, 2, 3, ...)"), ((), "()"),
    ((((1,),),), "((a tuple of 1 item,),)"),  # opened two levels deep, no further
    ([1], "a list of 1 item"), ([1, 2], "a list of 2 items"), ({b"a": 1}, "a dict of 1 item"),
    ("x" * 20, repr("x" * 20)), ("x" * 21, "str of length 21"), (b"y" * 21, "bytes of length 21"),
    (10 ** 79, str(10 ** 79)), (10 ** 80, str(10 ** 80)[:77] + "..."), (1.5, "1.5"),
])
def test_a_refused_value_is_described_briefly(value, described):
    assert layout.describe(value) == described


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 10]), "labels must be in 0..9, found 0..10"),
    (np.array([[0, 1]]), "labels must be a flat list of integers or a 1-D integer array, got an array of shape (1, 2)"),
    ("ab", "labels must be a flat list of integers or a 1-D integer array, got 'ab'"),
])
def test_labels_that_are_no_flat_list_of_classes_are_refused_in_one_exact_line(labels, message):
    with pytest.raises(PipelineError) as refused:
        parse({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels})
    assert str(refused.value) == f"data_batch_1: {message}"


def test_the_compressed_file_is_read_a_chunk_at_a_time():
    import io

    class Reads(io.BytesIO):
        sizes: list = []

        def read(self, size=-1):
            self.sizes.append(size)
            return super().read(size)

    file = Reads(gzip.compress(os.urandom(3 << 20)))  # incompressible: about 3 MiB to read
    stream = tar._Inflated(file, Path("a.tar.gz"))
    stream.read(-1)
    stream.finish()
    assert len(file.sizes) >= 3 and set(file.sizes) == {tar._Inflated.CHUNK, 1}  # and 1 byte to see the end
