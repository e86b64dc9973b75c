"""Property-based: whatever bytes a batch holds and whatever mapping params.yaml holds, the parser
and the params loader raise nothing but the project's own clear error type."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.lib import cifar, params
from pipeline.lib.params import PipelineError
from tests import archives

PARAMS_FILE = Path(__file__).resolve().parent.parent / "params.yaml"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8),
                    st.binary(max_size=8))
trees = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.binary(max_size=8)), children, max_size=4)),
    max_leaves=12)


def parse(payload: bytes):
    try:
        return cifar.parse_batch(cifar.unpickle(payload, "data_batch_1"), "data_batch_1")
    except PipelineError:
        return None


@SETTINGS
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_as_another_error(payload):
    parse(payload)


@SETTINGS
@given(trees)
def test_arbitrary_pickled_objects_never_escape_as_another_error(obj):
    parse(archives.pickled(obj))


@SETTINGS
@given(st.lists(st.integers(-3, 12), min_size=0, max_size=6), st.integers(0, 3), st.sampled_from([np.uint8, np.int32, np.float32]))
@example([3, 0, 9], 3, np.uint8)  # a valid batch, so the accepting branch always runs
def test_batches_near_the_format_are_parsed_or_refused_cleanly(labels, rows, dtype):
    batch = {b"data": np.zeros((rows, 3072), dtype), b"labels": labels}
    result = parse(archives.pickled(batch))
    # An empty batch is refused too: its label list has no integer type.
    valid = dtype == np.uint8 and rows >= 1 and len(labels) == rows and all(0 <= v <= 9 for v in labels)
    assert (result is not None) == valid  # exactly the batches of the official format are accepted
    if result is not None:
        images, parsed = result
        assert images.shape == (rows, 32, 32, 3) and parsed.tolist() == labels


@SETTINGS
@given(trees)
def test_arbitrary_params_documents_never_escape_as_another_error(mapping):
    try:
        params.parse(mapping, "params.yaml")
    except PipelineError:
        pass


@SETTINGS
@given(st.sampled_from(["paths", "download", "preprocess", "train", "evaluate", "lstm_step", "collapse", "gate"]), trees)
def test_a_section_replaced_by_anything_never_escapes_as_another_error(section, value):
    document = yaml.safe_load(PARAMS_FILE.read_text())
    document[section] = value
    if not isinstance(value, dict):  # a scalar or a list where a section belongs: always refused
        with pytest.raises(PipelineError, match=f"params.yaml: {section} must be a mapping"):
            params.parse(document, "params.yaml")
        return
    try:
        params.parse(document, "params.yaml")
    except PipelineError:
        pass
