"""Scratch copies of the project for tests that run the real stages or the real `dvc repro`."""

from __future__ import annotations

from pathlib import Path

import yaml


def set_params(project: Path, **changes) -> None:
    """Set dotted keys (`"train.parallel.epochs": 2`) in `project`/params.yaml."""
    path = project / "params.yaml"
    values = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = values
        for parent in parents:
            node = node[parent]
        node[key] = value
    path.write_text(yaml.safe_dump(values, sort_keys=False))
