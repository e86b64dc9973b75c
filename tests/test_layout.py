"""The package's folders are its parts: pipeline/stages (what dvc.yaml runs), pipeline/lib (what they
share) and the tools at the top of pipeline/ (what people and CI run). A stage imports no other stage and
no tool, the library imports no stage and no tool, and every module and function stays small enough to
read in one sitting (400 and 80 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every `pipeline` module one file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level and node.module, f"{path}: a relative import, which this check cannot follow"
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name.split(".")[0] == "pipeline"}


def part(module: str) -> str:
    """stage, lib, or tool (anything else under pipeline/, the package's own __init__ aside)."""
    if module == "pipeline":
        return "package"
    second = module.split(".")[1]
    return {"stages": "stage", "lib": "lib"}.get(second, "tool")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_parts_are_stages_library_and_tools():
    parts = {part(m) for m in MODULES}
    assert parts == {"package", "stage", "lib", "tool"}
    stages = sorted(m.rpartition(".")[2] for m in MODULES if part(m) == "stage" and m != "pipeline.stages")
    assert stages == ["collapse", "download", "evaluate", "lstm_step", "preprocess", "train"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part(m) in ("stage", "lib", "package")))
def test_stages_and_library_import_no_stage_and_no_tool(module):
    mine = part(module)
    for name in imported(MODULES[module]):
        other = part(name)
        assert other != "tool", f"{module} imports the tool {name}"
        if other == "stage":
            assert mine == "stage" and name in (module, "pipeline.stages"), f"{module} imports the stage {name}"


def test_every_module_and_function_is_small():
    too_long = []
    for root in ("pipeline", "tests", "reports", "scripts"):
        for path in sorted((ROOT / root).rglob("*.py")):
            tree = ast.parse(path.read_text())
            lines = len(path.read_text().splitlines())
            if root == "pipeline" and lines > MAX_MODULE_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    size = node.end_lineno - node.lineno + 1
                    if size > MAX_FUNCTION_LINES:
                        too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {size} lines")
    assert not too_long, too_long


def test_the_import_check_sees_imports_inside_functions_and_refuses_relative_ones(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from pipeline.stages import train\n    import pipeline.gate.compare\n")
    assert imported(module) == {"pipeline.stages", "pipeline.stages.train", "pipeline.gate.compare"}
    assert [part(m) for m in sorted(imported(module))] == ["tool", "stage", "stage"]
    module.write_text("from . import train\n")
    with pytest.raises(AssertionError, match="a relative import"):
        imported(module)
