"""Gate a change on accuracy and speed, with a markdown report for a pull-request comment.

    python -m pipeline.gate compare [--baseline REV | --baseline-dir DIR] [--current-dir DIR] [--report FILE]
    python -m pipeline.gate ab [--base REV] [--head REV] [--processes N] [--min-pairs N] [--max-pairs N]
                               [--budget-s S] [--record FILE] [--report FILE] [--allow-missing-baseline]
    python -m pipeline.gate ab --list
    python -m pipeline.gate reference [--runs GLOB]

`compare` gates accuracy. It reads the metrics in the workspace (or --current-dir) and those committed
at REV (default `main`, read with `git show`, so no checkout or DVC cache is needed) or kept in
--baseline-dir. A model fails when its test accuracy drops by more than models.<model>.max_accuracy_drop,
decided in correctly classified images (`accuracy_verdict`): on 2,000 test images a tolerance of 0.03
allows a drop of exactly 60 images, and 61 fail, whatever the baseline. The models are the registry's
(pipeline/lib/registry.py): one the baseline has no metrics of is a new, advisory row; one the baseline has
and the registry no longer does is a removed, advisory row.
It also gates convergence (`convergence`): each model's images to its target accuracy, read from the
held-out curve the train stage records, against the committed reference of the profile's seeds
(gate.convergence_reference, which `reference` builds from run records under reports/runs/); a model
fails when it needs more than the slowest seed's images plus gate.max_convergence_slowdown of them,
or never reaches its target. Its seconds to target are an advisory timing row.
Runs of different settings (the metrics contract's settings, pipeline/lib/metrics.py: image counts, epochs
and limits, loss, learning rate, seed, normalization, distribution, backend, lstm-step settings) are
refused, exit 2. Its timing rows are advisory (`timing_advisory`): times from two runs differ by more than
their within-run noise, so they never fail the gate.

`ab` gates speed. It measures the base rev and the head rev (default: the working tree) side by side on
this machine: `gate.ab_processes` worker processes per rev (pipeline/gate/ab_worker.py), each timing its own
rev's benchmarks (pipeline/lib/speed.py: each model's fit loop, the train stage's own epoch loop over a
few batches, and its inference batch), driven in interleaved rounds (`sample`). Each benchmark is one
row: the slowdown pooled over the worker pairs with a hierarchical-bootstrap interval
(`pooled_slowdown`), failing when the slowdown exceeds gate.max_slowdown and the interval lies above 0
(`regressed`). Sampling stops once every
interval lies on one side of the allowance, or at gate.ab_max_pairs / gate.ab_budget_s. The command-line
overrides go through the same checks as params.yaml. docs/gates.md has the measured error rates.
`ab` imports and runs the code of both revisions: use it on revisions whose code you trust.

Exit status: 0 pass, 1 a gate failed, 2 a usage error (no baseline, missing metric, unreadable file,
different settings, an invalid override), the last ones with one clear line on stderr.

The package, one module per job:
- `convergence`: the convergence reference, its limit in whole images and the convergence rows;
- `compare`: the accuracy verdict in image counts, the advisory timing rows, the metrics files it reads
  and the settings that make two runs comparable (through pipeline/lib/metrics.py);
- `statistics`: the A/B gate's pooled slowdown and its hierarchical-bootstrap interval, the verdict;
- `workers`: the benchmark worker processes (`ab_worker.py`, run with each rev's code) and their protocol;
- `ab`: git worktrees of the two revs, the interleaved sampling loop and the A/B rows;
- `report`: the report rows and their markdown;
- `command`: the command line (`python -m pipeline.gate`, `__main__`).
"""

from pipeline.lib import cli


class GateUsageError(cli.UsageError):
    """No baseline, a missing metric or an unreadable file: exit 2."""
