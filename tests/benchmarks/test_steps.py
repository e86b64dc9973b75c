"""pytest-benchmark cases for what the pipeline spends its time on, at the training batch size.

Groups: `lstm-core` (one training step of each LSTM(50) core, CPU path, as in the lstm-step stage),
`gate-rows` (every row of the speed gate, `gate ab`: the same benchmark definitions, pipeline/lib/speed.py, with
the settings from params.yaml), `preprocess` (parsing one 10k-image batch
with the safe reader, in both pickle layouts, and with plain `pickle.loads` as the reference). Each case warms up first (compile, first-call costs) and the timed call
returns a Python float or a NumPy array, so the work has completed inside the timed region.
"""

import pickle

import numpy as np
import pytest

from pipeline.lib import cifar, models, params, registry, speed, steps
from tests import archives, pickles

P = params.load()
BATCH = P.train.batch_size


@pytest.mark.parametrize("core", list(registry.lstm_cores()))
def test_lstm_core_train_step_cpu(benchmark, environment, core):
    length, features = registry.MODELS[core].lstm_core
    step = steps.CoreStep(core, BATCH)
    benchmark.group = "lstm-core"
    benchmark.extra_info.update(steps=length, features=features, batch_size=BATCH, kernel="generic",
                                gflop_per_step=steps.lstm_train_flops(BATCH, length, features, models.LSTM_UNITS) / 1e9)
    benchmark.pedantic(step, rounds=10, warmup_rounds=3)


@pytest.fixture(scope="module")
def gate_suite():
    """The speed gate's own benchmarks (pipeline/lib/speed.py), with params.yaml's settings as `gate ab` uses them."""
    return speed.benchmarks(P.train.batch_size, P.evaluate.batch_size, P.train.learning_rate, P.train.loss)


@pytest.mark.parametrize("name", speed.names())
def test_gate_row(benchmark, environment, gate_suite, name):
    """One row of `gate ab`, timed by pytest-benchmark: the same step the gate's workers run. A row that times
    itself (the fit loops: epoch start to epoch end, per batch) also records those times, `own_ms`, which are
    what the gate compares; pytest-benchmark's own statistics time the whole call."""
    step = gate_suite[name]
    own = []
    run = (lambda: own.append(step())) if getattr(step, "reports_own_time", False) else step
    benchmark.group = "gate-rows"
    benchmark.extra_info.update(row=name, batch_size=P.train.batch_size, inference_batch_size=P.evaluate.batch_size,
                                learning_rate=P.train.learning_rate, loss=P.train.loss)
    benchmark.pedantic(run, rounds=10, warmup_rounds=P.gate.ab_warmup)
    if own:
        timed = own[-10:]
        benchmark.extra_info.update(own_ms=timed, own_ms_median=float(np.median(timed)))


LAYOUTS = {
    # What the mirror tool and the tests write: Python 3, protocol 2, bytes as _codecs.encode(latin-1 text).
    "python3-protocol2": lambda: archives.pickled(archives.batch(10_000, seed=0)),
    # The official archive's layout, Python 2's cPickle with bytes as plain strings, as tests/pickles.py assembles it.
    "python2-cpickle": lambda: pickles.official_batch(list(archives.batch(10_000, seed=0)[b"labels"]),
                                                      archives.batch(10_000, seed=0)[b"data"]),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_preprocess_one_batch(benchmark, environment, layout):
    payload = LAYOUTS[layout]()
    benchmark.group = "preprocess"
    benchmark.extra_info.update(images=10_000, payload_bytes=len(payload), layout=layout, reader="safe")
    parse = lambda: cifar.parse_batch(cifar.unpickle(payload, "data_batch_1"), "data_batch_1")  # noqa: E731
    images, labels = benchmark.pedantic(parse, rounds=10, warmup_rounds=2)
    assert images.shape == (10_000, 32, 32, 3) and labels.shape == (10_000,)


def test_preprocess_one_batch_trusting_reference(benchmark, environment):
    """What `keras.datasets.cifar10` does (pickle.loads with numpy's reconstruction) plus a copy of the
    channels-last view, as numpy makes it: the safe reader's times read as a ratio to this one, on any
    machine."""
    payload = LAYOUTS["python3-protocol2"]()
    benchmark.group = "preprocess"
    benchmark.extra_info.update(images=10_000, payload_bytes=len(payload), layout="python3-protocol2", reader="pickle.loads")

    def parse():
        batch = pickle.loads(payload, encoding="bytes")
        images = np.ascontiguousarray(batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        return images, np.asarray(batch[b"labels"], dtype=np.uint8)

    images, labels = benchmark.pedantic(parse, rounds=10, warmup_rounds=2)
    assert images.shape == (10_000, 32, 32, 3) and labels.shape == (10_000,)
