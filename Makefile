# The two commands (both set everything up first, from a fresh clone):
#   make repro   run the benchmark pipeline (dvc repro); offline here: make repro-mirror
#   make test    run the whole test suite: the main venv, then .venv-notf (no TensorFlow, JAX and torch);
#                .ci/run, installs included, took about 17 minutes here (docs/benchmarks.md); make test-fast runs
#                the unit tier (3.5 minutes)
# Also: make study (the collapse study, studies/dvc.yaml), make bench (pytest-benchmark suite ->
# benchmarks.json), make bench-replicas (1 device vs 2 replicas), make report (seeds, from reports/runs),
# make history (every commit's metrics as a page), make lockcheck (is dvc.lock fresh), make mirror
# (offline archive), make gpu-pack (what scripts/gpu-check needs on a GPU host, in .gpu/).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED := ../shared
MIRROR_TOOL := $(SHARED)/tools/make-cifar10-mirror
FULL_MIRROR := .mirror/full/cifar-10-python.tar.gz
SMALL_MIRROR := .mirror/small/cifar-10-python.tar.gz
# Extra parameter overrides for repro / repro-mirror, e.g. SET="models.sequential.epochs=3 models.parallel.epochs=1"
SET ?=
# Named sets of overrides (pipeline/profiles.py): `make repro PROFILE=tutorial` (or repro-mirror) runs
# dvc exp run with them. The defaults in params.yaml are the per-commit benchmark profile (docs/benchmarks.md).
# tutorial: the Keras tutorial's protocol, all 50k/10k images, 100 and 10 epochs (hours on 2 cores).
PROFILE ?=
# dvc exp run through pipeline/experiment.py: the overrides are validated before DVC starts, and a failed
# experiment leaves params.yaml, the locks, the refs and the data as they were.
EXPERIMENT = $(BIN)/python -m pipeline.experiment $(if $(PROFILE),--profile $(PROFILE))
# dvc runs stage commands (`python -m pipeline...`) through the shell: they must find the venv's python.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup backends notf gpu-wheels gpu-pack repro repro-mirror mirror study lint test test-fast bench bench-replicas gate-ab gate-accuracy report history lockcheck mutate
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

# The pipeline without TensorFlow or DVC (requirements-gpu.txt), with the CPU builds of JAX and torch:
# what a GPU host runs, tested here by `make test`.
NOTF := .venv-notf
# Under jax: every stage under jax and torch, gpu-check --cpu, training. The lstm-step and model unit tests
# run under jax and torch (their stage runs under jax and torch are in the main suite's tests).
NOTF_TESTS := tests/test_without_tensorflow.py tests/test_train.py
NOTF_UNIT_TESTS := tests/test_lstm_step.py tests/test_models.py
notf: $(NOTF)/bin/.installed
$(NOTF)/bin/.installed: requirements-gpu.txt requirements-backends.txt
	$(PYTHON) -m venv $(NOTF)
	$(NOTF)/bin/python -m pip install --quiet --upgrade pip
	$(NOTF)/bin/python -m pip install --quiet -r requirements-gpu.txt -r requirements-backends.txt
	touch $@

# scripts/gpu-check on a GPU host with Python 3.12, PyTorch and JAX but no Keras, TensorFlow or DVC, and no
# network: the cp312 wheels it lacks (GPU_HOST_LACKS, pinned in requirements-gpu.txt) go to .gpu/wheels,
# the JPEG pack and its mirror tool to .gpu/shared. Carry .gpu (about 22 MB) with the call.
GPU_HOST_LACKS := keras namex optree jsonschema jsonschema-specifications referencing rpds-py
GPU_PLATFORMS := $(addprefix --platform ,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux1_x86_64)
gpu-wheels: | setup
	rm -rf .gpu/wheels && mkdir -p .gpu/wheels
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  $(GPU_PLATFORMS) -d .gpu/wheels \
	  $$(grep -iE '^($(subst $(eval) ,|,$(GPU_HOST_LACKS)))==' requirements-gpu.txt)
	ls .gpu/wheels

gpu-pack: gpu-wheels
	mkdir -p .gpu/shared/data .gpu/shared/tools
	cp $(SHARED)/data/cifar10-jpeg.tar.gz .gpu/shared/data/
	cp $(MIRROR_TOOL) .gpu/shared/tools/

repro: setup
ifeq ($(strip $(PROFILE) $(SET)),)
	$(BIN)/dvc repro
else
	$(EXPERIMENT) $(SET)
endif

# The official URL is unreachable on machines without internet: build the same archive from the real
# images in ../shared and point download.url / download.md5 at it (recorded in dvc.lock). The URL is
# relative to the repository (file:.mirror/...), so dvc.lock names no path of this machine.
$(FULL_MIRROR): | setup
	$(BIN)/python $(MIRROR_TOOL) $(dir $@)

$(SMALL_MIRROR): | setup
	$(BIN)/python $(MIRROR_TOOL) $(dir $@) --per-class-train 1000 --per-class-test 100

mirror: $(FULL_MIRROR)

# The studies pipeline (studies/dvc.yaml), which a plain `dvc repro` leaves alone.
study: setup
	$(BIN)/dvc repro studies/dvc.yaml

repro-mirror: setup $(FULL_MIRROR)
	$(EXPERIMENT) download.url=file:$(FULL_MIRROR) download.md5=$$(cut -d' ' -f1 $(FULL_MIRROR).md5) $(SET)

# The small real-image mirror is built when ../shared is there; the tests that need it skip otherwise.
# The main suite runs on every core (pytest-xdist); tests marked xdist_group run one after another in one
# worker. The no-TensorFlow suite runs serially: each of its tests trains or runs gpu-check on every core
# already, and gpu-check's budget is wall time (on 2 workers it took 9 min instead of 5 and missed budgets).
PARALLEL := -n auto --dist loadgroup
# ruff ([tool.ruff] in pyproject.toml): pyflakes and pycodestyle over pipeline/, tests/ and reports/.
lint: setup
	$(BIN)/ruff check .

test: setup notf lint
	@if [ -x $(MIRROR_TOOL) ]; then $(MAKE) --no-print-directory $(SMALL_MIRROR); fi
	CIFAR10_SMALL_MIRROR=$(abspath $(SMALL_MIRROR)) $(BIN)/python -m pytest $(PARALLEL)
	KERAS_BACKEND=jax $(NOTF)/bin/python -m pytest -m "not benchmark" $(NOTF_TESTS)
	for backend in jax torch; do \
	  KERAS_BACKEND=$$backend $(NOTF)/bin/python -m pytest -m "not slow and not benchmark" $(NOTF_UNIT_TESTS) || exit 1; \
	done

# The unit tier: no real dvc repro, no training on real data, no stage processes that train (marker `slow`).
test-fast: setup lint
	$(BIN)/python -m pytest -m "not slow and not benchmark and not notf"

# Mutation testing ([tool.mutmut] in pyproject.toml) of the gate, lockcheck, the history detector, runs
# export, the report, the archive reader and the held-out scoring; not part of `make test` (about an hour on 2 cores
# from scratch, then about 26 minutes for the held-out scoring's 165 mutants in fresh processes).
# mutmut keeps its results in mutants/ and checks only mutants without one; `mutmut run NAME...` checks named
# ones again, `rm -rf mutants` starts over. MUTATION_LABEL names the report: reports/mutation/scores-<label>.csv,
# functions-<label>.csv and survivors-<label>.md; it fails on a survivor that neither
# reports/mutation/equivalent.yaml nor the help-text rule in reports/mutation/score.py argues away.
MUTATION_LABEL ?= latest
# The functions whose tests train a Keras model, checked again each in a fresh process (reports/mutation/fresh.py).
FRESH_MUTANTS := 'pipeline.lib.heldout.x*HeldOut*' 'pipeline.lib.heldout.x_score_*' \
  'pipeline.lib.heldout.x_softmax_*' 'pipeline.lib.heldout.x_eval_steps_*'
mutate: setup
	$(BIN)/mutmut run --max-children 2
	cd mutants && ../$(BIN)/python ../reports/mutation/fresh.py $(FRESH_MUTANTS)
	$(BIN)/python reports/mutation/score.py $(MUTATION_LABEL)

bench: setup
	$(BIN)/python -m pytest -m benchmark tests/benchmarks --benchmark-json=benchmarks.json

# Test accuracy mean +- std over seeds, from the runs exported under reports/runs (pipeline/report.py);
# `python -m pipeline.runs export <experiment>` adds a finished experiment there.
report: setup
	$(BIN)/python -m pipeline.report --runs reports/runs

# The committed metrics of every commit on this branch as one page, reports/history.html, with the changes
# its detector marks printed as markdown (pipeline/history/); SINCE=<rev> lists only those after <rev>.
SINCE ?=
history: setup
	$(BIN)/python -m pipeline.history $(if $(SINCE),--since $(SINCE))

# Is the committed dvc.lock (and studies/dvc.lock) what dvc repro of params.yaml leaves? No data needed.
lockcheck: setup
	$(BIN)/python -m pipeline.lockcheck

# Speed gate: the working tree against the previous commit, interleaved on this machine (docs/gates.md).
gate-ab: setup
	$(BIN)/python -m pipeline.gate ab --base HEAD~1 --allow-missing-baseline

# Accuracy gate: the metrics in the workspace (on a clean checkout, those committed with this commit)
# against the previous commit's; the timing rows of `compare` are advisory. A commit that changed the
# profile's settings has no comparable baseline: it passes with that notice.
gate-accuracy: setup
	$(BIN)/python -m pipeline.gate compare --baseline HEAD~1 --allow-new-settings

# Step time on one device against 2 data-parallel replicas (logical CPUs on a GPU-less host) -> replicas.json
bench-replicas: setup
	$(BIN)/python -m tests.benchmarks.replicas
