"""The download stage's fetching (pipeline/lib/fetch.py) against real files and a real HTTP server on 127.0.0.1."""

import pytest

from pipeline.lib import fetch
from pipeline.lib.params import PipelineError
from tests.servers import serve


def test_file_url_is_copied_and_verified(tmp_path, tiny_archive):
    source, md5 = tiny_archive
    dest = tmp_path / "out" / "cifar-10-python.tar.gz"
    fetch.fetch(source.as_uri(), dest, md5, retries=0, timeout_s=5)
    assert dest.read_bytes() == source.read_bytes()
    assert not dest.with_name(dest.name + ".part").exists()


def test_relative_file_url_is_read_from_the_working_directory(tmp_path, tiny_archive, monkeypatch):
    source, md5 = tiny_archive
    monkeypatch.chdir(source.parent.parent)
    relative = f"file:{source.parent.name}/{source.name}"
    dest = tmp_path / "out" / "cifar-10-python.tar.gz"
    fetch.fetch(relative, dest, md5, retries=0, timeout_s=5)
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(PipelineError, match=r"no such file nowhere/x.tar.gz \(relative to /"):
        fetch.fetch("file:nowhere/x.tar.gz", tmp_path / "y.tar.gz", md5, retries=0, timeout_s=5)
    with pytest.raises(PipelineError, match="a file URL names no host"):
        fetch.fetch(f"file://{source.parent.name}/{source.name}", tmp_path / "y.tar.gz", md5, retries=0, timeout_s=5)
    assert not (tmp_path / "y.tar.gz").exists()


def test_checksum_mismatch_leaves_nothing_in_place(tmp_path, tiny_archive):
    source, _ = tiny_archive
    dest = tmp_path / "cifar-10-python.tar.gz"
    with pytest.raises(PipelineError, match=r"md5 is [0-9a-f]{32}, expected 0{32} \(download.md5\)"):
        fetch.fetch(source.as_uri(), dest, "0" * 32, retries=0, timeout_s=5)
    assert list(tmp_path.iterdir()) == []


def test_http_download(tmp_path, tiny_archive):
    source, md5 = tiny_archive
    dest = tmp_path / "cifar-10-python.tar.gz"
    with serve(source.parent) as (url, _):
        fetch.fetch(f"{url}/{source.name}", dest, md5, retries=0, timeout_s=5)
    assert dest.read_bytes() == source.read_bytes()


def test_dropped_connection_resumes_with_range(tmp_path, tiny_archive):
    source, md5 = tiny_archive
    dest = tmp_path / "cifar-10-python.tar.gz"
    with serve(source.parent, drop_first=1) as (url, server):
        fetch.fetch(f"{url}/{source.name}", dest, md5, retries=2, timeout_s=5)
    assert dest.read_bytes() == source.read_bytes()
    # The server sent half before dropping; the retry asks only for what was not yet on disk.
    first, second = server.requests
    resumed_from = int(second.removeprefix("bytes=").removesuffix("-"))
    assert first == "" and 0 < resumed_from <= len(source.read_bytes()) // 2


def test_http_404_fails_at_once_naming_the_url(tmp_path):
    with serve(tmp_path) as (url, server):
        with pytest.raises(PipelineError, match=r"download.url http://127.0.0.1:\d+/missing.tar.gz: HTTP 404"):
            fetch.fetch(f"{url}/missing.tar.gz", tmp_path / "x.tar.gz", "0" * 32, retries=3, timeout_s=5)
    assert len(server.requests) == 1


def test_refused_connection_gives_up_with_mirror_hint(tmp_path):
    # Port 9 on loopback (discard) has no listener here: the connection is refused at once.
    with pytest.raises(PipelineError, match=r"cannot download http://127.0.0.1:9/a.tar.gz after 2 attempts .*download.url"):
        fetch.fetch("http://127.0.0.1:9/a.tar.gz", tmp_path / "a.tar.gz", "0" * 32, retries=1, timeout_s=2)
    assert not (tmp_path / "a.tar.gz").exists()
