"""Named sets of param overrides on top of params.yaml, whose defaults are the per-commit benchmark profile.

`make repro PROFILE=tutorial` runs `dvc exp run` with them (pipeline/experiment.py checks them first);
scripts/gpu-check (pipeline/gpu_check/) writes them into its scratch params.yaml with `apply`.

- tutorial: the Keras tutorial's protocol: all 50,000 / 10,000 images, each model's reported epochs
  (sequential 100, parallel 10), and 20 timed rounds of the LSTM cores (hours on 2 CPU cores; minutes on a GPU).
  The held-out images are scored once per epoch (an epoch is 500 steps), and a model whose tutorial run
  learned (a reported accuracy of at least params.COLLAPSED_BELOW) is timed to that accuracy: when does
  the tutorial's own recipe first reach what the tutorial reported?
"""

from __future__ import annotations

import copy

from pipeline.lib import registry
from pipeline.lib.params import COLLAPSED_BELOW, PipelineError

_REPORTED = {name: m.reported for name, m in registry.MODELS.items() if m.reported}
PROFILES = {
    # each model the tutorial has runs its reported epochs (registry.Model.reported); any other keeps params.yaml's
    "tutorial": {"preprocess.train_limit": 0, "preprocess.test_limit": 0,
                 **{f"models.{name}.epochs": r.epochs for name, r in _REPORTED.items()},
                 **{f"models.{name}.evals_per_epoch": 1 for name in registry.names()},
                 **{f"models.{name}.target_accuracy": r.accuracy for name, r in _REPORTED.items()
                    if r.accuracy >= COLLAPSED_BELOW},
                 "lstm_step.rounds": 20},
}


def apply(mapping: dict, overrides: dict, allow_new: bool = False) -> dict:
    """A copy of the params `mapping` with dotted-key `overrides` set. A key not in `mapping` is refused
    unless `allow_new` (tests that check how params.parse refuses one)."""
    result = copy.deepcopy(mapping)
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = result
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if not isinstance(node, dict) or (key not in node and not allow_new):
            raise PipelineError(f"params.yaml has no key {dotted} to override")
        node[key] = value
    return result
