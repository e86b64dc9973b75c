"""Is the committed dvc.lock fresh? A check that needs no data: CI runs it before anything else.

    python -m pipeline.lockcheck        exit 0: fresh; exit 1: one line naming what is stale and the fix

On main, `dvc.lock` (and `studies/dvc.lock`) must be what `dvc repro` of `params.yaml` wrote at that
commit. This asks DVC itself (`dvc status --json` of each pipeline file, and `dvc stage list`) and
reads its answer without the data: the archive, the prepared arrays and the models are absent from a
fresh clone, so their "deleted" and "not in cache" entries (on paths git ignores) say nothing. What
does count:

- a code dep whose md5 differs from the lock (`pipeline/*.py` "modified"), a dep the lock lacks ("new"),
  a committed dep or output that is gone ("deleted" on a path git does not ignore), a changed command;
- a param whose value differs from the lock, except `download.url` and `download.md5`, the data source
  (a mirror of the official archive, which the lock records where one was used);
- a committed metrics or plots file (`cache: false` outputs) whose md5 differs from the lock;
- a lock entry for a stage that the pipeline file no longer defines;
- a `download.url` in the lock that only one machine can read: an absolute `file:` path or a loopback
  host (`make repro-mirror` records `file:.mirror/full/...`, relative to the repository).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

from pipeline.lib import cli
from pipeline.lib.params import PipelineError

# (pipeline file, its lock, the command that refreshes it on a machine without internet; `make repro`
# where the official URL is reachable).
PIPELINES = (
    ("dvc.yaml", "dvc.lock", "make repro-mirror"),
    ("studies/dvc.yaml", "studies/dvc.lock",
     "make study (on data prepared from a mirror: dvc repro --single-item studies/dvc.yaml:collapse)"),
)
DATA_SOURCE = {"download.url", "download.md5"}
ABSENT_WITHOUT_DATA = {"deleted", "not in cache"}


def _dvc(*args: str) -> str:
    """DVC of this interpreter's environment (`python -m dvc`), whatever PATH says."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout


def _ignored(paths: list[str]) -> set[str]:
    """The paths git ignores: the data, models and caches a fresh clone lacks."""
    if not paths:
        return set()
    done = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], input="\n".join(paths),
                          capture_output=True, text=True)
    return set(done.stdout.split())


def stale_reasons(status: dict, ignored=_ignored) -> dict[str, list[str]]:
    """What makes each stage stale, from `dvc status --json`. A "deleted" or "not in cache" path that git
    ignores is data a fresh clone lacks, not a stale lock; a committed file (code, metrics) counts."""
    absent = [path for entries in status.values() for entry in entries if isinstance(entry, dict)
              for changes in entry.values() if isinstance(changes, dict)
              for path, change in changes.items() if isinstance(change, str) and change in ABSENT_WITHOUT_DATA]
    data = ignored(absent)
    stale: dict[str, list[str]] = {}
    for stage, entries in status.items():
        reasons = []
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "changed checksum", "always changed"
                reasons.append(entry)
                continue
            for changes in entry.values():  # "changed deps" / "changed outs": {path: change}
                for path, change in (changes or {}).items():
                    if isinstance(change, dict):  # a params file: {key: "modified" | "new" | "deleted"}
                        reasons += [f"param {key} {how}" for key, how in change.items() if key not in DATA_SOURCE]
                    elif change not in ABSENT_WITHOUT_DATA or path not in data:
                        reasons.append(f"{path} {change}")
        if reasons:
            stale[stage.split(":")[-1]] = reasons
    return stale


def machine_specific(url: str) -> str | None:
    """Why `url` names a place only one machine has, or None."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return "an absolute file path" if parsed.path.startswith("/") else None
    host = parsed.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return "a loopback host" if loopback else None


def problems(pipeline: str, lock: str) -> list[str]:
    """Every reason `lock` is not what `dvc repro` of `pipeline` would leave at this commit."""
    if not Path(lock).is_file():
        return [f"{lock} is missing"]
    try:
        loaded = yaml.safe_load(Path(lock).read_text()) or {}
    except yaml.YAMLError as exc:
        return [f"{lock} is not valid YAML ({str(exc).splitlines()[0]})"]
    recorded = loaded.get("stages") if isinstance(loaded, dict) else None
    if not isinstance(recorded, dict) or not all(isinstance(entry, dict) for entry in recorded.values()):
        return [f"{lock} has no mapping of stages (is it a dvc.lock?)"]
    # DVC names a stage of another pipeline file `<file>:<stage>`; the lock names it `<stage>`
    defined = {full.split(":")[-1] for full in _dvc("stage", "list", "--name-only", pipeline).split()}
    found = [f"{name} is in {lock} but not in {pipeline}" for name in recorded if name not in defined]
    found += [f"{name} never ran (not in {lock})" for name in sorted(defined) if name not in recorded]
    for stage, reasons in stale_reasons(json.loads(_dvc("status", "--json", pipeline))).items():
        found.append(f"{stage}: {', '.join(reasons)}")
    for stage, entry in recorded.items():
        for dep in (entry.get("params") or {}).values():  # each a mapping: DVC refuses a lock where one is not
            url = dep.get("download.url")
            why = machine_specific(url) if isinstance(url, str) else None
            if why:
                found.append(f"{stage}: download.url {url} is {why}")
    return found


def main(argv=None) -> None:
    cli.ArgumentParser(prog="python -m pipeline.lockcheck", description=__doc__.splitlines()[0]).parse_args(argv)
    for pipeline, lock, refresh in PIPELINES:
        found = problems(pipeline, lock)
        if found:
            raise PipelineError(f"{lock} is stale: {'; '.join(found)}. Refresh it: {refresh}, then "
                                f"`git checkout params.yaml` (dvc exp run -S wrote the mirror into it) and commit "
                                f"{lock} with metrics/ and plots/")
        print(f"lockcheck: {lock} matches {pipeline}, params.yaml and the code")


if __name__ == "__main__":
    cli.main(main)
