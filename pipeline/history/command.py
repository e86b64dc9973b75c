"""The history's command line, `python -m pipeline.history` (the package docstring has the usage)."""

from __future__ import annotations

from pathlib import Path

from pipeline.lib import cli, params, registry
from pipeline.lib.atomic import write_text
from pipeline.lib.gitcmd import git, revision
from pipeline.history import __doc__ as HISTORY_DOC
from pipeline.history.detect import analyse, summary
from pipeline.history.read import read_commits
from pipeline.history.render import page
from pipeline.lib.params import PipelineError


def _history(argv) -> None:
    parser = cli.ArgumentParser(prog="python -m pipeline.history", description=HISTORY_DOC.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the branch or commit whose first-parent line is drawn")
    parser.add_argument("--out", type=Path, default=Path("reports/history.html"))
    parser.add_argument("--since", help="summarise only changes at commits after this one (e.g. the PR's base)")
    parser.add_argument("--summary", type=Path, help="also write the markdown summary here")
    args = parser.parse_args(argv)
    revision(args.rev, "--rev")
    if args.since is not None:
        revision(args.since, "--since")
    p = params.load().paths
    files = sorted(
        {str(p.train_metrics(m)) for m in registry.names()}
        | {str(p.evaluate_metrics(m)) for m in registry.names()}
        | {str(p.lstm_step_metrics), "dvc.lock"}
    )
    commits = read_commits(args.rev, files)
    if not commits:
        raise PipelineError(f"{args.rev} has no commits")
    since_index = -1
    if args.since:
        since = git("rev-parse", "--verify", "--end-of-options", f"{args.since}^{{commit}}").decode().strip()
        matches = [i for i, c in enumerate(commits) if c.sha == since]
        if not matches:
            raise PipelineError(f"--since {args.since}: not on the first-parent line of {args.rev}")
        since_index = matches[0]
    grouped = analyse(commits, p)
    write_text(args.out, page(grouped, commits, args.rev))
    text = summary(grouped, since_index)
    if args.summary:
        write_text(args.summary, text)
    cli.emit(text, end="")
    runs = sum(len(s) for segments in grouped.values() for s in segments)
    cli.emit(f"history: {len(commits)} commits, {runs} runs -> {args.out}")


def main(argv=None) -> int:
    """The history's exit status: 0 done, 1 an error (one line naming what is wrong), 2 a usage error."""
    return cli.run(_history, argv, prog="pipeline.history")
