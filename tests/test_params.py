import copy

import pytest
import yaml

from pipeline import profiles

from pipeline.lib import params
from pipeline.lib.params import PipelineError


@pytest.fixture
def raw(root):
    return yaml.safe_load((root / "params.yaml").read_text())


def test_committed_params_are_the_official_source_and_the_benchmark_profile(root):
    p = params.load(root / "params.yaml")
    assert p.download.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert p.download.md5 == "c58f30108f718f92721af3b95e74349a"
    assert (p.preprocess.normalize, p.preprocess.train_limit, p.preprocess.test_limit) == ("raw", 10_000, 2_000)
    assert (p.train.batch_size, p.train.learning_rate) == (100, 0.001)
    tutorial = {m: (p.models[m].epochs, p.models[m].max_accuracy_drop) for m in ("sequential", "parallel")}
    assert tutorial == {"sequential": (10, 0.03), "parallel": (3, 0.03)}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["train"].update(epochs=3), "unknown key train.epochs"),
        (lambda d: d.update(extra={}), "unknown key extra"),
        (lambda d: d["models"]["parallel"].update(epochs=0), "models.parallel.epochs = 0 is invalid; allowed: >= 1"),
        (lambda d: d["models"]["sequential"].update(epochs=-2), "models.sequential.epochs = -2 is invalid"),
        (lambda d: d["train"].update(batch_size="100"), "train.batch_size must be int, got str"),
        (lambda d: d["train"].update(seed=True), "train.seed must be int, got bool"),
        (lambda d: d["preprocess"].update(normalize="minmax"), "allowed: raw | unit | standardize"),
        (lambda d: d["preprocess"].update(train_limit=15), "0 (all) or a positive multiple of 10"),
        (lambda d: d["download"].update(url="ftp://example.org/x.tar.gz"), "scheme http | https | file"),
        (lambda d: d["download"].update(md5="abc"), "download.md5 = 'abc' is invalid"),
        (lambda d: d["download"].pop("md5"), "missing key download.md5"),
        (lambda d: d.update(train=[1, 2]), "train must be a mapping"),
        (lambda d: d["models"].update(gru={"epochs": 1, "max_accuracy_drop": 0.03}),
         "unknown model models.gru; the models of pipeline/lib/registry.py: sequential, parallel"),
        (lambda d: d["models"].pop("parallel"),
         "missing key models.parallel (every model of pipeline/lib/registry.py needs one)"),
        (lambda d: d.update(models=["sequential", "parallel"]), "models must be a mapping of model names, got list"),
        (lambda d: d["models"]["sequential"].pop("max_accuracy_drop"), "missing key models.sequential.max_accuracy_drop"),
        (lambda d: d["models"]["parallel"].update(max_accuracy_drop=1.5),
         "models.parallel.max_accuracy_drop = 1.5 is invalid; allowed: 0 .. 1 (absolute test accuracy)"),
    ],
)
def test_invalid_params_are_refused_naming_the_key(raw, edit, message):
    bad = copy.deepcopy(raw)
    edit(bad)
    with pytest.raises(PipelineError, match=None) as info:
        params.parse(bad, "params.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("params.yaml: ")


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(PipelineError, match="cannot read params"):
        params.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        params.load(broken)


@pytest.mark.parametrize("edit, key", [
    (lambda text: text.replace("  seed: 0\n  batch_size", "  seed: 0\n  seed: 1\n  batch_size"), "train.seed"),
    (lambda text: text + "gate:\n  max_slowdown: 0.5\n", "gate"),
    (lambda text: text.replace("    epochs: 3\n", "    epochs: 3\n    epochs: 4\n"), "models.parallel.epochs"),
])
def test_a_key_given_twice_is_refused_naming_it(root, tmp_path, edit, key):
    # YAML itself would keep the last value silently
    path = tmp_path / "params.yaml"
    path.write_text(edit((root / "params.yaml").read_text()))
    with pytest.raises(PipelineError) as info:
        params.load(path)
    assert str(info.value).startswith(f"{path}: duplicate key {key} (line ") and "\n" not in str(info.value)


def test_a_profile_overrides_only_keys_that_exist(raw):
    assert profiles.apply(raw, {"models.parallel.epochs": 7})["models"]["parallel"]["epochs"] == 7
    assert raw["models"]["parallel"]["epochs"] == 3  # the input is left alone
    with pytest.raises(PipelineError, match="params.yaml has no key train.paralel.epochs to override"):
        profiles.apply(raw, {"train.paralel.epochs": 7})


def test_the_collapse_study_takes_only_a_model_with_an_lstm_core(raw, monkeypatch):
    import dataclasses

    from pipeline.lib import registry

    coreless = dataclasses.replace(registry.MODELS["sequential"], name="coreless", lstm_core=None)
    monkeypatch.setattr(registry, "MODELS", {**registry.MODELS, "coreless": coreless})  # swapped, not edited
    edited = copy.deepcopy(raw)
    edited["models"]["coreless"] = dict(edited["models"]["sequential"])
    assert params.parse(copy.deepcopy(edited)).collapse.model == "parallel"
    edited["collapse"]["model"] = "coreless"
    with pytest.raises(PipelineError, match="collapse.model = 'coreless' is invalid; allowed: a model of "
                                            "pipeline/lib/registry.py with an LSTM core"):
        params.parse(edited)
