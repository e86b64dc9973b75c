"""Everything under tests/benchmarks is a pytest-benchmark case: excluded from `make test`, run by `make bench`."""

import pytest

from pipeline.lib import environment as env_record


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/benchmarks/" in item.nodeid:
            item.add_marker(pytest.mark.benchmark)


@pytest.fixture
def environment(benchmark):
    """Record the device, backend and threads with every result."""
    info = env_record.record()
    benchmark.extra_info.update(info)
    return info
