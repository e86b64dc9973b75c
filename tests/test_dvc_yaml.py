"""dvc.yaml and studies/dvc.yaml against the code: each stage's module deps are exactly what its module
imports (transitively, within `pipeline`), its outputs are where `params.Paths` says the stage writes,
and a plain `dvc repro` runs the benchmark and not the studies.

The stages are read through DVC itself (`dvc.repo.Repo`), so templating and `foreach` are resolved as
`dvc repro` resolves them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from dvc.repo import Repo

from pipeline.lib import params, registry

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = {"download", "preprocess", "lstm-step",
             *(f"{stage}@{model}" for stage in ("train", "evaluate") for model in registry.names())}
STUDIES = {"collapse"}


def module_file(module: str) -> Path:
    """pipeline.a.b -> pipeline/a/b.py (or its package __init__)."""
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def pipeline_imports(path: Path) -> set[str]:
    """The `pipeline` modules one file imports, at any depth of its code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: use absolute imports"
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pipeline"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if module_file(sub).is_file() else node.module)
    return found


def module_deps(module: str) -> set[str]:
    """Every file Python loads from `pipeline` to run `python -m <module>`: the module, the package's
    __init__, and what they import, transitively."""
    todo, seen = [module, "pipeline"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(pipeline_imports(module_file(name)))
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
    return {module_file(name).relative_to(ROOT).as_posix() for name in seen}


@pytest.fixture(scope="module")
def stages():
    with Repo(str(ROOT)) as repo:
        return {stage.addressing.split(":")[-1]: stage for stage in repo.index.stages}


def test_the_benchmark_and_the_studies_are_separate_pipeline_files(stages):
    assert set(stages) == BENCHMARK | STUDIES
    assert {name for name, s in stages.items() if Path(s.path).name == "dvc.yaml"
            and Path(s.path).parent == ROOT} == BENCHMARK
    assert all(Path(stages[name].path).parent == ROOT / "studies" for name in STUDIES)


@pytest.mark.parametrize("name", sorted(BENCHMARK | STUDIES))
def test_stage_module_deps_are_exactly_its_imports(stages, name):
    stage = stages[name]
    module = re.fullmatch(r"python -m (pipeline\.[\w.]+)(?: \w+)?", stage.cmd).group(1)
    listed = {Path(dep.fs_path).relative_to(ROOT).as_posix() for dep in stage.deps
              if Path(dep.fs_path).suffix == ".py"}
    assert listed == module_deps(module), f"{stage.path}: {name} deps differ from what {module} imports"


def test_stage_outputs_are_the_paths_the_code_writes(stages):
    paths = params.load(ROOT / "params.yaml").paths
    expected = {
        "download": {paths.archive},
        "preprocess": {paths.train_arrays, paths.test_arrays},
        **{f"train@{m}": {paths.model(m), paths.train_metrics(m), paths.train_history(m), paths.heldout_curve(m)}
           for m in registry.names()},
        **{f"evaluate@{m}": {paths.evaluate_metrics(m), paths.confusion(m)} for m in registry.names()},
        "lstm-step": {paths.lstm_step_metrics},
        "collapse": {paths.collapse_metrics, paths.collapse_plots_dir},
    }
    for name, stage in stages.items():
        written = {Path(out.fs_path).relative_to(ROOT) for out in stage.outs}
        assert written == {Path(p) for p in expected[name]}, name


def test_the_training_curves_plot_the_files_the_train_stages_write():
    paths = params.load(ROOT / "params.yaml").paths
    with Repo(str(ROOT)) as repo:
        plots = repo.index._plots[str(ROOT / "dvc.yaml")]  # the top-level plots, templating resolved
    histories = {paths.train_history(m) for m in registry.names()}
    curves = {paths.heldout_curve(m) for m in registry.names()}
    expected = {"held-out accuracy by images seen": ("images_seen", "heldout_accuracy", curves),
                "held-out accuracy by training seconds": ("train_seconds", "heldout_accuracy", curves),
                "training loss": ("epoch", "loss", histories), "training accuracy": ("epoch", "accuracy", histories)}
    assert [name for plot in plots for name in plot] == list(expected)
    for plot in plots:
        ((name, definition),) = plot.items()
        x, y, files = expected[name]
        assert definition["x"] == x and set(definition["y"].values()) == {y}, name
        assert {Path(f) for f in definition["y"]} == {Path(f) for f in files}, name


def test_operational_download_knobs_are_not_stage_params(stages):
    listed = {key for dep in stages["download"].deps if hasattr(dep, "params") for key in dep.params}
    assert listed == {"download.url", "download.md5"}


def test_each_stage_that_writes_metrics_lists_its_schema(stages):
    """A metrics writer validates against its kind's schema (pipeline/lib/metrics.py), so the schema is a dep."""
    kinds = {"train": "train", "evaluate": "evaluate", "lstm-step": "lstm-step", "collapse": "collapse"}
    for name, stage in stages.items():
        listed = {Path(dep.fs_path).relative_to(ROOT).as_posix() for dep in stage.deps
                  if Path(dep.fs_path).suffix == ".json"}
        kind = kinds.get(name.split("@")[0])
        assert listed == ({f"pipeline/lib/schemas/{kind}.schema.json"} if kind else set()), name
