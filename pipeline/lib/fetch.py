"""Fetching a file verified by its md5: http(s) streamed into `<dest>.part` with a progress bar, resumed
with an HTTP Range request after a dropped connection and retried with exponential backoff; file: URLs
(absolute, or relative to the working directory) copied with the same progress bar. `dest` appears,
by an atomic rename, only once the md5 matches; a mismatching file is discarded."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import requests
from tqdm import tqdm

from pipeline.lib.params import PipelineError

CHUNK_BYTES = 1 << 20
# Small enough that a connection dropped mid-stream loses little: what was read is on disk to resume from.
HTTP_CHUNK_BYTES = 64 << 10
MIRROR_HINT = (
    "if this machine is offline, point download.url at a mirror and download.md5 at its checksum, "
    "e.g. dvc exp run -S download.url=file:path/in/repo/cifar-10-python.tar.gz -S download.md5=<md5>"
)


class _Retryable(Exception):
    """A transient failure: the next attempt resumes from what is already on disk."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _progress(total: int | None, initial: int, label: str) -> tqdm:
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label, mininterval=1.0)


def _copy_file(url: str, part: Path) -> None:
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        # file://.mirror/x would silently read `.mirror` as a host name and copy /x.
        raise PipelineError(f"download.url {url}: a file URL names no host; write file:relative/path "
                            "(relative to the repository) or file:///absolute/path")
    source = Path(url2pathname(parsed.path))
    if not source.is_file():
        where = "" if source.is_absolute() else f" (relative to {Path.cwd()})"
        raise PipelineError(f"download.url {url}: no such file {source}{where}")
    with open(source, "rb") as src, open(part, "wb") as dst, _progress(source.stat().st_size, 0, source.name) as bar:
        while chunk := src.read(CHUNK_BYTES):
            dst.write(chunk)
            bar.update(len(chunk))


def _http_attempt(session: requests.Session, url: str, part: Path, timeout_s: float) -> None:
    """Append the rest of `url` to `part`, starting where `part` ends."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with session.get(url, stream=True, timeout=timeout_s, headers=headers) as response:
            if response.status_code == 416 and offset:
                return  # the part is already complete; the checksum decides
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retryable(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise PipelineError(f"download.url {url}: HTTP {response.status_code} {response.reason}")
            if response.status_code == 200 and offset:
                offset = 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            with open(part, "ab" if offset else "wb") as f, _progress(total, offset, part.name) as bar:
                for chunk in response.iter_content(HTTP_CHUNK_BYTES):
                    f.write(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from None


def _fetch_http(url: str, part: Path, retries: int, timeout_s: float) -> None:
    with requests.Session() as session:
        for attempt in range(retries + 1):
            try:
                return _http_attempt(session, url, part, timeout_s)
            except _Retryable as exc:
                if attempt == retries:
                    raise PipelineError(
                        f"cannot download {url} after {retries + 1} attempts ({exc}); {MIRROR_HINT}"
                    ) from None
                delay_s = min(2.0**attempt, 30.0)
                have = part.stat().st_size if part.exists() else 0
                print(f"download: attempt {attempt + 1} failed ({exc}); retrying in {delay_s:.0f} s from byte {have}")
                time.sleep(delay_s)


def fetch(url: str, dest: Path, md5: str, retries: int, timeout_s: float) -> None:
    """Download `url` to `dest`, verified against `md5`; `dest` appears only if the checksum matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if urlparse(url).scheme == "file":
        _copy_file(url, part)
    else:
        _fetch_http(url, part, retries, timeout_s)
    actual = md5_of(part)
    if actual != md5:
        part.unlink()
        raise PipelineError(
            f"{url}: md5 is {actual}, expected {md5} (download.md5); the downloaded file was discarded"
        )
    os.replace(part, dest)
