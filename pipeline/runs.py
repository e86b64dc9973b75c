"""Finished runs as files on main: export an experiment (or a commit) into reports/runs/<name>/, read them back.

    python -m pipeline.runs export EXPERIMENT_OR_REV [--name NAME] [--files PATH ...] [--out reports/runs]
    python -m pipeline.runs list [--out reports/runs]

DVC experiments live in refs that a clone of main does not get. A result that the README or docs cite
is therefore exported: `export` copies, from the experiment's commit (or any commit that ran stages),

- `params.yaml`, `dvc.lock` and `studies/dvc.lock` as they were (the params, the data source, the code's md5s);
- the metrics and plots files that the run wrote: those that differ from its first parent (an
  experiment's parent is its baseline), or the ones named with `--files`;
- `run.yaml`: the experiment's name, its commit and baseline, the commit date, and the export command.

into `reports/runs/<name>/` (default name: the experiment's), keeping their paths (`metrics/...`,
`plots/...`). The directory appears complete or not at all, and an existing one is never overwritten.
`load` reads every run back in the shape `pipeline.report` aggregates, so `make report` rebuilds
reports/seeds.md from these files alone.

A run directory may also say `reconstructed: true` in its run.yaml: a run whose experiment ref was lost,
rebuilt from records committed on main at the time; its run.yaml names those sources and what is
missing (reports/runs/reconstruct.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from pipeline.lib import cli, params
from pipeline.lib.gitcmd import git, revision
from pipeline.lib.params import PipelineError

DEFAULT_OUT = Path("reports/runs")
LOCKS = ("params.yaml", "dvc.lock", "studies/dvc.lock")


def _git(*args: str) -> str:
    return git(*args).decode()


def first_parent(sha: str) -> str | None:
    return (_git("rev-list", "--parents", "-n", "1", "--end-of-options", sha).split()[1:2] or [None])[0]


def resolve(name_or_rev: str) -> tuple[str, str]:
    """(commit sha, experiment name or '') of a DVC experiment's name, an exp ref or any git revision."""
    for ref in _git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").splitlines():
        refname, sha = ref.split()
        if refname.rsplit("/", 1)[-1] == name_or_rev or refname == name_or_rev:
            return sha, refname.rsplit("/", 1)[-1]
    try:
        return _git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{name_or_rev}^{{commit}}").strip(), ""
    except PipelineError:
        raise PipelineError(f"{name_or_rev}: neither an experiment (git for-each-ref refs/exps) nor a commit") from None


def written_files(sha: str, parent: str | None, paths: params.Paths) -> list[str]:
    """The metrics and plots files that commit `sha` changed against its first parent (all, for a root commit)."""
    dirs = [str(paths.metrics_dir), str(paths.plots_dir)]
    if parent:
        changed = _git("diff", "--name-only", "--no-renames", "--diff-filter=AM", "--end-of-options", parent, sha, "--",
                       *dirs)
    else:
        changed = _git("ls-tree", "-r", "--name-only", "--end-of-options", sha, "--", *dirs)
    return sorted(changed.split())


def export(name_or_rev: str, out_root: Path, name: str | None, files: list[str] | None, paths: params.Paths) -> Path:
    sha, experiment = resolve(name_or_rev)
    name = name or experiment or sha[:7]
    if not name or "/" in name or name.startswith("."):
        raise PipelineError(f"--name {name!r}: a run's name is one plain directory name")
    dest = out_root / name
    if dest.exists():
        raise PipelineError(f"{dest} already exists; pick another --name (an exported run is never overwritten)")
    parent = first_parent(sha)
    chosen = files or written_files(sha, parent, paths)
    if not chosen:
        raise PipelineError(f"{name_or_rev} ({sha[:7]}) wrote no metrics or plots file that differs from its parent "
                            f"{(parent or '')[:7]}: it repeated that run; export the parent, "
                            "or name the files with --files")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_root))
    except OSError as exc:
        raise PipelineError(f"--out {out_root}: {exc.strerror}") from None
    try:
        for path in [*LOCKS, *chosen]:
            try:
                blob = git("show", "--end-of-options", f"{sha}:{path}")
            except PipelineError:
                if path in chosen:
                    raise PipelineError(f"{path} is not in {sha[:7]}") from None
                continue  # a lock that commit did not have
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).write_bytes(blob)
        record = {
            "name": name,
            "experiment": experiment or None,
            "rev": sha,
            "baseline": parent,
            "timestamp": _git("log", "-1", "--format=%cI", "--end-of-options", sha).strip(),
            "files": chosen,
            "exported_with": f"python -m pipeline.runs export {name_or_rev}"
            + (f" --name {name}" if name != (experiment or sha[:7]) else ""),
        }
        (staging / "run.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def load(out_root: Path) -> list[dict]:
    """Every exported run under `out_root` as pipeline.report reads experiments: name, rev, timestamp,
    and metrics by path (`metrics/train-sequential.json` -> its content)."""
    found = []
    for record_path in sorted(out_root.glob("*/run.yaml")):
        where = record_path.parent
        try:
            record = yaml.safe_load(record_path.read_text())
            metrics = {
                str(p.relative_to(where)): json.loads(p.read_text()) for p in sorted(where.glob("metrics/**/*.json"))
            }
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PipelineError(
                f"{record_path.parent}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        if not isinstance(record, dict) or not {"name", "rev", "timestamp"} <= set(record):
            raise PipelineError(f"{record_path}: needs name, rev and timestamp")
        found.append({"name": record["name"], "rev": record["rev"], "timestamp": str(record["timestamp"]),
                      "metrics": metrics})
    return found


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m pipeline.runs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="copy a finished experiment's (or commit's) params, metrics and curves")
    ex.add_argument("run", help="an experiment's name (dvc exp show), an exp ref or a commit")
    ex.add_argument("--name", help="the directory name under --out (default: the experiment's name)")
    ex.add_argument("--files", nargs="+", help="the metrics and plots files to take (default: those the run wrote)")
    ls = sub.add_parser("list", help="the exported runs")
    for p in (ex, ls):
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where runs live (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.command == "export":
        revision(args.run, "run")
        dest = export(args.run, args.out, args.name, args.files, params.load().paths)
        files = yaml.safe_load((dest / "run.yaml").read_text())["files"]
        cli.emit(f"runs: {args.run} -> {dest} ({len(files)} metrics/plots files, params.yaml, locks)")
    else:
        for run in load(args.out):
            cli.emit(f"{run['name']}\t{run['rev'][:7]}\t{run['timestamp']}\t{len(run['metrics'])} metrics files")


if __name__ == "__main__":
    cli.main(main)
