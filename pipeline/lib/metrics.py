"""The metrics contract: one JSON schema per metrics file kind (pipeline/lib/schemas/<kind>.schema.json)
gives its fields and, in each top-level field's `x-role`, what the field is:

- `setting`: what must be equal for two runs to be compared (image counts, epochs, loss, seed, backend, ...);
- `environment`: the machine and the software versions; history and the report keep runs apart by them,
  the gate does not (it compares a run with its baseline wherever each ran);
- `measure`: what the run measured;
- `record`: descriptive, never compared (device strings, the tutorial's reported numbers).

The stages and gpu-check (its gpu-protocol.json) write through `write`, which validates before anything
is written. `same_settings` is the one test of "same settings": the gate refuses (or, allowed, leaves
ungated) two runs it finds different. History and the report keep runs apart by the same `settings` and
also by `environment` (their series and seed pools hold runs of one machine and software). Records that
lack a setting are read with the value their writer implied (`IMPLIED`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from pipeline.lib import registry
from pipeline.lib.atomic import write_json
from pipeline.lib.params import PipelineError

SCHEMAS = Path(__file__).with_name("schemas")
KINDS = ("train", "evaluate", "lstm-step", "collapse", "gpu-protocol")
ROLES = ("setting", "environment", "measure", "record")
# A setting a record does not hold, and the value its writer implied: train records written before the
# setting existed (every epoch run, one process on one device, no time limit, the logit-based loss), and
# the collapse study, which never varies the train stage's distribution settings.
_ONE_DEVICE = {"distribution": lambda d: "none", "replicas": lambda d: 1, "processes": lambda d: 1,
               "time_limit_s": lambda d: None, "epochs_completed": lambda d: d.get("epochs")}
IMPLIED = {
    "train": {**_ONE_DEVICE, "loss": lambda d: "crossentropy"},
    "collapse": {**_ONE_DEVICE, "loss": lambda d: "crossentropy"},
}
NOT_RECORDED = "(not recorded)"


@functools.cache
def schema(kind: str) -> dict:
    if kind not in KINDS:
        raise PipelineError(f"unknown metrics kind {kind!r}; the kinds: {', '.join(KINDS)}")
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text())


def keys(kind: str, role: str) -> tuple[str, ...]:
    """The top-level fields of `kind` with this role, in the schema's order."""
    return tuple(k for k, v in schema(kind)["properties"].items() if v["x-role"] == role)


def settings(kind: str) -> tuple[str, ...]:
    return keys(kind, "setting")


def environment(kind: str) -> tuple[str, ...]:
    return keys(kind, "environment")


def kind_of(name: str) -> str:
    """A metrics file's kind from its name: train-<model>.json -> train, lstm-step.json -> lstm-step."""
    stem = Path(name).name.removesuffix(".json")
    return stem if stem in KINDS else stem.split("-")[0]


def value(kind: str, data: dict, key: str):
    """A field of a record, with `IMPLIED`'s value where the writer left it out, else NOT_RECORDED."""
    if key in data:
        return data[key]
    implied = IMPLIED.get(kind, {}).get(key)
    return implied(data) if implied else NOT_RECORDED


def same_settings(kind: str, a: dict, b: dict) -> list[str]:
    """Each setting that differs between two records of `kind`, as "key A vs B"; empty when comparable."""
    return [f"{k} {value(kind, a, k)} vs {value(kind, b, k)}" for k in settings(kind)
            if value(kind, a, k) != value(kind, b, k)]


def validate(kind: str, data: dict, where) -> None:
    """Refuse, in one line naming `where` and the field, a record that breaks its kind's schema."""
    import jsonschema  # imported here: only writers and tests validate

    errors = sorted(jsonschema.Draft202012Validator(schema(kind)).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        field = ".".join(map(str, errors[0].absolute_path)) or "(top level)"
        raise PipelineError(f"{where}: breaks the {kind} metrics schema at {field}: {errors[0].message[:200]}")
    if kind == "lstm-step":
        cores = sorted(k for k in data if k not in schema(kind)["properties"])
        if cores != sorted(registry.lstm_cores()):
            raise PipelineError(f"{where}: lstm-step holds cores {cores}, the registry's LSTM cores are "
                                f"{sorted(registry.lstm_cores())}")


def write(kind: str, path, data: dict) -> None:
    """Validate `data` as a `kind` record, then write it atomically; nothing is written when it is refused."""
    validate(kind, data, path)
    write_json(path, data)
