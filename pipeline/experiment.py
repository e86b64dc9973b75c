"""Run the pipeline as a DVC experiment with param overrides: checked before any work, undone if it fails.

    python -m pipeline.experiment [--profile NAME] [KEY=VALUE ...]     (make repro PROFILE=... SET="...")

`dvc exp run -S KEY=VALUE` writes the overrides into params.yaml and then runs the stages, so an override
that the stages refuse (`models.sequential.epochs=-1`) fails only after DVC has started: params.yaml
keeps the bad value, the experiment's EXEC_* refs stay behind, and a stage that was due to run has had
its output (the downloaded archive) removed. This command:

1. applies the profile's overrides (pipeline/profiles.py) and then the KEY=VALUE ones to a copy of
   params.yaml with DVC's own override parser, and validates the result exactly as every stage will
   (`params.parse`): a bad override is one line, exit 1, before DVC starts;
2. runs `dvc exp run` with the same overrides;
3. if the experiment fails or is interrupted, puts params.yaml, dvc.lock and studies/dvc.lock back byte
   for byte, deletes the refs under refs/exps/exec/ that the run left, and checks the outputs of the
   restored locks out of the DVC cache (`dvc checkout --force`), so the workspace's data is as it was,
   and puts the metrics and plots folders (`cache: false` outputs, which DVC cannot check out) back file
   for file. It exits with the experiment's status after one line saying so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from pipeline import profiles

from pipeline.lib import cli, params
from pipeline.lib.params import PipelineError

KEPT = ("params.yaml", "dvc.lock", "studies/dvc.lock")
EXEC_REFS = "refs/exps/exec/"


def overrides(profile: str | None, assignments: list[str]) -> list[str]:
    """The `KEY=VALUE` overrides of `profile` followed by `assignments` (a later one wins)."""
    for item in assignments:
        if "=" not in item or not item.split("=", 1)[0]:
            raise cli.UsageError(f"{item!r}: an override is KEY=VALUE (e.g. models.sequential.epochs=3)")
    return [f"{key}={value}" for key, value in profiles.PROFILES.get(profile, {}).items()] + list(assignments)


def check(path: Path, given: list[str]) -> params.Params:
    """params.yaml at `path` with `given` applied as `dvc exp run -S` applies them, validated like a stage's."""
    mapping = params.load_mapping(path)
    for item in given:
        profiles.apply(mapping, {item.split("=", 1)[0]: None})  # an unknown key: one line naming it
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "params.yaml"
        shutil.copyfile(path, copy)
        try:
            apply_overrides(copy, given)
        except InvalidArgumentError as exc:
            cause = str(exc.__cause__ or exc).strip().splitlines()[0]
            raise PipelineError(f"{path}: the overrides {' '.join(given)} cannot be applied: {cause}") from None
        applied = yaml.safe_load(copy.read_text())
    return params.parse(applied, f"{path} with the overrides {' '.join(given)}")


def _exec_refs() -> set[str]:
    done = subprocess.run(["git", "for-each-ref", "--format=%(refname)", EXEC_REFS], capture_output=True, text=True)
    return set(done.stdout.split())


def outputs(saved: dict[str, bytes | None]) -> list[str]:
    """The outputs that the saved locks record (stages' `outs`), whether or not they exist now."""
    found = []
    for name, content in saved.items():
        lock = yaml.safe_load(content) if name.endswith(".lock") and content else None
        stages = lock.get("stages") if isinstance(lock, dict) else None
        for stage in (stages or {}).values():
            outs = stage.get("outs") if isinstance(stage, dict) else None
            base = Path(name).parent
            found += [str(base / out["path"]) for out in outs or () if isinstance(out, dict) and "path" in out]
    return found


def snapshot(folders: list[str]) -> dict[str, dict[str, bytes] | None]:
    """Every file under each folder, by path (None: the folder does not exist)."""
    return {folder: {str(f): f.read_bytes() for f in sorted(Path(folder).rglob("*")) if f.is_file()}
            if Path(folder).is_dir() else None for folder in folders}


def put_back(folders: dict[str, dict[str, bytes] | None]) -> None:
    """Make each folder hold exactly its `snapshot` again: new files removed, changed ones rewritten."""
    for folder, files in folders.items():
        if files is None:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for f in Path(folder).rglob("*"):
            if f.is_file() and str(f) not in files:
                f.unlink()
        write_back(files)


def write_back(saved: dict[str, bytes | None]) -> None:
    """Each file back to its saved bytes; a file saved as None (absent) is removed."""
    for name, content in saved.items():
        if content is None:
            Path(name).unlink(missing_ok=True)
        elif not Path(name).is_file() or Path(name).read_bytes() != content:
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            Path(name).write_bytes(content)


def restore(saved: dict[str, bytes | None], refs_before: set[str], present: list[str]) -> str:
    """Put the saved files and the refs back, and the data of the restored locks; what could not be, or ''."""
    write_back(saved)
    for ref in sorted(_exec_refs() - refs_before):
        subprocess.run(["git", "update-ref", "-d", ref], capture_output=True)
    # Outputs that were never cached (a stage that never ran here) cannot come back, and were not there.
    subprocess.run([sys.executable, "-m", "dvc", "checkout", "--force", "--quiet"], capture_output=True)
    lost = [path for path in present if not Path(path).exists()]
    return f"; not restored (not in the DVC cache): {', '.join(lost)}" if lost else ""


def main(argv=None) -> int:
    parser = cli.ArgumentParser(prog="python -m pipeline.experiment", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(profiles.PROFILES), help="a named set of overrides first")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="params.yaml overrides, as dvc exp run -S")
    args = parser.parse_args(argv)
    given = overrides(args.profile, args.overrides)
    before, after = params.load(), check(params.PARAMS_FILE, given)
    results = snapshot(sorted({folder for p in (before, after) for folder in (p.paths.metrics_dir, p.paths.plots_dir)}))
    saved = {name: Path(name).read_bytes() if Path(name).is_file() else None for name in KEPT}
    refs_before = _exec_refs()
    present = [path for path in outputs(saved) if Path(path).exists()]
    command = [sys.executable, "-m", "dvc", "exp", "run", *(arg for item in given for arg in ("-S", item))]
    print(f"experiment: dvc exp run {' '.join(command[5:])}", flush=True)
    proc = subprocess.Popen(command)
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # dvc got the same Ctrl-C: let it stop, then undo what it left
        code = proc.wait()
        code = code if code else 130
    if code == 0:
        return 0
    left = restore(saved, refs_before, present)
    put_back(results)
    print(f"pipeline.experiment: error: dvc exp run failed (exit {code}); params.yaml, the locks, the refs, "
          f"the metrics, the plots and the workspace's data are as they were before it{left}", file=sys.stderr)
    return code


if __name__ == "__main__":
    cli.main(main)
