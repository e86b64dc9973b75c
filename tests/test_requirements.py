"""The install profiles agree: requirements-gpu.txt (no TensorFlow, no DVC) pins what requirements.txt pins,
and the wheels `make gpu-wheels` fetches for the GPU host are pinned there."""

import re

from tests.project import ROOT


def pins(name: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def test_the_gpu_profile_pins_what_the_main_profile_pins_and_has_no_tensorflow_or_dvc():
    main, gpu = pins("requirements.txt"), pins("requirements-gpu.txt")
    assert "keras" in gpu and "tensorflow" not in gpu and "dvc" not in gpu
    assert {name: version for name, version in gpu.items() if main.get(name) != version} == {}


def test_the_wheels_for_the_gpu_host_are_pinned_in_the_gpu_profile():
    makefile = (ROOT / "Makefile").read_text()
    lacks = re.search(r"^GPU_HOST_LACKS := (.*)$", makefile, re.M).group(1).split()
    assert "keras" in lacks
    assert set(lacks) <= set(pins("requirements-gpu.txt"))
