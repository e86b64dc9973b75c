"""pipeline.lockcheck: is the committed dvc.lock what `dvc repro` of params.yaml would leave? Checked the
way CI checks it: in a fresh clone, without the data, after a real `dvc repro` committed its lock."""

import shutil

import pytest
import yaml

from pipeline import lockcheck
from tests.project import TINY, copy_project, run, run_stage, set_params

# What `dvc status --json` printed for a fresh clone after pipeline/params.py and the mirror changed.
STATUS = {
    "download": [{"changed deps": {"pipeline/download.py": "modified",
                                   "params.yaml": {"download.url": "modified", "download.md5": "modified"}}},
                 {"changed outs": {"data/cifar-10-python.tar.gz": "not in cache"}}],
    "train@sequential": [{"changed deps": {"data/prepared/train.npz": "deleted",
                                           "params.yaml": {"train.seed": "modified"}}},
                         {"changed outs": {"models/sequential.keras": "not in cache",
                                           "metrics/train-sequential.json": "modified"}}],
    "evaluate@parallel": [{"changed deps": {"data/prepared/test.npz": "deleted", "models/parallel.keras": "deleted"}}],
    "evaluate@sequential": [{"changed deps": {"data/prepared/test.npz": "deleted", "pipeline/evaluate.py": "deleted"}}],
    "studies/dvc.yaml:collapse": [{"changed command": True}],
    # a plain string, then a changed command beside changed deps in one entry: every reason is kept
    "preprocess": ["always changed", {"changed command": True, "changed deps": {"pipeline/preprocess.py": "modified"}}],
}


def test_stale_reasons_ignore_what_only_the_missing_data_and_the_mirror_cause():
    def data(paths):
        return {p for p in paths if p.startswith(("data/", "models/"))}

    assert lockcheck.stale_reasons(STATUS, ignored=data) == {
        "download": ["pipeline/download.py modified"],
        "train@sequential": ["param train.seed modified", "metrics/train-sequential.json modified"],
        "evaluate@sequential": ["pipeline/evaluate.py deleted"],
        "collapse": ["command changed"],
        "preprocess": ["always changed", "command changed", "pipeline/preprocess.py modified"],
    }


@pytest.mark.parametrize("url, why", [
    ("file:.mirror/full/cifar-10-python.tar.gz", None),
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", None),
    ("file:///work/main/.mirror/full/cifar-10-python.tar.gz", "an absolute file path"),
    ("http://127.0.0.1:8000/cifar-10-python.tar.gz", "a loopback host"),
    ("http://localhost/cifar-10-python.tar.gz", "a loopback host"),
    ("http://[::1]:80/x.tar.gz", "a loopback host"),
])
def test_machine_specific_urls(url, why):
    assert lockcheck.machine_specific(url) == why


def lockcheck_in(clone):
    code, out, err = run_stage(clone, "pipeline.lockcheck")
    assert code in (0, 1), err
    assert code == 0 or (err.count("\n") == 1 and err.startswith("pipeline.lockcheck: error: ")), err
    return code, err


@pytest.mark.slow
def test_a_fresh_clone_without_data_is_checked_against_its_lock(root, tmp_path, tiny_archive):
    archive, md5 = tiny_archive
    project = copy_project(root, tmp_path / "project")
    (project / ".mirror").mkdir()
    shutil.copy(archive, project / ".mirror" / archive.name)
    set_params(project, **{"download.url": f"file:.mirror/{archive.name}", "download.md5": md5, **TINY})
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "tiny"], project)
    run(["dvc", "repro"], project)
    run(["dvc", "repro", "studies/dvc.yaml"], project)
    # params.yaml keeps the official URL, as on main: the lock records the mirror, the one allowed difference.
    set_params(project, **{"download.url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                           "download.md5": "c58f30108f718f92721af3b95e74349a"})
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "lock"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "data").exists() and not (clone / ".mirror").exists()

    assert lockcheck_in(clone) == (0, "")

    def stale_after(edit, *expected):
        edit()
        code, err = lockcheck_in(clone)
        run(["git", "checkout", "-q", "."], clone)
        assert code == 1 and all(text in err for text in expected), err

    def append(path, text):
        return lambda: (clone / path).write_text((clone / path).read_text() + text)

    stale_after(append("pipeline/evaluate.py", "\n# edited\n"), "dvc.lock is stale",
                "evaluate@sequential: pipeline/evaluate.py modified", "evaluate@parallel: pipeline/evaluate.py modified",
                "Refresh it: make repro-mirror, then `git checkout params.yaml`")
    stale_after(lambda: set_params(clone, **{"train.seed": 1}), "train@sequential: param train.seed modified",
                "train@parallel: param train.seed modified")
    stale_after(append("metrics/train-sequential.json", " "), "train@sequential: metrics/train-sequential.json modified")
    stale_after(lambda: (clone / "metrics" / "lstm-step.json").unlink(), "lstm-step: metrics/lstm-step.json deleted")
    stale_after(lambda: set_params(clone, **{"collapse.seeds": 2}), "studies/dvc.lock is stale",
                "collapse: param collapse modified", "Refresh it: make study")

    lock = yaml.safe_load((clone / "dvc.lock").read_text())

    def edit_lock(change):
        def edit():
            edited = yaml.safe_load((clone / "dvc.lock").read_text())
            change(edited)
            (clone / "dvc.lock").write_text(yaml.safe_dump(edited, sort_keys=False))
        return edit

    absolute = (project / ".mirror" / archive.name).as_uri()
    stale_after(edit_lock(lambda d: d["stages"]["download"]["params"]["params.yaml"].update({"download.url": absolute})),
                f"download: download.url {absolute} is an absolute file path")
    stale_after(edit_lock(lambda d: d["stages"].update(evaluate=lock["stages"]["evaluate@sequential"])),
                "evaluate is in dvc.lock but not in dvc.yaml")
    stale_after(edit_lock(lambda d: d["stages"].pop("lstm-step")), "lstm-step never ran (not in dvc.lock)")
    # Another mirror of the same archive is a different data source, not a stale lock.
    set_params(clone, **{"download.url": "file:elsewhere/cifar-10-python.tar.gz"})
    assert lockcheck_in(clone) == (0, "")
