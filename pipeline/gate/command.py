"""The gate's command line, `python -m pipeline.gate compare | ab` (the package docstring has the usage)."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import profiles

from pipeline.lib import cli, params, registry
from pipeline.lib.atomic import write_text
from pipeline.gate import __doc__ as GATE_DOC
from pipeline.gate import convergence
from pipeline.gate.ab import ab
from pipeline.gate.compare import (
    compare,
    files_at_rev,
    files_in_dir,
    metric_files,
    metrics_at_rev,
    metrics_in_dir,
    models_in,
)
from pipeline.gate.report import markdown
from pipeline.lib.gitcmd import revision


# Command-line overrides of the A/B settings: (flag, gate key, type); each goes through params' checks.
AB_OVERRIDES = (("--processes", "ab_processes", int), ("--min-pairs", "ab_min_pairs", int),
                ("--max-pairs", "ab_max_pairs", int), ("--budget-s", "ab_budget_s", float))


def with_overrides(overrides: dict, path: Path = params.PARAMS_FILE) -> params.Params:
    """params.yaml with dotted-key `overrides`, read once and validated exactly as the file itself is."""
    return params.parse(profiles.apply(params.load_mapping(path), overrides), f"{path} with the command-line overrides")


def _parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="python -m pipeline.gate", description=GATE_DOC.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    cmp_ = sub.add_parser("compare", help="current metrics against a baseline rev or directory")
    cmp_.add_argument("--baseline", default="main", help="git rev whose committed metrics are the baseline")
    cmp_.add_argument("--baseline-dir", type=Path, help="a directory of baseline metrics instead of a rev")
    cmp_.add_argument("--current-dir", type=Path, help="current metrics (default: paths.metrics_dir)")
    cmp_.add_argument("--allow-new-settings", action="store_true",
                      help="a model whose settings changed gets an advisory accuracy row (a commit that changed "
                           "the profile); the other model is still gated")
    ref = sub.add_parser("reference", help="build the convergence reference from run records (writes "
                                           "gate.convergence_reference)")
    ref.add_argument("--runs", default=convergence.DEFAULT_RUNS, metavar="GLOB",
                     help=f"the run directories of the profile's seeds (default {convergence.DEFAULT_RUNS})")
    ab_ = sub.add_parser("ab", help="interleaved same-machine timing of two revs (runs the code of both: "
                                    "use it on revisions you trust)",
                         description="Time the benchmarks of two revisions side by side on this machine. "
                                     "It imports and runs the code of BOTH revisions (their pipeline/lib/speed.py and "
                                     "what it imports): use it only on revisions whose code you trust.")
    ab_.add_argument("--base", default="HEAD~1", help="baseline git rev (default HEAD~1)")
    ab_.add_argument("--head", help="head git rev (default: the working tree)")
    for flag, key, kind in AB_OVERRIDES:
        ab_.add_argument(flag, dest=key, type=kind, metavar="N", help=f"override gate.{key} (checked like params.yaml)")
    ab_.add_argument("--record", type=Path, help="also write every step time and the verdicts here (JSON)")
    ab_.add_argument("--list", action="store_true",
                     help="print the head's benchmark rows (the working tree's pipeline/lib/speed.py), measure nothing")
    ab_.add_argument("--allow-missing-baseline", action="store_true",
                     help="pass with a notice when the base rev cannot be benchmarked (e.g. it predates the hook)")
    for p in (cmp_, ab_):
        p.add_argument("--report", type=Path, help="also write the markdown report here")
    return parser


def _gate(argv) -> int:
    args = _parser().parse_args(argv)
    for option in ("baseline", "base", "head"):
        if getattr(args, option, None) is not None:
            revision(getattr(args, option), f"--{option}")
    overrides = {f"gate.{key}": getattr(args, key) for _, key, _ in AB_OVERRIDES
                 if getattr(args, key, None) is not None}
    p = with_overrides(overrides) if overrides else params.load()
    cfg = p.gate
    if args.mode == "compare":
        current = registry.names()
        files = metric_files(p.paths, current)
        current_dir = args.current_dir or Path(p.paths.metrics_dir)
        cur = metrics_in_dir(current_dir, list(files.values()), f"current {current_dir}")
        if args.baseline_dir:
            present, label = files_in_dir(args.baseline_dir), str(args.baseline_dir)
            read = lambda names: metrics_in_dir(args.baseline_dir, names, f"baseline {args.baseline_dir}")  # noqa: E731
        else:
            present, label = files_at_rev(args.baseline, p.paths.metrics_dir), args.baseline
            read = lambda names: metrics_at_rev(args.baseline, p.paths.metrics_dir, names)  # noqa: E731
        # the baseline's models: those it has files of (a current model it lacks entirely is new); with no
        # model's file there at all, every current model's files are required, so the error names one
        in_base = models_in(present, p.paths) or current
        gone = [m for m in in_base if m not in current]
        removed = {m: Path(p.paths.evaluate_metrics(m)).name for m in gone}  # only its score is shown
        kept = [m for m in in_base if m in current]
        base = read([*metric_files(p.paths, kept).values(), *removed.values()])
        title = f"Gate: {current_dir} against {label}"
        drops = {m: p.models[m].max_accuracy_drop for m in current}
        sections, notes = compare(base, cur, cfg, files, drops, args.allow_new_settings, removed)
        reference = convergence.load(Path(cfg.convergence_reference), missing_ok=True)
        converged = convergence.rows(reference, {m: (files[f"train-{m}"], cur[files[f"train-{m}"]]) for m in current},
                                     cfg.max_convergence_slowdown)
        sections = {"Accuracy": sections.pop("Accuracy"),
                    f"Convergence (against {cfg.convergence_reference})": converged, **sections}
        if reference is None:
            notes.append(f"no convergence reference at {cfg.convergence_reference}: convergence is not gated "
                         "(python -m pipeline.gate reference builds one from run records)")
    elif args.mode == "reference":
        built = convergence.build(convergence.run_dirs(args.runs), convergence.targets(p))
        convergence.write(Path(cfg.convergence_reference), built)
        absent = [m for m in registry.names() if m not in built["models"]]
        cli.emit(f"pipeline.gate: {cfg.convergence_reference}: " + "; ".join(
            f"{m} {len(r['runs'])} runs" for m, r in built["models"].items())
            + (f"; no runs of {', '.join(absent)} (not gated until they have some)" if absent else ""))
        return 0
    elif args.list:
        from pipeline.lib import speed  # the working tree's rows; nothing is built or run

        cli.emit("\n".join(speed.names()))
        return 0
    else:
        sections, notes = ab(args.base, args.head, p, args.allow_missing_baseline, args.record)
        title = f"Gate (A/B): {args.head or 'working tree'} against {args.base}"
        if sections is None:
            notes = [f"{notes[0]}; speed not gated"]
    if sections is None:
        report = f"## {title}\n\n- {notes[0]}.\n"
        cli.emit(report)
        if args.report:
            write_text(args.report, report)
        return 0
    report = markdown(title, sections, notes)
    cli.emit(report)
    if args.report:
        write_text(args.report, report)
    failed = [r.metric for rows in sections.values() for r in rows if not r.passed]
    if failed:
        print(f"pipeline.gate: FAIL: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """The gate's exit status: 0 pass, 1 a gate failed, 2 a usage error (any error is one line)."""
    return cli.run(_gate, argv, prog="pipeline.gate", error_exit=2)
