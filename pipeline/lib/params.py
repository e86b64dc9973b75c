"""Read params.yaml once, at the edge, into one frozen dataclass per section.

Every stage calls `load()` before doing any work. An unknown key, a missing key, a wrong type or an
impossible value raises `PipelineError` with one line that names the file, the key and what is allowed.
Core functions take the plain values out of these dataclasses, never the file.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from urllib.parse import urlparse

import yaml

from pipeline.lib import registry

PARAMS_FILE = Path("params.yaml")
# The one list of each set of names (the models' is pipeline/lib/registry.py's). pipeline/lib/models.py maps LOSSES
# to code (tests/test_models.py checks that the map covers exactly these).
NORMALIZE_MODES = ("raw", "unit", "standardize")
LOSSES = ("crossentropy", "clipped_crossentropy")
DISTRIBUTIONS = ("none", "data_parallel")
URL_SCHEMES = ("http", "https", "file")
# The collapse study's arms: the same model code under Keras 3 and under Keras 2 (tf_keras).
COLLAPSE_ARMS = ("keras3", "keras2")
# Chance on CIFAR-10 is 0.10; the tutorial's failed run scored 0.10000001. Every run that learned
# anything scored far above 0.15 (docs/findings.md), so "collapsed" is a final test accuracy below it.
COLLAPSED_BELOW = 0.15


class PipelineError(Exception):
    """A failure the user can fix. Stages print it as one line and exit non-zero."""


def _check(test, allowed):
    """Field metadata: `test(value)` must hold; `allowed` is how the error line describes it."""
    return {"test": test, "allowed": allowed}


def _one_of(names):
    return _check(lambda v: v in names, " | ".join(names))


# A class-balanced subset needs the same count of every one of the 10 classes.
_SUBSET_LIMIT = _check(lambda n: n >= 0 and n % 10 == 0, "0 (all) or a positive multiple of 10")


def positive(value):
    return value > 0


def non_negative(value):
    return value >= 0


@dataclasses.dataclass(frozen=True)
class Paths:
    archive: str
    prepared_dir: str
    models_dir: str
    metrics_dir: str
    plots_dir: str
    checkpoints_dir: str

    @property
    def train_arrays(self) -> Path:
        return Path(self.prepared_dir) / "train.npz"

    @property
    def test_arrays(self) -> Path:
        return Path(self.prepared_dir) / "test.npz"

    def model(self, name: str) -> Path:
        return Path(self.models_dir) / f"{name}.keras"

    def checkpoint(self, name: str) -> Path:
        return Path(self.checkpoints_dir) / name

    def train_metrics(self, name: str) -> Path:
        return Path(self.metrics_dir) / f"train-{name}.json"

    def train_history(self, name: str) -> Path:
        return Path(self.plots_dir) / f"train-{name}.csv"

    def heldout_curve(self, name: str) -> Path:
        return Path(self.plots_dir) / f"heldout-{name}.csv"

    def confusion(self, name: str) -> Path:
        return Path(self.plots_dir) / f"confusion-{name}.csv"

    def evaluate_metrics(self, name: str) -> Path:
        return Path(self.metrics_dir) / f"evaluate-{name}.json"

    @property
    def collapse_metrics(self) -> Path:
        return Path(self.metrics_dir) / "collapse.json"

    @property
    def collapse_plots_dir(self) -> Path:
        return Path(self.plots_dir) / "collapse"

    def collapse_plot(self, arm: str, seed: int) -> Path:
        return self.collapse_plots_dir / f"{arm}-seed{seed}.csv"

    @property
    def lstm_step_metrics(self) -> Path:
        return Path(self.metrics_dir) / "lstm-step.json"


@dataclasses.dataclass(frozen=True)
class Download:
    url: str = dataclasses.field(
        metadata=_check(lambda u: urlparse(u).scheme in URL_SCHEMES, f"a URL with scheme {' | '.join(URL_SCHEMES)}")
    )
    md5: str = dataclasses.field(
        metadata=_check(lambda s: re.fullmatch(r"[0-9a-f]{32}", s), "32 lowercase hex digits")
    )
    retries: int = dataclasses.field(metadata=_check(non_negative, ">= 0"))
    timeout_s: float = dataclasses.field(metadata=_check(positive, "> 0"))


@dataclasses.dataclass(frozen=True)
class Preprocess:
    normalize: str = dataclasses.field(metadata=_one_of(NORMALIZE_MODES))
    train_limit: int = dataclasses.field(metadata=_SUBSET_LIMIT)
    test_limit: int = dataclasses.field(metadata=_SUBSET_LIMIT)
    seed: int = dataclasses.field(metadata=_check(non_negative, ">= 0"))


@dataclasses.dataclass(frozen=True)
class Model:
    """One registered model's entry in params.yaml's `models:` map."""

    epochs: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    max_accuracy_drop: float = dataclasses.field(
        metadata=_check(lambda v: 0 <= v <= 1, "0 .. 1 (absolute test accuracy)")
    )
    # held-out scoring during training (pipeline/lib/heldout.py) and the accuracy whose first reaching it times
    evals_per_epoch: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    target_accuracy: float = dataclasses.field(metadata=_check(lambda v: 0 < v <= 1, "0 < target <= 1"))


@dataclasses.dataclass(frozen=True)
class Train:
    seed: int = dataclasses.field(metadata=_check(non_negative, ">= 0"))
    batch_size: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    learning_rate: float = dataclasses.field(metadata=_check(positive, "> 0"))
    loss: str = dataclasses.field(metadata=_one_of(LOSSES))
    distribution: str = dataclasses.field(metadata=_one_of(DISTRIBUTIONS))
    devices: int = dataclasses.field(metadata=_check(non_negative, "0 (every GPU) or N >= 1"))


@dataclasses.dataclass(frozen=True)
class Evaluate:
    batch_size: int = dataclasses.field(metadata=_check(positive, ">= 1"))


@dataclasses.dataclass(frozen=True)
class LstmStep:
    warmup_steps: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    rounds: int = dataclasses.field(metadata=_check(lambda n: n >= 3, ">= 3 (a median and an IQR need several)"))
    cpu_sgemm_n: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    gpu_sgemm_n: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    parity_atol: float = dataclasses.field(metadata=_check(positive, "> 0"))
    seed: int = dataclasses.field(metadata=_check(non_negative, ">= 0"))


@dataclasses.dataclass(frozen=True)
class Collapse:
    # the study's probes read the model's ReLU and LSTM layers (pipeline/lib/diagnostics.py)
    model: str = dataclasses.field(metadata=_check(lambda v: v in registry.lstm_cores(),
                                                   "a model of pipeline/lib/registry.py with an LSTM core"))
    seeds: int = dataclasses.field(metadata=_check(positive, ">= 1 (seeds 0 .. seeds-1)"))
    epochs: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    train_limit: int = dataclasses.field(metadata=_SUBSET_LIMIT)
    test_limit: int = dataclasses.field(metadata=_SUBSET_LIMIT)
    probe_images: int = dataclasses.field(metadata=_check(lambda n: n >= 10 and n % 10 == 0, "a multiple of 10, >= 10"))
    probe_every: int = dataclasses.field(metadata=_check(positive, ">= 1 (training steps)"))
    keras2: bool  # also run every seed under Keras 2 (tf_keras)


@dataclasses.dataclass(frozen=True)
class Gate:
    max_slowdown: float = dataclasses.field(metadata=_check(positive, "> 0 (a fraction: 0.10 is 10%)"))
    noise_z: float = dataclasses.field(metadata=_check(positive, "> 0"))
    ab_processes: int = dataclasses.field(metadata=_check(lambda n: n >= 2, ">= 2 (a process effect needs two)"))
    ab_min_pairs: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    ab_max_pairs: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    ab_budget_s: float = dataclasses.field(metadata=_check(positive, "> 0 (seconds)"))
    ab_warmup: int = dataclasses.field(metadata=_check(positive, ">= 1"))
    ab_confidence: float = dataclasses.field(metadata=_check(lambda v: 0.5 <= v < 1, "0.5 .. 0.999"))
    convergence_reference: str  # compare mode: each model's images to its target, seeds of the profile
    max_convergence_slowdown: float = dataclasses.field(
        metadata=_check(non_negative, ">= 0 (a fraction of the slowest reference seed's images)"))

    # Relations between fields, checked after each field's own check: (test, key it names, allowed).
    RULES = (
        (lambda g: g.ab_min_pairs >= 3 * g.ab_processes, "ab_min_pairs",
         ">= 3 * ab_processes (three pairs on every worker pair)"),
        (lambda g: g.ab_max_pairs >= g.ab_min_pairs, "ab_max_pairs", ">= ab_min_pairs"),
    )


@dataclasses.dataclass(frozen=True)
class Params:
    paths: Paths
    download: Download
    preprocess: Preprocess
    models: types.MappingProxyType  # model name -> Model, for exactly the models of pipeline/lib/registry.py
    train: Train
    evaluate: Evaluate
    lstm_step: LstmStep
    collapse: Collapse
    gate: Gate


def _models(mapping, key: str, source: str) -> types.MappingProxyType:
    """The `models:` map: one `Model` entry for each registered model, in the registry's order."""
    if not isinstance(mapping, dict):
        raise PipelineError(f"{source}: {key} must be a mapping of model names, got {type(mapping).__name__}")
    known = registry.names()
    unknown = sorted(str(k) for k in mapping if k not in known)
    if unknown:
        raise PipelineError(f"{source}: unknown model {key}.{unknown[0]}; the models of pipeline/lib/registry.py: "
                            f"{', '.join(known)}")
    missing = [name for name in known if name not in mapping]
    if missing:
        raise PipelineError(
            f"{source}: missing key {key}.{missing[0]} (every model of pipeline/lib/registry.py needs one)"
        )
    return types.MappingProxyType({name: _build(Model, mapping[name], f"{key}.{name}", source) for name in known})


def _convert(value, kind, key: str, source: str):
    """Return `value` as `kind` (a dataclass, the models map or a scalar type), or raise naming `key`."""
    if kind is types.MappingProxyType:
        return _models(value, key, source)
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, key, source)
    # bool is an int subclass in Python; `epochs: true` is a typo, not 1.
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise PipelineError(f"{source}: {key} must be {kind.__name__}, got {type(value).__name__} {value!r}")


def _build(cls, mapping, prefix: str, source: str):
    where = prefix or "the top level"
    if not isinstance(mapping, dict):
        raise PipelineError(f"{source}: {where} must be a mapping, got {type(mapping).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    join = (lambda k: f"{prefix}.{k}") if prefix else str
    unknown = sorted(str(k) for k in mapping if k not in fields)
    if unknown:
        raise PipelineError(
            f"{source}: unknown key {join(unknown[0])}; allowed keys in {where}: {', '.join(fields)}"
        )
    missing = [k for k in fields if k not in mapping]
    if missing:
        raise PipelineError(f"{source}: missing key {join(missing[0])}")
    values = {}
    for name, field in fields.items():
        value = _convert(mapping[name], hints[name], join(name), source)
        check = field.metadata.get("test")
        if check is not None and not check(value):
            raise PipelineError(f"{source}: {join(name)} = {value!r} is invalid; allowed: {field.metadata['allowed']}")
        values[name] = value
    built = cls(**values)
    for test, name, allowed in getattr(cls, "RULES", ()):
        if not test(built):
            raise PipelineError(f"{source}: {join(name)} = {values[name]!r} is invalid; allowed: {allowed}")
    return built


def parse(mapping, source: str = str(PARAMS_FILE)) -> Params:
    """Validate an already-loaded mapping (what `load` does after reading the YAML)."""
    return _build(Params, mapping, "", source)


def _duplicate_key(node, prefix: str = "") -> str | None:
    """The first key given twice in one mapping of a composed YAML document, as `dotted.key (line N)`."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                return f"{prefix}{key} (line {key_node.start_mark.line + 1})"
            seen.add(key)
            found = _duplicate_key(value_node, f"{prefix}{key}.")
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _duplicate_key(item, f"{prefix}{index}.")
            if found:
                return found
    return None


def load_mapping(path: Path | str = PARAMS_FILE):
    """The YAML of a params file, not yet validated; unreadable, not YAML or a key given twice (which
    YAML would silently resolve to its last value) is one line naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: cannot read params: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if duplicate:
        raise PipelineError(f"{path}: duplicate key {duplicate}; each key may appear once")
    return mapping


def load(path: Path | str = PARAMS_FILE) -> Params:
    return parse(load_mapping(path), str(Path(path)))
