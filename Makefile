# The two commands (both set everything up first, from a fresh clone):
#   make repro   run the benchmark pipeline (dvc repro); offline here: make repro-mirror
#   make test    run the whole test suite (9 minutes here); make test-fast runs the unit tier (2-2.5 minutes)
# Also: make study (the collapse study, studies/dvc.yaml), make bench (pytest-benchmark suite ->
# benchmarks.json), make bench-replicas (1 device vs 2 replicas), make report (seeds), make mirror
# (offline archive).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED := ../shared
MIRROR_TOOL := $(SHARED)/tools/make-cifar10-mirror
FULL_MIRROR := .mirror/full/cifar-10-python.tar.gz
SMALL_MIRROR := .mirror/small/cifar-10-python.tar.gz
# Extra parameter overrides for repro / repro-mirror, e.g. SET="train.sequential.epochs=3 train.parallel.epochs=1"
SET ?=
# Named sets of overrides: `make repro PROFILE=tutorial` (or repro-mirror) runs dvc exp run with them.
# The defaults in params.yaml are the per-commit benchmark profile (docs/benchmarks.md).
# tutorial: the Keras tutorial's protocol, all 50k/10k images, 100 and 10 epochs (hours on 2 cores).
PROFILE ?=
PROFILE_tutorial := preprocess.train_limit=0 preprocess.test_limit=0 train.sequential.epochs=100 \
  train.parallel.epochs=10 lstm_step.rounds=20
OVERRIDES := $(strip $(PROFILE_$(PROFILE)) $(SET))
# dvc runs stage commands (`python -m pipeline...`) through the shell: they must find the venv's python.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup backends repro repro-mirror mirror study test test-fast bench bench-replicas gate-ab report
setup: $(BIN)/.installed

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# Optional: the torch and jax backends (KERAS_BACKEND=torch|jax), CPU builds.
backends: $(BIN)/.backends
$(BIN)/.backends: requirements-backends.txt | setup
	$(BIN)/python -m pip install --quiet -r requirements-backends.txt
	touch $@

repro: setup
ifeq ($(OVERRIDES),)
	$(BIN)/dvc repro
else
	$(BIN)/dvc exp run $(addprefix -S ,$(OVERRIDES))
endif

# The official URL is unreachable on machines without internet: build the same archive from the real
# images in ../shared and point download.url / download.md5 at it (recorded in dvc.lock).
$(FULL_MIRROR): | setup
	$(BIN)/python $(MIRROR_TOOL) $(dir $@)

$(SMALL_MIRROR): | setup
	$(BIN)/python $(MIRROR_TOOL) $(dir $@) --per-class-train 1000 --per-class-test 100

mirror: $(FULL_MIRROR)

# The studies pipeline (studies/dvc.yaml), which a plain `dvc repro` leaves alone.
study: setup
	$(BIN)/dvc repro studies/dvc.yaml

repro-mirror: setup $(FULL_MIRROR)
	$(BIN)/dvc exp run -S download.url=file://$(abspath $(FULL_MIRROR)) \
	  -S download.md5=$$(cut -d' ' -f1 $(FULL_MIRROR).md5) $(addprefix -S ,$(OVERRIDES))

# The small real-image mirror is built when ../shared is there; the tests that need it skip otherwise.
test: setup
	@if [ -x $(MIRROR_TOOL) ]; then $(MAKE) --no-print-directory $(SMALL_MIRROR); fi
	CIFAR10_SMALL_MIRROR=$(abspath $(SMALL_MIRROR)) $(BIN)/python -m pytest

# The unit tier: no real dvc repro, no training on real data, no stage processes that train (marker `slow`).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not benchmark"

bench: setup
	$(BIN)/python -m pytest -m benchmark tests/benchmarks --benchmark-json=benchmarks.json

# Test accuracy mean +- std over seeds, from every experiment of every commit (pipeline/report.py).
report: setup
	$(BIN)/python -m pipeline.report --all-commits

# Speed gate: the working tree against the previous commit, interleaved on this machine.
gate-ab: setup
	$(BIN)/python -m pipeline.gate ab --base HEAD~1 --allow-missing-baseline

# Step time on one device against 2 data-parallel replicas (logical CPUs on a GPU-less host) -> replicas.json
bench-replicas: setup
	$(BIN)/python -m tests.benchmarks.replicas
