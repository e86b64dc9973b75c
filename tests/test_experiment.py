"""`make repro PROFILE=... SET=...` (pipeline/experiment.py): overrides are checked before DVC starts, and a
failed experiment leaves params.yaml, the locks, the refs and the data as they were. The failing runs are
real `dvc exp run`s in a scratch copy of the project."""

import hashlib
import os
import subprocess

import pytest

from pipeline import experiment, profiles
from pipeline.lib.params import PipelineError
from tests.project import ROOT, TINY, copy_project, run, run_stage, set_params


def test_the_tutorial_profile_is_the_tutorials_protocol():
    # applied by DVC's own override parser, as `dvc exp run -S` applies it, then validated like a stage's params
    p = experiment.check(ROOT / "params.yaml", experiment.overrides("tutorial", []))
    assert (p.preprocess.normalize, p.preprocess.train_limit, p.preprocess.test_limit) == ("raw", 0, 0)
    assert (p.train.batch_size, p.train.learning_rate, p.train.loss) == (100, 0.001, "crossentropy")
    assert (p.models["sequential"].epochs, p.models["parallel"].epochs) == (100, 10)
    assert p.lstm_step.rounds == profiles.PROFILES["tutorial"]["lstm_step.rounds"]
    # a later override wins over the profile's; values are typed as DVC types them (1e-3 is a float)
    p = experiment.check(ROOT / "params.yaml", experiment.overrides("tutorial", ["models.parallel.epochs=2",
                                                                                "train.learning_rate=1e-3"]))
    assert (p.models["parallel"].epochs, p.train.learning_rate) == (2, 0.001)


@pytest.mark.parametrize("given, message", [
    (["models.sequential.epochs=-1"], "models.sequential.epochs = -1 is invalid; allowed: >= 1"),
    (["train.seed=abc"], "train.seed must be int, got str 'abc'"),
    (["train.sequentail.epochs=3"], "params.yaml has no key train.sequentail.epochs to override"),
    (["train.seed=[1"], "cannot be applied"),
])
def test_a_bad_override_is_one_line_naming_it(given, message):
    with pytest.raises(PipelineError) as info:
        experiment.check(ROOT / "params.yaml", given)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_override_without_a_value_is_a_usage_error():
    with pytest.raises(PipelineError, match="'epochs': an override is KEY=VALUE"):
        experiment.overrides(None, ["epochs"])


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_archive):
    """A scratch project whose download stage has run and whose lock is committed."""
    archive, md5 = tiny_archive
    where = copy_project(ROOT, tmp_path_factory.mktemp("experiment") / "project")
    set_params(where, **{"download.url": archive.as_uri(), "download.md5": md5, **TINY})
    run(["git", "add", "-A"], where)
    run(["git", "commit", "-qm", "tiny"], where)
    run(["dvc", "repro", "download"], where)
    run(["git", "add", "-A"], where)
    run(["git", "commit", "-qm", "downloaded"], where)
    return where


def _state(project):
    archive = project / "data" / "cifar-10-python.tar.gz"
    return {"params.yaml": (project / "params.yaml").read_bytes(), "dvc.lock": (project / "dvc.lock").read_bytes(),
            "refs": run(["git", "for-each-ref", "refs/exps"], project),
            "archive": hashlib.md5(archive.read_bytes()).hexdigest() if archive.exists() else None,
            "status": run(["git", "status", "--porcelain"], project)}


@pytest.mark.slow
def test_an_invalid_override_never_starts_dvc(project):
    before = _state(project)
    code, out, err = run_stage(project, "pipeline.experiment", "models.sequential.epochs=-1")
    assert code == 1 and "Running stage" not in out + err
    assert err.strip().splitlines() == ["pipeline.experiment: error: params.yaml with the overrides "
                                        "models.sequential.epochs=-1: models.sequential.epochs = -1 is invalid; "
                                        "allowed: >= 1"]
    assert _state(project) == before


@pytest.mark.slow
def test_a_failed_experiment_leaves_params_locks_refs_and_data_as_they_were(project):
    before = _state(project)
    assert before["archive"] is not None
    # valid params, but the download stage is due to run again and fails: a real failing `dvc exp run`
    code, out, err = run_stage(project, "pipeline.experiment", "download.url=file:missing.tar.gz")
    assert code != 0 and "Running stage 'download'" in out + err
    assert err.strip().splitlines()[-1].startswith("pipeline.experiment: error: dvc exp run failed")
    assert _state(project) == before


def test_the_metrics_and_plots_folders_are_put_back_file_for_file(tmp_path, monkeypatch):
    # cache: false outputs: `dvc checkout` cannot restore them, so a failed experiment puts them back itself
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics" / "sub").mkdir(parents=True)
    (tmp_path / "metrics" / "train.json").write_text('{"a": 1}')
    (tmp_path / "metrics" / "sub" / "kept.csv").write_text("x\n")
    saved = experiment.snapshot(["metrics", "plots"])  # plots/ does not exist yet
    (tmp_path / "metrics" / "train.json").write_text('{"a": 2}')  # rewritten by a stage
    (tmp_path / "metrics" / "sub" / "kept.csv").unlink()  # removed
    (tmp_path / "metrics" / "new.json").write_text("{}")  # written by a stage that ran
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "p.csv").write_text("y\n")
    experiment.put_back(saved)
    assert experiment.snapshot(["metrics", "plots"]) == saved
    assert (tmp_path / "metrics" / "train.json").read_text() == '{"a": 1}' and not (tmp_path / "plots").exists()


@pytest.mark.parametrize("args, command", [
    (["SET=train.seed=1 models.parallel.epochs=2"], "-m pipeline.experiment train.seed=1 models.parallel.epochs=2"),
    (["PROFILE=tutorial", "SET=train.seed=1"], "-m pipeline.experiment --profile tutorial train.seed=1"),
    ([], "dvc repro"),
])
def test_make_repro_runs_overrides_through_the_checked_experiment(args, command):
    # the Makefile's wiring: with PROFILE or SET, never a bare `dvc exp run`
    # run from `make test`, make's own variables would make the inner make print its directory: drop them
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    shown = subprocess.run(["make", "--no-print-directory", "-n", "repro", *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert " ".join(shown.strip().splitlines()[-1].split()).endswith(command) and "exp run" not in shown
