"""Hostile inputs and faults, each against the real stage process: one clear error line, a non-zero
exit, no traceback, and the previous good outputs untouched; interrupted work resumes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests import archives
from tests.project import run_stage, scratch_params, set_params, start_stage, wait_stage
from tests.servers import serve
from tests.splits import BAD_PREPARED, write_bad_prepared, write_prepared

ARCHIVE = "data/cifar-10-python.tar.gz"
GOOD = "good-archive-bytes"


PROGRESS = re.compile(r"\d+%\||B/s\]")  # a tqdm progress bar redraw, not a message


def error_lines(err: str) -> list[str]:
    # Progress bars are not messages; everything else on stderr is (TensorFlow's native start-up
    # notices never reach it: pipeline/lib/native_log.py).
    return [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.search(line)]


@pytest.fixture
def project(tmp_path):
    """A scratch project: params.yaml with tiny settings, and a good archive already in place."""
    scratch_params(tmp_path, **{"download.retries": 1, "download.timeout_s": 5, "models.sequential.epochs": 3})
    (tmp_path / "data").mkdir()
    (tmp_path / ARCHIVE).write_text(GOOD)
    return tmp_path


def assert_refused(project, command, message, untouched=ARCHIVE):
    """`python -m <command>` (a module and its arguments) exits with one line holding `message`."""
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and p.name != "params.yaml"}
    code, out, err = run_stage(project, *command.split())
    lines = error_lines(err)
    assert code != 0
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    after = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and p.name != "params.yaml"}
    assert after == before  # nothing new, nothing changed, the good archive intact
    assert (project / untouched).exists()


# ---------------------------------------------------------------- download: cases 1-4


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda good: good[: len(good) // 2], id="2-truncated-gzip"),
        pytest.param(lambda good: b"<html><body>503 Service Unavailable</body></html>", id="3-html-error-page"),
        pytest.param(lambda good: b"", id="4-empty-file"),
        pytest.param(lambda good: good + b"x", id="1-checksum-mismatch"),
    ],
)
def test_download_refuses_a_bad_archive_and_keeps_the_good_one(project, tiny_archive, content, tmp_path_factory):
    source, md5 = tiny_archive
    served = tmp_path_factory.mktemp("served")
    (served / "cifar-10-python.tar.gz").write_bytes(content(source.read_bytes()))
    with serve(served) as (url, _):
        set_params(project, **{"download.url": f"{url}/cifar-10-python.tar.gz", "download.md5": md5})
        assert_refused(project, "pipeline.stages.download", "md5 is ")
    assert (project / ARCHIVE).read_text() == GOOD


def test_dns_failure_gives_up_after_bounded_retries(project):
    set_params(project, **{"download.url": "http://cifar-mirror.invalid/cifar-10-python.tar.gz"})
    assert_refused(project, "pipeline.stages.download", "cannot download http://cifar-mirror.invalid/cifar-10-python.tar.gz after 2 attempts")


def test_interrupted_download_exits_promptly_then_resumes(project, tiny_archive):
    source, md5 = tiny_archive
    with serve(source.parent, trickle_s=0.05) as (url, server):
        set_params(project, **{"download.url": f"{url}/{source.name}", "download.md5": md5})
        proc = start_stage(project, "pipeline.stages.download")
        part = project / (ARCHIVE + ".part")
        deadline = time.time() + 60
        while not (part.exists() and part.stat().st_size > 0) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, _, err = wait_stage(proc, timeout=30)
    assert proc.returncode == 130
    assert error_lines(err) == ["pipeline.stages.download: interrupted; no output was replaced"]
    assert (project / ARCHIVE).read_text() == GOOD  # the previous good file is still in place
    have = part.stat().st_size
    assert 0 < have < source.stat().st_size
    with serve(source.parent) as (url, server):
        set_params(project, **{"download.url": f"{url}/{source.name}"})
        code, _, err = run_stage(project, "pipeline.stages.download")
    assert code == 0, err
    assert server.requests == [f"bytes={have}-"]
    assert (project / ARCHIVE).read_bytes() == source.read_bytes()


# ---------------------------------------------------------------- preprocess: cases 2-12


def _with(*extra: tarfile.TarInfo) -> bytes:
    return archives.tar_bytes(archives.official_members(), *extra)


def _replace(name, obj):
    members = archives.official_members()
    members[name] = archives.pickled(obj)
    return archives.tar_bytes(members)


def _without(name):
    members = archives.official_members()
    del members[name]
    return archives.tar_bytes(members)


def _hostile_archives(marker: Path):
    ok = archives.batch(40, seed=1)
    return {
        "2-truncated-gzip": (lambda: _with()[:5000], "not a readable .tar.gz archive"),
        "3-html-error-page": (lambda: b"<html>404 Not Found</html>", "not a readable .tar.gz archive"),
        "4-empty-file": (lambda: b"", "not a readable .tar.gz archive"),
        "5-dot-dot-member": (lambda: _with(archives.member("cifar-10-batches-py/../../x", size=1)), "unsafe path"),
        "6-absolute-member": (lambda: _with(archives.member("/tmp/x", size=1)), "unsafe path"),
        "7-symlink-member": (lambda: _with(archives.member("cifar-10-batches-py/l", tarfile.SYMTYPE, link="/etc/passwd")), "is a link"),
        "7-hardlink-member": (lambda: _with(archives.member("cifar-10-batches-py/h", tarfile.LNKTYPE, link="cifar-10-batches-py/test_batch")), "is a link"),
        "8-oversized-member": (lambda: archives.tar_bytes({**archives.official_members(), "data_batch_3": bytes(65 << 20)}), "more than the 67,108,864 any real batch needs"),
        "9-pickle-os-system": (lambda: _replace("data_batch_2", {b"data": archives.Calls(os.system, f"touch {marker}"), b"labels": []}), "global posix.system is not allowed"),
        "9-pickle-builtins-eval": (lambda: _replace("test_batch", {b"data": archives.Calls(eval, f"open({str(marker)!r}, 'w')"), b"labels": []}), "eval is not allowed"),
        "10-wrong-shape": (lambda: _replace("data_batch_1", {**ok, b"data": ok[b"data"][:, :1000]}), "data must be an N x 3072 uint8 array"),
        "10-wrong-dtype": (lambda: _replace("data_batch_1", {**ok, b"data": ok[b"data"].astype(np.int16)}), "got int16"),
        "11-label-out-of-range": (lambda: _replace("data_batch_4", {**ok, b"labels": [11] * 40}), "labels must be in 0..9"),
        "11-label-count-mismatch": (lambda: _replace("data_batch_4", {**ok, b"labels": [1] * 39}), "39 labels for 40 images"),
        "12-missing-test-batch": (lambda: _without("test_batch"), "missing member cifar-10-batches-py/test_batch"),
        "12-missing-meta": (lambda: _without("batches.meta"), "missing member cifar-10-batches-py/batches.meta"),
    }


CASES = list(_hostile_archives(Path("/unused")))


@pytest.mark.parametrize("case", CASES)
def test_preprocess_refuses_hostile_archives(project, case):
    marker = project / "code-ran"
    build, message = _hostile_archives(marker)[case]
    (project / ARCHIVE).write_bytes(build())
    prepared = project / "data" / "prepared"
    prepared.mkdir()
    (prepared / "train.npz").write_text("previous good arrays")
    (prepared / "test.npz").write_text("previous good arrays")
    assert_refused(project, "pipeline.stages.preprocess", message, untouched="data/prepared/train.npz")
    assert not marker.exists()  # the pickled code never ran
    assert (prepared / "train.npz").read_text() == "previous good arrays"


# ---------------------------------------------------------------- prepared data that must never train

# (bad split, the stage that reads it): each way the issue names, through the stage that would use it.
BAD_DATA_STAGES = [("fewer-labels", "pipeline.stages.train sequential"), ("label-10", "pipeline.stages.train parallel"),
                   ("float-labels", "pipeline.stages.evaluate sequential"), ("float-images", "pipeline.stages.train sequential"),
                   ("gray-images", "pipeline.stages.evaluate parallel"), ("0-bytes", "pipeline.stages.train parallel"),
                   ("truncated", "pipeline.stages.evaluate sequential")]


@pytest.mark.slow
def test_bad_prepared_data_never_trains_nor_scores(tmp_path):
    # One scratch project per case, all stage processes at once (each spends seconds importing TensorFlow).
    started = {}
    for case, command in BAD_DATA_STAGES:
        project = scratch_params(tmp_path / case)
        split = "train" if "train" in command else "test"
        write_prepared(project, 100, seed=1, split="test" if split == "train" else "train")
        write_bad_prepared(project, case, split)
        before = {p: p.read_bytes() if p.is_file() else None for p in project.rglob("*")}  # folders too
        started[case] = (project, split, before, start_stage(project, *command.split()))
    for case, (project, split, before, proc) in started.items():
        code, _, err = wait_stage(proc)
        lines = error_lines(err)
        assert code == 1 and len(lines) == 1 and "Traceback" not in err, (case, err)
        assert lines[0].startswith(f"pipeline.stages.{'train' if split == 'train' else 'evaluate'}: error: "
                                   f"data/prepared/{split}.npz: ") and BAD_PREPARED[case][1] in lines[0], (case, lines)
        assert {p: p.read_bytes() if p.is_file() else None for p in project.rglob("*")} == before, case  # nothing written


# ---------------------------------------------------------------- params: case 13


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"models.sequential.extra": 1}, "unknown key models.sequential.extra; allowed keys in models.sequential: epochs, max_accuracy_drop, evals_per_epoch, target_accuracy"),
        ({"train.batch_size": "big"}, "train.batch_size must be int"),
        ({"models.parallel.epochs": 0}, "models.parallel.epochs = 0 is invalid; allowed: >= 1"),
        ({"models.sequential.epochs": -1}, "models.sequential.epochs = -1 is invalid; allowed: >= 1"),
        ({"preprocess.normalize": "zscore"}, "allowed: raw | unit | standardize"),
        ({"download.url": "ftp://example.org/c.tar.gz"}, "allowed: a URL with scheme http | https | file"),
    ],
)
@pytest.mark.parametrize("module", ["pipeline.stages.download", "pipeline.stages.preprocess"])
def test_invalid_params_are_refused_before_any_work(project, changes, message, module):
    set_params(project, **changes)
    assert_refused(project, module, message)


# ---------------------------------------------------------------- training: interrupt and resume


@pytest.fixture
def prepared(project):
    write_prepared(project, 3000, seed=3)  # an epoch lasts a few seconds: the interrupt lands inside epoch 2
    write_prepared(project, 100, seed=4, split="test")  # the train stage's held-out curve scores these
    return project


def test_held_out_images_scaled_unlike_the_training_images_are_refused_before_training(prepared):
    write_prepared(prepared, 100, seed=4, split="test", normalize="raw")
    assert_refused(prepared, "pipeline.stages.train sequential",
                   "data/prepared/test.npz: normalize=raw, but data/prepared/train.npz has unit; rerun the preprocess stage")


@pytest.mark.parametrize("changes, message", [
    ({}, "collapse.train_limit = 10000 exceeds the 3000 images in data/prepared/train.npz"),
    ({"collapse.train_limit": 0}, "collapse.test_limit = 2000 exceeds the 100 images in data/prepared/test.npz"),
    ({"collapse.train_limit": 0, "collapse.test_limit": 0, "collapse.probe_images": 4000},
     "collapse.probe_images = 4000 exceeds the 3000 images in the training subset"),
])
def test_collapse_refuses_a_subset_larger_than_the_data(prepared, changes, message):
    write_prepared(prepared, 100, seed=4, split="test")
    set_params(prepared, **changes)
    assert_refused(prepared, "pipeline.stages.collapse", message)  # before any worker starts: no metrics, no plots


@pytest.mark.slow
def test_training_killed_after_its_first_epoch_resumes_to_the_same_weights(prepared, tmp_path_factory):
    import keras

    project = prepared
    reference = tmp_path_factory.mktemp("reference")
    shutil.copytree(project, reference, dirs_exist_ok=True)
    code, _, err = run_stage(reference, "pipeline.stages.train", "sequential")
    assert code == 0, err

    proc = start_stage(project, "pipeline.stages.train", "sequential")
    seen = []
    for line in proc.stdout:  # verbose=2: "Epoch 2/3" is printed once epoch 1 is checkpointed
        seen.append(line)
        if line.startswith("Epoch 2/3"):
            proc.send_signal(signal.SIGINT)
            break
    _, out, err = wait_stage(proc, timeout=120)
    assert proc.returncode == 130, "".join(seen) + out + err
    assert error_lines(err) == ["pipeline.stages.train: interrupted; no output was replaced"]
    assert not (project / "models").exists() and not (project / "metrics").exists()
    state = json.loads((project / "checkpoints" / "sequential" / "state.json").read_text())
    assert state["epochs_done"] == 1

    code, out, err = run_stage(project, "pipeline.stages.train", "sequential")
    assert code == 0, err
    assert "resuming after epoch 1" in out
    metrics = json.loads((project / "metrics" / "train-sequential.json").read_text())
    assert metrics["resumed_after_epoch"] == 1 and metrics["epochs"] == 3
    assert list((project / "checkpoints" / "sequential").iterdir()) == []  # cleared once done
    resumed = keras.saving.load_model(project / "models" / "sequential.keras").get_weights()
    uninterrupted = keras.saving.load_model(reference / "models" / "sequential.keras").get_weights()
    for a, b in zip(resumed, uninterrupted):
        assert np.array_equal(a, b)
    history = (project / "plots" / "train-sequential.csv").read_text().splitlines()
    assert len(history) == 4 and history[0].startswith("epoch,")


CLUSTER = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("backend, env, changes, message", [
    ("torch", {}, {"train.distribution": "data_parallel"},
     "train.distribution = data_parallel needs the tensorflow or jax backend"),
    ("tensorflow", {}, {"train.distribution": "data_parallel", "train.devices": 3},
     "train.batch_size = 100 does not split evenly across 3 replicas"),
    ("tensorflow", {"TF_CONFIG": CLUSTER}, {"train.distribution": "data_parallel"},
     "TF_CONFIG names a cluster, but Keras 3 cannot train under tf.distribute.MultiWorkerMirroredStrategy"),
    ("tensorflow", {"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}, {"train.distribution": "data_parallel"},
     "KERAS_DISTRIBUTION_NUM_PROCESSES > 1 (training across processes or hosts) needs KERAS_BACKEND=jax"),
])
def test_data_parallel_refuses_what_it_cannot_do(prepared, backend, env, changes, message, monkeypatch):
    if backend != "tensorflow":
        pytest.importorskip(backend, reason=f"the {backend} backend is optional (make backends)")
    for name, value in {"KERAS_BACKEND": backend, **env}.items():
        monkeypatch.setenv(name, value)
    set_params(prepared, **changes)
    assert_refused(prepared, "pipeline.stages.train sequential", message, untouched="data/prepared/train.npz")
