"""Stage `download`: fetch the CIFAR-10 archive and verify its checksum.

Reads params `download.url`, `download.md5` and `paths.archive`; writes `paths.archive`. Also reads
`download.retries` and `download.timeout_s`, operational knobs that dvc.yaml leaves out of the stage's
params: changing them does not make the archive out of date.

- http(s): streamed into `<archive>.part` with a progress bar, resumed with an HTTP Range request
  after a dropped connection, retried with exponential backoff.
- file: copied with the same progress bar, for local mirrors: `file:///absolute/path`, or
  `file:relative/path`, relative to the repository root (where DVC runs the stage), which keeps
  dvc.lock free of any one machine's paths (`make repro-mirror` uses `file:.mirror/full/...`).

The archive is renamed into place only after its md5 matches `download.md5`; a mismatching file is
discarded. `<archive>.part` is not a DVC output, so a partial download survives to the next run.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.lib import cli, params
from pipeline.lib.fetch import fetch


def main(argv=None) -> None:
    cli.ArgumentParser(prog="python -m pipeline.stages.download", description=__doc__.splitlines()[0]).parse_args(argv)
    p = params.load()
    dest = Path(p.paths.archive)
    fetch(p.download.url, dest, p.download.md5, p.download.retries, p.download.timeout_s)
    print(f"download: {dest} ({dest.stat().st_size:,} bytes, md5 {p.download.md5})")


if __name__ == "__main__":
    cli.main(main)
