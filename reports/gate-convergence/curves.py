"""Draw the held-out curves behind the convergence targets and the gate: one PNG per model.

    .venv/bin/python reports/gate-convergence/curves.py      (from the repository root)

For each model: held-out accuracy against images seen, one line per run record: the unchanged seeds
(reports/runs/curve-10k-seed*, black) and each regression arm (reports/gate-convergence/runs/<arm>-seed*,
one colour per arm), with params.yaml's target (dashed) and the limit the committed reference gives at
gate.max_convergence_slowdown (dotted). Writes reports/gate-convergence/curves-<model>.png.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from pipeline.gate import convergence  # noqa: E402
from pipeline.lib import params, registry  # noqa: E402

HERE = Path(__file__).resolve().parent
COLOURS = {"unchanged": "black", "lr3": "tab:red", "lrx3": "tab:orange", "init": "tab:blue", "labels5": "tab:green",
           "labels20": "tab:purple"}


def main() -> None:
    os.chdir(ROOT)
    p = params.load()
    reference = convergence.load(Path(p.gate.convergence_reference))
    arms = {"unchanged": convergence.run_dirs(convergence.DEFAULT_RUNS)}
    for run in sorted((HERE / "runs").glob("*-seed*")):
        arms.setdefault(run.name.rsplit("-seed", 1)[0], []).append(run)
    for model in registry.names():
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        for arm, runs in arms.items():
            for i, run in enumerate(runs):
                curve = json.loads((run / "metrics" / f"train-{model}.json").read_text())["heldout_curve"]
                ax.plot([r["images_seen"] for r in curve], [r["heldout_accuracy"] for r in curve],
                        color=COLOURS.get(arm, "grey"), linewidth=0.8, alpha=0.6,
                        label=f"{arm} ({len(runs)} seeds)" if i == 0 else None)
        target = p.models[model].target_accuracy
        ax.axhline(target, linestyle="--", color="grey", linewidth=1, label=f"target {target}")
        images = [r["images_to_target"] for r in reference["models"][model]["runs"]]
        limit = convergence.limit_images(max(images), p.gate.max_convergence_slowdown)
        ax.axvline(limit, linestyle=":", color="grey", linewidth=1, label=f"gate limit {limit:,} images")
        ax.set(title=f"{model}: held-out accuracy while training (per-commit profile, 2,000 test images)",
               xlabel="training images seen", ylabel="held-out accuracy")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = HERE / f"curves-{model}.png"
        fig.savefig(out)
        plt.close(fig)
        print(f"{out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
