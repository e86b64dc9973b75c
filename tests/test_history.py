"""The history page (pipeline/history/) on a scratch git repository whose commits hold known metrics:
which commits become points, where lines break, what the detector marks, the markdown summary, and the
page itself in a real headless Chromium (Debian's package, which .ci/run installs)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.lib import params
from pipeline.history import command as history, detect as history_detect, read as history_read
from tests.project import ROOT, run, run_stage

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PATHS = params.load(ROOT / "params.yaml").paths


def train(model: str, images_per_s: float, **settings) -> dict:
    return {"model": model, "epochs": 3, "epochs_completed": 3, "train_images": 10000, "batch_size": 100,
            "learning_rate": 0.001, "loss": "crossentropy", "seed": 0, "normalize": "raw", "distribution": "none",
            "replicas": 1, "processes": 1, "time_limit_s": None, "backend": "tensorflow", "backend_version": "2.21.0",
            "keras_version": "3.15.1", "device_name": "AMD EPYC", "threads": 2,
            "train_images_per_s": images_per_s, "step_time_ms_median": 100_000 / images_per_s, "step_time_ms_iqr": 3.0,
            "target_accuracy": 0.25, "heldout_images": 2000, "evals_per_epoch": 4, "images_to_target": 25000,
            "seconds_to_target": 25_000 / images_per_s, **settings}


def evaluate(model: str, accuracy: float, images_per_s: float, **recorded) -> dict:
    return {"model": model, "test_accuracy": accuracy, "test_images": 2000, "inference_images_per_s": images_per_s,
            "backend": "tensorflow", "backend_version": "2.21.0", "keras_version": "3.15.1", "device_name": "AMD EPYC",
            "threads": 2, **recorded}


def lstm(ms: float) -> dict:
    core = {"cpu_generic": {"step_time_ms_median": ms, "step_time_ms_iqr": 1.0}}
    return {"batch_size": 100, "units": 50, "warmup_steps": 3, "rounds": 10, "backend": "tensorflow", "float32": True,
            "cpu_sgemm_n": 1024, "gpu_sgemm_n": 8192, "cpu_device_name": "AMD EPYC", "threads": 2,
            "backend_version": "2.21.0", "keras_version": "3.15.1", "sequential": core, "parallel": core}


# Commit by commit: (subject, sequential train images/s, sequential accuracy, sequential epochs or None
# for "metrics not rerun"). Parallel follows its own simple pattern (below).
SCRIPT = [
    ("run 1", 1000.0, 0.21, 3),
    ("run 2", 1030.0, 0.21, 3),
    ("docs only", None, None, None),        # metrics unchanged: no new point
    ("run 3", 980.0, 0.212, 3),
    ("run 4", 1010.0, 0.21, 3),
    ("slower code", 600.0, 0.21, 3),       # -40%: far beyond the 7% floor, marked
    ("run 6", 1000.0, 0.21, 10),           # new settings: a new line, judged against nothing
    ("run 7", 1020.0, 0.35, 10),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("history")
    run(["git", "init", "-q", "-b", "main"], where)
    run(["git", "config", "user.email", "t@example.org"], where)
    run(["git", "config", "user.name", "t"], where)
    shutil.copy(ROOT / "params.yaml", where / "params.yaml")
    for n, (subject, rate, accuracy, epochs) in enumerate(SCRIPT):
        if rate is not None:
            files = {PATHS.train_metrics("sequential"): train("sequential", rate, epochs=epochs, epochs_completed=epochs),
                     PATHS.evaluate_metrics("sequential"): evaluate("sequential", accuracy, 2500.0 + n),
                     PATHS.train_metrics("parallel"): train("parallel", 400.0 + n),
                     PATHS.evaluate_metrics("parallel"): evaluate("parallel", 0.228, 1000.0 + n),
                     PATHS.lstm_step_metrics: lstm(60.0 + n)}
            for path, data in files.items():
                (where / path).parent.mkdir(parents=True, exist_ok=True)
                (where / path).write_text(json.dumps(data))
        else:
            (where / "README.md").write_text(subject)
        run(["git", "add", "-A"], where)
        run(["git", "commit", "-qm", subject], where)
    return where


def test_read_commits_gives_each_first_parent_commits_files_exactly(tmp_path):
    git = lambda *args: run(["git", *args], tmp_path)  # noqa: E731
    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")

    def commit(subject, **files):
        for name, text in files.items():
            if text is None:
                (tmp_path / name).unlink()
            else:
                (tmp_path / name).write_text(text)
        git("add", "-A")
        git("commit", "-qm", subject)

    commit("one", **{"a.json": '{"x": 1}', "b.json": "two\nlines\n"})
    git("checkout", "-q", "-b", "side")
    commit("on the side", **{"c.json": "side"})
    git("checkout", "-q", "main")
    commit("two", **{"a.json": "", "b.json": None})
    git("merge", "-q", "--no-ff", "-m", "merge", "side")
    commits = history_read.read_commits("HEAD", ["a.json", "b.json", "never.json"], tmp_path)
    assert [c.subject for c in commits] == ["one", "two", "merge"]  # the side branch's commit is not on the line
    assert [c.files for c in commits] == [
        {"a.json": '{"x": 1}', "b.json": "two\nlines\n", "never.json": None},
        {"a.json": "", "b.json": None, "never.json": None},
        {"a.json": "", "b.json": None, "never.json": None}]
    assert all(len(c.sha) == 40 and c.date.startswith("20") and "T" in c.date for c in commits)


@pytest.fixture(scope="module")
def analysed(repo):
    files = [str(PATHS.train_metrics("sequential")), str(PATHS.evaluate_metrics("sequential")),
             str(PATHS.train_metrics("parallel")), str(PATHS.evaluate_metrics("parallel")), str(PATHS.lstm_step_metrics),
             "dvc.lock"]
    commits = history_read.read_commits("HEAD", files, repo)
    return commits, history_detect.analyse(commits, PATHS)


def test_points_are_new_runs_and_lines_break_where_settings_change(analysed):
    commits, grouped = analysed
    assert [c.subject for c in commits] == [s for s, *_ in SCRIPT]
    segments = grouped[("train_images_per_s", "sequential")]
    assert [[p.subject for p in s] for s in segments] == [
        ["run 1", "run 2", "run 3", "run 4", "slower code"], ["run 6", "run 7"]]
    # The parallel model's settings never changed: one line, one point per rerun (the docs commit adds none).
    assert [len(s) for s in grouped[("train_images_per_s", "parallel")]] == [7]


def test_the_detector_marks_the_slowdown_and_nothing_else(analysed):
    _, grouped = analysed
    marked = {(m, model, p.subject) for (m, model), segments in grouped.items() for s in segments for p in s if p.changed}
    # 600 images/s is -40% (throughput) and +67% (step time) against runs within 3% of 1,000.
    assert marked == {("train_images_per_s", "sequential", "slower code"), ("step_time_ms", "sequential", "slower code"),
                      ("seconds_to_target", "sequential", "slower code")}  # the same images to target, slower
    slow = grouped[("train_images_per_s", "sequential")][0][-1]
    assert slow.baseline == pytest.approx(1005.0) and slow.z < -history_detect.Z_THRESHOLD
    # The second line starts over: its first run has no earlier runs of its settings to be judged against.
    assert grouped[("test_accuracy", "sequential")][1][-1].z is None


def test_a_new_data_source_in_dvc_lock_starts_a_new_line_and_a_broken_lock_does_not_crash():
    def commit(n, md5, lock=None):
        lock = lock if lock is not None else f"stages:\n  download:\n    params:\n      params.yaml:\n        download.md5: {md5}\n"
        files = {str(PATHS.train_metrics("sequential")): json.dumps(train("sequential", 1000.0 + n)), "dvc.lock": lock}
        return history_read.Commit(f"{n:040d}", f"c{n}", "", files)

    commits = [commit(0, "a" * 32), commit(1, "a" * 32), commit(2, "b" * 32), commit(3, "b" * 32, lock="- not\n- a mapping\n"),
               commit(4, "b" * 32, lock="stages: [1, 2]\n"), commit(5, "b" * 32, lock=": not yaml :\n  - [")]
    segments = history_detect.analyse(commits, PATHS)[("train_images_per_s", "sequential")]
    assert [[p.subject for p in s] for s in segments] == [["c0", "c1"], ["c2"], ["c3", "c4"], ["c5"]]
    assert "download.md5" in history_detect.settings_change(segments[0][-1].settings, segments[1][0].settings)


def test_the_data_settings_are_the_archive_and_the_preprocess_params_and_nothing_of_the_mirror():
    lock = yaml.safe_dump({"stages": {
        "download": {"params": {"params.yaml": {"download.md5": "a" * 32, "download.url": "file:///x",
                                                "download.retries": 3, "download.timeout_s": 60}}},
        "preprocess": {"params": {"params.yaml": {"preprocess.train_images": 10000,
                                                  "preprocess.split": {"b": 2, "a": 1}},
                                  "other.yaml": ["not", "a", "mapping"]}},
        "train@sequential": {"params": {"params.yaml": {"train.seed": 0}}}}}, sort_keys=False)
    assert lock.index("b: 2") < lock.index("a: 1")  # a value's keys in another order than sorted: the same setting
    assert history_read._data_settings(lock) == (("download.md5", json.dumps("a" * 32)), ("preprocess.split", '{"a": 1, "b": 2}'),
                                            ("preprocess.train_images", "10000"))
    assert history_read._data_settings(": not yaml :\n  - [") == (("dvc.lock", "unreadable"),)
    assert history_read._data_settings(None) == history_read._data_settings("") == ()


def test_a_settings_change_names_each_changed_key_once_in_order():
    before, after = (("a", "1"), ("b", "2"), ("d", "5")), (("b", "3"), ("c", "4"), ("d", "5"))
    assert history_detect.settings_change(before, after) == "a 1 -> -, b 2 -> 3, c - -> 4"


@pytest.mark.parametrize("data, value", [({"m": {"x": 1.5}}, 1.5), ({"m": 5}, None), ({"m": {"x": "1.5"}}, None),
                                         ({"m": {"x": float("nan")}}, None), ({"m": {"x": True}}, None),
                                         ({"m": {"x": 7}}, 7)])
def test_a_measure_is_a_finite_number_under_the_models_key_or_nothing(data, value):
    assert history_read._dig(data, ("{model}", "x"), "m") == value


def _changed(measure, index, value, baseline, z, subject="s", changed=True):
    point = history_read.Point(measure, "sequential", index, f"{index:x}" * 40, subject, "", value, None, (), 2000)
    point.baseline, point.z, point.changed = baseline, z, changed
    return point


def test_the_summary_word_for_word():
    grouped = {("train_images_per_s", "sequential"): [[_changed("train_images_per_s", 3, 10.0, 100.0, -9.0),
                                                       _changed("train_images_per_s", 4, 50.0, 100.0, -7.1, "a | b" + "x" * 70)]],
               ("test_accuracy", "sequential"): [[_changed("test_accuracy", 5, 0.5, 0.0, 22.4, "up"),
                                                  _changed("test_accuracy", 6, 0.2, 0.5, 1.0, "unmarked", changed=False)],
                                                 [_changed("test_accuracy", 7, 0.2, 0.5, -9.0, "down")]]}
    # changes after commit 3 only (the --since commit's own change is not listed); a zero baseline shows
    # the change as a difference, not a ratio
    assert history_detect.summary(grouped, 3) == (
        "Detected changes (lookback z-score, |z| > 3):\n\n"
        "| commit | subject | model | measure | before (mean) | after | change | z | direction |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| 4444444 | a / b" + "x" * 55 + " | sequential | Training throughput | 100 | 50 | -50.0% | -7.1 | worse |\n"
        "| 5555555 | up | sequential | Test accuracy | 0 | 0.5 | +0.5 | +22.4 | better |\n"
        "| 7777777 | down | sequential | Test accuracy | 0.5 | 0.2 | -60.0% | -9.0 | worse |\n")
    assert history_detect.summary(grouped, 7) == "No change detected in the benchmark history.\n"


def test_a_metrics_file_that_is_no_object_counts_as_empty():
    assert history_read._load(None) == history_read._load("") == history_read._load("[1, 2]") == history_read._load("not json") == {}
    assert history_read._load('{"epochs": 3}') == {"epochs": 3}


def test_points_read_every_measure_with_its_spread_settings_and_machine():
    t, e, lstm_file = str(PATHS.train_metrics("sequential")), str(PATHS.evaluate_metrics("sequential")), str(PATHS.lstm_step_metrics)

    def lock(md5):
        return f"stages:\n  download:\n    params:\n      params.yaml:\n        download.md5: {md5}\n"

    def without(data, *keys):
        return json.dumps({k: v for k, v in data.items() if k not in keys})

    bare = without(evaluate("sequential", 0.32, 900.0), "device_name", "threads", "backend", "backend_version")
    no_rate = without(train("sequential", 1000.0, epochs=5), "train_images_per_s")
    no_accuracy = without(evaluate("sequential", 0.3, 950.0), "test_accuracy")
    files = [  # commit by commit: a point only where a file changed and holds the measure
        {t: json.dumps(train("sequential", 1000.0)), e: json.dumps(evaluate("sequential", 0.31, 1000.0)),
         lstm_file: json.dumps(lstm(60.0)), "dvc.lock": lock("a" * 32)},
        {t: json.dumps(train("sequential", 1000.0)), e: bare, lstm_file: "{not json", "dvc.lock": lock("a" * 32)},
        {t: no_rate, e: no_accuracy, lstm_file: json.dumps(lstm(61.0)), "dvc.lock": lock("a" * 32)},
        {t: no_rate, e: "[1, 2]", lstm_file: json.dumps(lstm(61.0)), "dvc.lock": lock("b" * 32)},
        {t: no_rate, e: "[1, 2]", lstm_file: None, "dvc.lock": lock("b" * 32)},
        {t: no_rate, e: json.dumps(evaluate("sequential", 0.33, 960.0, test_images=2000.0)), lstm_file: None,
         "dvc.lock": lock("b" * 32)},
    ]
    found = history_read.points([history_read.Commit(f"{i:040d}", f"c{i}", "", f) for i, f in enumerate(files)], PATHS)
    amd, unknown = "AMD EPYC, 2 threads, tensorflow 2.21.0", "?, ? threads, ? "
    assert [(p.measure, p.model, p.index, p.value, p.spread, p.machine, p.noise_n) for p in found] == [
        ("test_accuracy", "sequential", 0, 0.31, None, amd, 2000),
        ("test_accuracy", "sequential", 1, 0.32, None, unknown, 2000),
        ("test_accuracy", "sequential", 5, 0.33, None, amd, None),  # a count of images that is no integer: no floor
        ("train_images_per_s", "sequential", 0, 1000.0, None, amd, None),
        ("step_time_ms", "sequential", 0, 100.0, 3.0, amd, None),
        ("step_time_ms", "sequential", 2, 100.0, 3.0, amd, None),
        ("lstm_core_ms", "sequential", 0, 60.0, 1.0, amd, None),
        ("lstm_core_ms", "sequential", 2, 61.0, 1.0, amd, None),
        ("lstm_core_ms", "parallel", 0, 60.0, 1.0, amd, None),
        ("lstm_core_ms", "parallel", 2, 61.0, 1.0, amd, None),
        ("inference_images_per_s", "sequential", 0, 1000.0, None, amd, 2000),
        ("inference_images_per_s", "sequential", 1, 900.0, None, unknown, 2000),
        ("inference_images_per_s", "sequential", 2, 950.0, None, amd, 2000),
        ("inference_images_per_s", "sequential", 5, 960.0, None, amd, None),
        ("images_to_target", "sequential", 0, 25000.0, None, amd, None),
        ("images_to_target", "sequential", 2, 25000.0, None, amd, None),
        ("seconds_to_target", "sequential", 0, 25.0, None, amd, None),
        ("seconds_to_target", "sequential", 2, 25.0, None, amd, None)]
    settings = {(p.measure, p.index): dict(p.settings) for p in found}
    environment = {"device_name": '"AMD EPYC"', "threads": "2", "backend_version": '"2.21.0"',
                   "keras_version": '"3.15.1"'}
    trained = {"model": '"sequential"', "epochs": "3", "epochs_completed": "3", "train_images": "10000", "batch_size": "100",
               "learning_rate": "0.001", "loss": '"crossentropy"', "seed": "0", "normalize": '"raw"', "distribution": '"none"',
               "replicas": "1", "processes": "1", "time_limit_s": "null", "backend": '"tensorflow"'}
    data = {"download.md5": json.dumps("a" * 32)}
    assert settings[("train_images_per_s", 0)] == {**trained, **environment, **data}
    # time to target is also keyed by the target and the held-out images it was scored on
    assert settings[("images_to_target", 0)] == {**trained, **environment, "target_accuracy": "0.25",
                                                 "heldout_images": "2000", "evals_per_epoch": "4", **data}
    # accuracy is judged with how its model was trained: the train file of the same commit
    assert settings[("test_accuracy", 0)] == {"model": '"sequential"', "test_images": "2000", "backend": '"tensorflow"',
                                              **environment, **{f"train.{k}": v for k, v in trained.items()}, **data}
    assert settings[("inference_images_per_s", 2)]["train.epochs"] == "5"
    # the LSTM core's step does not depend on the data
    assert settings[("lstm_core_ms", 0)] == {"batch_size": "100", "units": "50", "warmup_steps": "3", "rounds": "10",
                                             "backend": '"tensorflow"', "float32": "true", "cpu_sgemm_n": "1024",
                                             "gpu_sgemm_n": "8192", **{k: v for k, v in environment.items() if k != "device_name"},
                                             "cpu_device_name": '"AMD EPYC"'}


def test_the_accuracy_floor_is_the_binomial_standard_error():
    measure = next(m for m in history_read.MEASURES if m.key == "test_accuracy")
    assert history_detect.noise_floor(measure, 0.5, 2000) == pytest.approx((0.25 / 2000) ** 0.5)
    # Identical accuracies give a window std of 0; a 1-point move on 2,000 images is within noise.
    series = [history_read.Point("test_accuracy", "m", i, "", "", "", v, None, (), 2000) for i, v in enumerate([0.30, 0.30, 0.30, 0.31])]
    history_detect.detect(series, measure)
    assert not series[-1].changed and 0 < series[-1].z < history_detect.Z_THRESHOLD


MEASURE = {m.key: m for m in history_read.MEASURES}


def _judged(values, measure="train_images_per_s", noise_n=None):
    """The last point of a line of `values`, after the detector has judged the line."""
    series = [history_read.Point(measure, "m", i, "", "", "", v, None, (), noise_n) for i, v in enumerate(values)]
    history_detect.detect(series, MEASURE[measure])
    return series[-1]


# A flat window of 100: its sample std is 0, so sigma is the 7% floor (7.0) and z = (value - 100) / 7.
@pytest.mark.parametrize("value, changed", [(100 + 0.99 * 21, False), (100 + 1.01 * 21, True),
                                            (100 - 0.99 * 21, False), (100 - 1.01 * 21, True)])
def test_the_z_threshold_and_the_noise_floor_are_where_the_docs_say(value, changed):
    point = _judged([100.0] * 8 + [value])
    assert point.baseline == 100.0 and point.z == pytest.approx((value - 100) / 7.0)
    assert point.changed is changed
    # within 1% of the line on either side: a threshold of 2.97 or 3.03, or a floor of 6.93% or 7.07%, flips one
    assert abs(abs(point.z) - history_detect.Z_THRESHOLD) < 0.04


@pytest.mark.parametrize("value, changed", [(100 + 0.99 * 30, False), (100 + 1.01 * 30, True)])
def test_a_window_noisier_than_the_floor_is_judged_by_its_own_spread(value, changed):
    window = [90.0, 110.0] * 4  # sample std 10.69 > the 7.0 floor
    sigma = float(np.std(window, ddof=1))
    point = _judged(window + [100 + (value - 100) * sigma / 10])
    assert point.z == pytest.approx((value - 100) / 10) and point.changed is changed


@pytest.mark.parametrize("delta, changed", [(0.99, False), (1.01, True)])
def test_the_accuracy_floor_is_the_line_for_test_accuracy(delta, changed):
    se = (0.3 * 0.7 / 2000) ** 0.5  # 0.01025: a flat window of 0.30 on 2,000 images
    point = _judged([0.30] * 4 + [0.30 - delta * 3 * se], "test_accuracy", noise_n=2000)
    assert point.z == pytest.approx(-3 * delta) and point.changed is changed


def test_a_point_exactly_on_the_threshold_is_not_a_change():
    # a window of mean 100 and sample std 20 (above the 7.0 floor), exact in floats: z = (value - 100) / 20
    for value in (160.0, 40.0):
        point = _judged([80.0, 120.0, 80.0, 120.0, 100.0] + [value])
        assert abs(point.z) == history_detect.Z_THRESHOLD and not point.changed


def test_a_flat_line_of_zeros_has_no_spread_and_no_change():
    # the time floor is 7% of 0: sigma 0, so z is 0 rather than a division by zero
    point = _judged([0.0] * 4 + [0.0])
    assert point.z == 0.0 and point.changed is False


def test_the_accuracy_floor_at_the_ends_and_without_a_test_set_size():
    measure = MEASURE["test_accuracy"]
    # an accuracy of 1 (or 0) is clamped to 0.999 (0.001): the floor never collapses to 0
    assert history_detect.noise_floor(measure, 1.0, 2000) == pytest.approx((0.999 * 0.001 / 2000) ** 0.5)
    assert history_detect.noise_floor(measure, 0.0, 2000) == pytest.approx((0.999 * 0.001 / 2000) ** 0.5)
    # no test-set size recorded (or 0, or 1): the standard error of one image
    for n in (None, 0, 1):
        assert history_detect.noise_floor(measure, 0.5, n) == pytest.approx(0.5)
    # a line of perfect accuracies still sees a drop of 1 point on 2,000 images (z = -0.01 / 0.000707)
    assert _judged([1.0] * 4 + [0.99], "test_accuracy", noise_n=2000).changed


def test_the_window_is_the_last_lookback_runs_and_needs_min_lookback():
    assert _judged([100.0]).z is None
    assert _judged([100.0] * history_detect.MIN_LOOKBACK + [200.0]).changed
    one_short = [100.0] * (history_detect.MIN_LOOKBACK - 1)
    assert _judged(one_short + [200.0]).z is None
    # a run older than LOOKBACK runs back no longer counts: 1000 then LOOKBACK runs of 100
    point = _judged([1000.0] + [100.0] * history_detect.LOOKBACK + [100.0])
    assert point.baseline == 100.0 and point.z == 0.0
    point = _judged([1000.0] + [100.0] * (history_detect.LOOKBACK - 1) + [100.0])
    assert point.baseline == pytest.approx((1000 + 100 * (history_detect.LOOKBACK - 1)) / history_detect.LOOKBACK)


def test_summary_lists_the_change_and_since_limits_it(analysed):
    _, grouped = analysed
    text = history_detect.summary(grouped, -1)
    assert "-40.3%" in text and "worse" in text and text.count("slower code") == 3
    assert history_detect.summary(grouped, len(SCRIPT) - 1) == "No change detected in the benchmark history.\n"


@pytest.mark.parametrize("args", [["--since=--output=written"], ["--rev=--output=written"], ["--since", "-1"]])
def test_a_revision_that_git_would_read_as_an_option_is_refused(repo, in_process, args):
    code, _, err = in_process(repo, history, "--out", "page.html", *args)
    option, value = args[0].split("=", 1) if "=" in args[0] else args
    assert code == 2 and err == (f"pipeline.history: error: {option} {value!r}: not a revision (a revision never "
                                 "starts with '-' and is not empty)\n")
    assert not (repo / "written").exists() and not (repo / "page.html").exists()


def test_the_stage_writes_the_page_and_refuses_a_foreign_since(repo, analysed, in_process):
    code, out, err = in_process(repo, history, "--out", "history.html", "--summary", "summary.md")
    assert code == 0, err
    runs = sum(len(s) for segments in analysed[1].values() for s in segments)
    assert runs == len(history_read.MEASURES) * 2 * 7  # every measure of both models at the seven commits that ran
    assert out.endswith(f"history: 8 commits, {runs} runs -> history.html\n") and (repo / "summary.md").read_text() in out
    assert (repo / "history.html").stat().st_size > 1_000_000  # plotly.js inlined: the page works offline
    # A commit of this repository that is not on the drawn line: a sibling of HEAD.
    side = run(["git", "commit-tree", "HEAD^{tree}", "-p", "HEAD~1", "-m", "side"], repo).strip()
    code, _, err = in_process(repo, history, "--out", "h.html", "--since", side)
    assert code == 1 and err == f"pipeline.history: error: --since {side}: not on the first-parent line of HEAD\n"
    code, _, err = in_process(repo, history, "--out", "h.html", "--since", "no-such-rev")
    assert code == 1 and err.count("\n") == 1 and "git rev-parse" in err
    assert not (repo / "h.html").exists()
    # by default the page goes to reports/history.html
    assert in_process(repo, history)[0] == 0 and (repo / "reports" / "history.html").stat().st_size > 1_000_000


def test_since_lists_only_the_changes_after_it_and_the_summary_file_holds_what_is_printed(repo, analysed, in_process):
    commits, _ = analysed
    changed = [c.sha for c in commits if c.subject == "slower code"]
    code, out, _ = in_process(repo, history, "--out", "a.html", "--summary", "a.md", "--since", commits[0].sha)
    assert code == 0 and out.startswith("Detected changes") and changed[0][:7] in out
    assert out == (repo / "a.md").read_text() + f"history: 8 commits, {out.split(' runs -> ')[0].split()[-1]} runs -> a.html\n"
    code, out, _ = in_process(repo, history, "--out", "b.html", "--since", "HEAD")
    assert code == 0 and out.startswith("No change detected in the benchmark history.\n") and not (repo / "b.md").exists()
    code, out, _ = in_process(repo, history, "--out", "c.html", "--rev", "HEAD~1")
    assert code == 0 and "history: 7 commits" in out and "Benchmark history of HEAD~1" in (repo / "c.html").read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs Debian's chromium package)")
def test_the_page_in_headless_chromium(repo, tmp_path):
    from playwright.sync_api import sync_playwright

    code, _, err = run_stage(repo, "pipeline.history", "--out", "history.html")
    assert code == 0, err
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((repo / "history.html").as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5")
        drawn = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map(gd => [
            gd.id,
            {runs: gd.data.filter(t => t.meta.role === 'runs').reduce((n, t) => n + t.x.length, 0),
             changes: gd.data.filter(t => t.meta.role === 'changes').reduce((n, t) => n + t.x.length, 0),
             markers: gd.querySelectorAll('.scatterlayer .trace .points path').length}]))""")
        screenshot = tmp_path / "history.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert errors == []
    # Sequential: 7 runs (the docs commit adds none); parallel: 7. The detector's crosses are extra markers.
    changes = {"chart-train_images_per_s": 1, "chart-step_time_ms": 1, "chart-seconds_to_target": 1}
    assert set(drawn) == {f"chart-{m.key}" for m in history_read.MEASURES}
    for chart, seen in drawn.items():
        assert seen["runs"] == 14 and seen["changes"] == changes.get(chart, 0), (chart, seen)
        assert seen["markers"] == seen["runs"] + seen["changes"], (chart, seen)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    print(f"screenshot: {screenshot}")


def test_the_stage_reads_dvc_lock_so_a_new_data_source_starts_a_new_line(tmp_path, in_process):
    for cmd in (["init", "-q"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        run(["git", *cmd], tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    metrics = tmp_path / PATHS.train_metrics("sequential")
    metrics.parent.mkdir(parents=True)
    for n, md5 in enumerate(["a" * 32, "a" * 32, "b" * 32]):
        metrics.write_text(json.dumps(train("sequential", 1000.0 + n)))
        (tmp_path / "dvc.lock").write_text(f"stages:\n  download:\n    params:\n      params.yaml:\n        download.md5: {md5}\n")
        run(["git", "add", "-A"], tmp_path)
        run(["git", "commit", "-qm", f"c{n}"], tmp_path)
    head = run(["git", "rev-parse", "--short=7", "HEAD"], tmp_path).strip()
    assert in_process(tmp_path, history, "--out", "h.html")[0] == 0
    assert f"new settings at {head} (download.md5 &quot;{'a' * 32}&quot; -&gt; &quot;{'b' * 32}&quot;)" in (tmp_path / "h.html").read_text()


def test_a_file_name_given_as_the_revision_is_refused(repo, in_process):
    # git log would read a file name after the revision as a path, and draw that file's history
    code, out, err = in_process(repo, history, "--out", "f.html", "--rev", "params.yaml")
    assert (code, out) == (1, "") and err.count("\n") == 1 and "bad revision 'params.yaml'" in err
    assert not (repo / "f.html").exists()


def test_a_train_record_from_before_a_setting_existed_stays_on_its_line():
    # An older writer left out the loss, the processes and the time limit: read as what it implied
    # (metrics.IMPLIED), the run joins the line of a later, complete record with the same settings.
    t, e = str(PATHS.train_metrics("sequential")), str(PATHS.evaluate_metrics("sequential"))
    older = {k: v for k, v in train("sequential", 1000.0).items() if k not in ("loss", "processes", "time_limit_s")}
    files = [{t: json.dumps(older), e: json.dumps(evaluate("sequential", 0.31, 1000.0))},
             {t: json.dumps(train("sequential", 990.0)), e: json.dumps(evaluate("sequential", 0.32, 990.0))}]
    found = history_read.points([history_read.Commit(f"{i:040d}", f"c{i}", "", f) for i, f in enumerate(files)], PATHS)
    for measure in ("train_images_per_s", "test_accuracy"):
        first, second = (dict(p.settings) for p in found if p.measure == measure)
        assert first == second, measure
        assert first.get("loss", first.get("train.loss")) == '"crossentropy"'


def test_a_run_that_never_reached_its_target_is_drawn_at_what_it_trained_not_left_out():
    t = str(PATHS.train_metrics("sequential"))
    missed = train("sequential", 1000.0, images_to_target=None, seconds_to_target=None, target_reached=False,
                   train_seconds=31.5)
    files = [{t: json.dumps(train("sequential", 1000.0, target_reached=True))}, {t: json.dumps(missed)}]
    found = history_read.points([history_read.Commit(f"{i:040d}", f"c{i}", "", f) for i, f in enumerate(files)], PATHS)
    timed = [(p.measure, p.index, p.value, p.unreached) for p in found if p.measure.endswith("_to_target")]
    assert timed == [("images_to_target", 0, 25000.0, False), ("images_to_target", 1, 30000.0, True),
                     ("seconds_to_target", 0, 25.0, False), ("seconds_to_target", 1, 31.5, True)]
    # a record that says nothing of its target (an older writer) draws no point
    silent = train("sequential", 1000.0, images_to_target=None, seconds_to_target=None)
    found = history_read.points([history_read.Commit("0" * 40, "c", "", {t: json.dumps(silent)})], PATHS)
    assert not [p for p in found if p.measure.endswith("_to_target")]
