"""pipeline.lockcheck: is the committed dvc.lock what `dvc repro` of params.yaml would leave? Checked the
way CI checks it: in a fresh clone, without the data, after a real `dvc repro` committed its lock."""

import shutil

import pytest
import yaml

from pipeline import lockcheck
from tests.project import TINY, copy_project, run, run_stage, set_params

# Shaped as `dvc status --json` prints it in a fresh clone (DVC 3: "changed command" and "always changed" are
# plain strings; changed deps and outs map paths to "modified", "deleted", "not in cache" or, for a
# params file, each key to how it changed).
STATUS = {
    "download": [{"changed deps": {"pipeline/stages/download.py": "modified",
                                   "params.yaml": {"download.url": "modified", "download.md5": "modified"}}},
                 {"changed outs": {"data/cifar-10-python.tar.gz": "not in cache"}}],
    "train@sequential": [{"changed deps": {"data/prepared/train.npz": "deleted",
                                           "params.yaml": {"train.seed": "modified"}}},
                         {"changed outs": {"models/sequential.keras": "not in cache",
                                           "metrics/train-sequential.json": "modified"}}],
    "evaluate@parallel": [{"changed deps": {"data/prepared/test.npz": "deleted", "models/parallel.keras": "deleted"}}],
    "evaluate@sequential": [{"changed deps": {"data/prepared/test.npz": "deleted", "pipeline/stages/evaluate.py": "deleted"}}],
    "studies/dvc.yaml:collapse": ["changed command"],
    # plain strings beside changed deps: every reason is kept, in DVC's order
    "preprocess": ["always changed", {"changed deps": {"pipeline/stages/preprocess.py": "modified"}}, "changed command"],
}


def test_stale_reasons_ignore_what_only_the_missing_data_and_the_mirror_cause():
    def data(paths):
        return {p for p in paths if p.startswith(("data/", "models/"))}

    assert lockcheck.stale_reasons(STATUS, ignored=data) == {
        "download": ["pipeline/stages/download.py modified"],
        "train@sequential": ["param train.seed modified", "metrics/train-sequential.json modified"],
        "evaluate@sequential": ["pipeline/stages/evaluate.py deleted"],
        "collapse": ["changed command"],
        "preprocess": ["always changed", "pipeline/stages/preprocess.py modified", "changed command"],
    }


def edit_yaml(path, change):
    """Read the YAML file at `path`, let `change` edit the mapping in place, write it back."""
    edited = yaml.safe_load(path.read_text())
    change(edited)
    path.write_text(yaml.safe_dump(edited, sort_keys=False))


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

    def stale_after(edits, *expected):
        # every edit at once, one lockcheck (each call asks DVC twice, seconds each): all are named
        for edit in edits:
            edit()
        code, err = lockcheck_in(clone)
        run(["git", "checkout", "-q", "."], clone)
        assert code == 1 and all(text in err for text in expected), err

    def append(path, text):
        return lambda: (clone / path).write_text((clone / path).read_text() + text)

    stale_after([append("pipeline/stages/evaluate.py", "\n# edited\n"), lambda: set_params(clone, **{"train.seed": 1}),
                 append("metrics/train-sequential.json", " "), (clone / "metrics" / "lstm-step.json").unlink],
                "dvc.lock is stale: train@sequential: param train.seed modified, metrics/train-sequential.json "
                "modified; train@parallel: param train.seed modified; evaluate@sequential: pipeline/stages/evaluate.py "
                "modified; evaluate@parallel: pipeline/stages/evaluate.py modified; lstm-step: metrics/lstm-step.json "
                "deleted. Refresh it: make repro-mirror, then `git checkout params.yaml`")
    stale_after([lambda: set_params(clone, **{"collapse.seeds": 2})], "studies/dvc.lock is stale",
                "collapse: param collapse modified", "Refresh it: make study")

    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    absolute = (project / ".mirror" / archive.name).as_uri()

    def edit_lock(d):
        d["stages"]["download"]["params"]["params.yaml"].update({"download.url": absolute})
        d["stages"].update(evaluate=lock["stages"]["evaluate@sequential"])
        d["stages"].pop("lstm-step")

    stale_after([lambda: edit_yaml(clone / "dvc.lock", edit_lock)],
                f"download: download.url {absolute} is an absolute file path",
                "evaluate is in dvc.lock but not in dvc.yaml", "lstm-step never ran (not in dvc.lock)")
    # Another mirror of the same archive is a different data source, not a stale lock.
    set_params(clone, **{"download.url": "file:elsewhere/cifar-10-python.tar.gz"})
    assert lockcheck_in(clone) == (0, "")


# A scratch DVC project of two pipeline files, shaped like this one's (a params file with the data source,
# a committed metrics file, an ignored data output, a studies/ pipeline), for the checks in this process.
SCRATCH_PARAMS = "download:\n  url: file:.mirror/a.tar.gz\n  md5: abc\nn: 1\n"
SCRATCH_MAKE = ("import json, pathlib\n"
                "pathlib.Path('data/out.txt').write_text('out')\n"
                "pathlib.Path('metrics/m.json').write_text(json.dumps({'n': 1}))\n")
SCRATCH_DVC = """stages:
  make:
    cmd: python make.py
    deps: [make.py]
    params: [download.url, download.md5, n]
    outs: [data/out.txt]
    metrics: [{metrics/m.json: {cache: false}}]
  other:
    cmd: python -c "open('data/other.txt', 'w').write('x')"
    deps: [data/out.txt, config.txt]
    outs: [data/other.txt]
"""
SCRATCH_STUDIES = """stages:
  study:
    cmd: python -c "open('study.txt', 'w').write('s')"
    deps: [../make.py]
    params: [../params.yaml: [n]]
    outs: [study.txt]
"""


@pytest.fixture(scope="module")
def scratch_clone(tmp_path_factory):
    """A fresh clone (no data, no DVC cache) of a scratch project whose locks `dvc repro` wrote."""
    base = tmp_path_factory.mktemp("lockcheck")
    project = base / "project"
    (project / "studies").mkdir(parents=True)
    (project / "data").mkdir()
    (project / "metrics").mkdir()
    for name, text in {"params.yaml": SCRATCH_PARAMS, "make.py": SCRATCH_MAKE, "config.txt": "c\n",
                       "dvc.yaml": SCRATCH_DVC, "studies/dvc.yaml": SCRATCH_STUDIES}.items():
        (project / name).write_text(text)
    run(["git", "init", "-q"], project)
    for key, value in (("user.name", "t"), ("user.email", "t@t")):
        run(["git", "config", key, value], project)
    run(["dvc", "init", "-q"], project)
    run(["dvc", "config", "core.analytics", "false"], project)
    run(["dvc", "repro", "-q"], project)
    run(["dvc", "repro", "-q", "studies/dvc.yaml"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "locks"], project)
    clone = base / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], base)
    return clone


@pytest.fixture
def clone(scratch_clone, tmp_path, monkeypatch):
    """This test's own copy of the scratch clone, as the working directory."""
    copy = tmp_path / "clone"
    shutil.copytree(scratch_clone, copy, symlinks=True)
    monkeypatch.chdir(copy)
    return copy


def test_a_fresh_clone_of_fresh_locks_passes_in_this_process(clone, in_process):
    # data/out.txt and data/other.txt are absent ("deleted", "not in cache") but ignored: data, not a stale lock
    assert lockcheck._ignored(["data/out.txt", "metrics/m.json", "config.txt"]) == {"data/out.txt"}
    assert lockcheck._ignored([]) == set()
    assert in_process(clone, lockcheck) == (0, "lockcheck: dvc.lock matches dvc.yaml, params.yaml and the code\n"
                                               "lockcheck: studies/dvc.lock matches studies/dvc.yaml, params.yaml "
                                               "and the code\n", "")


def test_every_kind_of_stale_lock_is_named_at_once(clone, in_process):
    (clone / "make.py").write_text(SCRATCH_MAKE + "# edited\n")
    # n changes; the data source (download.url) is the one param allowed to differ from the lock
    (clone / "params.yaml").write_text(SCRATCH_PARAMS.replace("n: 1", "n: 2").replace("file:.mirror/a.tar.gz",
                                                                                      "https://example.org/a.tar.gz"))
    (clone / "metrics" / "m.json").write_text('{"n": 2}')
    (clone / "config.txt").unlink()
    (clone / "dvc.yaml").write_text(SCRATCH_DVC.replace("write('x')", "write('y')") + (
        "  new:\n    cmd: python -c \"open('data/new.txt', 'w').write('n')\"\n    outs: [data/new.txt]\n"))

    def stale(lock):
        lock["stages"]["gone"] = lock["stages"]["other"]
        lock["stages"]["make"]["params"]["params.yaml"]["download.url"] = "file:///somewhere/a.tar.gz"
    edit_yaml(clone / "dvc.lock", stale)
    assert lockcheck.problems("studies/dvc.yaml", "studies/dvc.lock") == ["study: make.py modified, param n modified"]
    code, out, err = in_process(clone, lockcheck)
    assert (code, out) == (1, "")
    assert err == ("pipeline.lockcheck: error: dvc.lock is stale: gone is in dvc.lock but not in dvc.yaml; "
                   "new never ran (not in dvc.lock); make: make.py modified, param n modified, metrics/m.json "
                   "modified; other: config.txt deleted, changed command; new: data/new.txt deleted; make: "
                   "download.url file:///somewhere/a.tar.gz is an absolute file path. Refresh it: make repro-mirror, "
                   "then `git checkout params.yaml` (dvc exp run -S wrote the mirror into it) and commit dvc.lock "
                   "with metrics/ and plots/\n")


def test_a_stale_studies_lock_is_named_with_its_own_refresh(clone, in_process):
    def stale(lock):
        lock["stages"]["study"]["params"]["../params.yaml"].update(n=7, **{"download.url": "http://127.0.0.1:8000/a.tar.gz"})
        lock["stages"]["old"] = {"cmd": "x"}
    edit_yaml(clone / "studies" / "dvc.lock", stale)
    (clone / "studies" / "dvc.yaml").write_text(SCRATCH_STUDIES + (
        "  more:\n    cmd: python -c \"open('more.txt', 'w').write('m')\"\n    outs: [more.txt]\n"))
    code, out, err = in_process(clone, lockcheck)
    assert (code, out) == (1, "lockcheck: dvc.lock matches dvc.yaml, params.yaml and the code\n")
    assert err == ("pipeline.lockcheck: error: studies/dvc.lock is stale: old is in studies/dvc.lock but not in "
                   "studies/dvc.yaml; more never ran (not in studies/dvc.lock); study: param n modified; more: "
                   "studies/more.txt deleted; study: download.url http://127.0.0.1:8000/a.tar.gz is a loopback host. "
                   "Refresh it: make study (on data prepared from a mirror: dvc repro --single-item "
                   "studies/dvc.yaml:collapse), then `git checkout params.yaml` (dvc exp run -S wrote the mirror "
                   "into it) and commit studies/dvc.lock with metrics/ and plots/\n")


@pytest.mark.parametrize("text, problem", [
    (None, "dvc.lock is missing"),
    ("stages: [a\n", "dvc.lock is not valid YAML (while parsing a flow sequence)"),
    ("", "dvc.lock has no mapping of stages (is it a dvc.lock?)"),
    ("- a\n", "dvc.lock has no mapping of stages (is it a dvc.lock?)"),
    ("schema: '2.0'\n", "dvc.lock has no mapping of stages (is it a dvc.lock?)"),
    ("stages: [make]\n", "dvc.lock has no mapping of stages (is it a dvc.lock?)"),
    ("stages:\n  make: 1\n", "dvc.lock has no mapping of stages (is it a dvc.lock?)"),
    ("stages:\n  make: {cmd: x}\n  other: [1]\n", "dvc.lock has no mapping of stages (is it a dvc.lock?)"),
])
def test_an_unreadable_lock_is_one_problem_without_asking_dvc(tmp_path, monkeypatch, text, problem):
    monkeypatch.chdir(tmp_path)  # no DVC project here: a call to dvc would fail the test
    if text is not None:
        (tmp_path / "dvc.lock").write_text(text)
    assert lockcheck.problems("dvc.yaml", "dvc.lock") == [problem]


def test_a_failing_dvc_call_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(lockcheck.PipelineError) as raised:
        lockcheck._dvc("stage", "list", "--name-only", "nowhere.yaml")
    message = str(raised.value)
    assert message.startswith("dvc stage list --name-only nowhere.yaml failed: ") and "\n" not in message
    assert message != "dvc stage list --name-only nowhere.yaml failed: ?", message


def test_a_url_in_the_lock_that_is_not_text_is_no_data_source_to_judge(clone):
    edit_yaml(clone / "dvc.lock",  # DVC accepts it; no URL to parse
              lambda lock: lock["stages"]["make"]["params"]["params.yaml"].update({"download.url": 5}))
    assert lockcheck.problems("dvc.yaml", "dvc.lock") == []


def test_a_dvc_that_fails_without_a_word_is_still_one_line(tmp_path, monkeypatch):
    silent = tmp_path / "python"
    silent.write_text("#!/bin/sh\nexit 1\n")
    silent.chmod(0o755)
    monkeypatch.setattr(lockcheck.sys, "executable", str(silent))  # `python -m dvc` of this environment
    with pytest.raises(lockcheck.PipelineError, match=r"^dvc status --json dvc.yaml failed: \?$"):
        lockcheck._dvc("status", "--json", "dvc.yaml")
