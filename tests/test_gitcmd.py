"""Every git call that takes a revision passes it after `--end-of-options`: called directly, past the
command-line check (`gitcmd.revision`), a revision that reads like an option makes git fail, never
write a file."""

import subprocess

import pytest

from pipeline import runs

from pipeline.lib import gitcmd, params
from pipeline.history import read as history_read
from pipeline import gate
from pipeline.gate import compare as gate_compare
from pipeline.lib.params import PipelineError

EVIL = "--output=written"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "metrics").mkdir(parents=True)
    (repo / "metrics" / "a.json").write_text("{}\n")
    for cmd in (["init", "-q"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"],
                ["add", "-A"], ["commit", "-qm", "one"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    (repo / "metrics" / "a.json").write_text('{"a": 1}\n')
    subprocess.run(["git", "commit", "-qam", "two"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    return repo


PATHS = params.Paths(archive="a", prepared_dir="p", models_dir="m", metrics_dir="metrics", plots_dir="plots",
                     checkpoints_dir="c")
CALLS = {
    "gate show": lambda: gate_compare.metrics_at_rev(EVIL, "metrics", ["a.json"]),
    "history log": lambda: history_read.read_commits(EVIL, ["metrics/a.json"]),
    "runs rev-list": lambda: runs.first_parent(EVIL),
    "runs resolve": lambda: runs.resolve(EVIL),
    "runs diff": lambda: runs.written_files("HEAD", EVIL, PATHS),
    "runs ls-tree": lambda: runs.written_files(EVIL, None, PATHS),
}
# rev-parse --verify and ls-tree take no --output: without --end-of-options they fail all the same, so
# "runs resolve" and "runs ls-tree" pin the failure, not the option; the others would write a file.


@pytest.mark.parametrize("call", CALLS)
def test_a_revision_that_reads_like_an_option_never_makes_git_write_a_file(repo, call):
    (repo / f"{EVIL[len('--output='):]}:metrics").mkdir()  # where `git show --output=written:metrics/a.json` would write
    before = sorted(str(p) for p in repo.rglob("*") if ".git" not in p.parts)
    with pytest.raises((PipelineError, gate.GateUsageError)):
        CALLS[call]()
    assert sorted(str(p) for p in repo.rglob("*") if ".git" not in p.parts) == before


def test_listing_a_revision_that_reads_like_an_option_writes_nothing_and_lists_nothing(repo):
    (repo / f"{EVIL[len('--output='):]}:metrics").mkdir()
    before = sorted(str(p) for p in repo.rglob("*") if ".git" not in p.parts)
    assert gate_compare.files_at_rev(EVIL, "metrics") == set()
    assert sorted(str(p) for p in repo.rglob("*") if ".git" not in p.parts) == before
    assert gate_compare.files_at_rev("HEAD~1", "metrics") == {"a.json"}


def test_the_same_calls_work_on_a_real_revision(repo):
    # the control: each call above reads what it should when given a revision
    assert gate_compare.metrics_at_rev("HEAD~1", "metrics", ["a.json"]) == {"a.json": {}}
    assert [c.sha for c in history_read.read_commits("HEAD", ["metrics/a.json"])] == \
        subprocess.run(["git", "rev-list", "--reverse", "HEAD"], capture_output=True, text=True).stdout.split()
    head = runs.resolve("HEAD")[0]
    assert runs.first_parent(head) == runs.resolve("HEAD~1")[0]
    assert runs.written_files(head, runs.first_parent(head), PATHS) == ["metrics/a.json"]
    assert runs.written_files(runs.resolve("HEAD~1")[0], None, PATHS) == ["metrics/a.json"]


def test_a_revision_starting_with_a_dash_is_refused_before_git():
    with pytest.raises(gitcmd.UsageError, match=r"--since '--output=x': not a revision"):
        gitcmd.revision("--output=x", "--since")
