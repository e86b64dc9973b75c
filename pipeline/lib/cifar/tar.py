"""The archive's tar inside its one gzip member, read in memory against one budget of decompressed bytes,
with every member's header, path, type and size checked before it is read (see the package docstring)."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path, PurePosixPath

from pipeline.lib.cifar.layout import FOLDER, README
from pipeline.lib.cifar.layout import shown as _shown
from pipeline.lib.params import PipelineError

# An official data batch pickles to 31 MB (the Python-3 mirror's to 45 MB); a member larger than this
# is refused before it is read.
MAX_MEMBER_BYTES = 64 << 20
# Every decompressed byte of the archive (headers, skipped members, padding) counts: the six batches at
# their largest plus 16 MiB. The full mirror decompresses to 268.7 MB; a batch in the official Python 2
# layout is 30.9 MB, six of them about 186 MB.
MAX_ARCHIVE_BYTES = 6 * MAX_MEMBER_BYTES + (16 << 20)


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
        raise PipelineError(
            f"{where} is {member.size:,} bytes, more than the {MAX_MEMBER_BYTES:,} any real batch needs"
        )
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
