# isaprof: `make report` and `make test` do all set-up on a fresh clone (virtualenv, install, run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
RESULTS ?= reports/data
SWEEP ?= reference/sweeps/report.toml
# The efficiency table at each of the papers' sizes and their width (reference/papers.toml), meta path
PAPERS = $(BIN)/python -m isaprof.papers
TABLE_ARGS ?= --mode both --device meta --format json

# torch: on a machine without an NVIDIA driver take the CPU build instead of the multi-GB CUDA build:
# a local wheel if pip's find-links has one (torch alone with --no-index, then its dependencies from the
# usual index), else the +cpu build from the index named by TORCH_CPU_INDEX (PyTorch's CPU wheel index:
# set it on such a machine), else pip's default build. With a driver, pip's default (CUDA) build.
# Override either way: make test TORCH_INSTALL='.venv/bin/pip install torch==2.13.0 --index-url URL'
TORCH_CPU_INDEX ?=
ifeq ($(shell command -v nvidia-smi 2>/dev/null),)
TORCH_INSTALL ?= ( $(BIN)/pip install -q --no-deps --no-index torch==$(TORCH_VERSION) 2>/dev/null \
	&& $(BIN)/pip install -q torch==$(TORCH_VERSION) ) \
	|| $(if $(TORCH_CPU_INDEX),$(BIN)/pip install -q torch==$(TORCH_VERSION)+cpu --extra-index-url $(TORCH_CPU_INDEX),$(BIN)/pip install -q torch==$(TORCH_VERSION))
else
TORCH_INSTALL ?= $(BIN)/pip install -q torch==$(TORCH_VERSION)
endif

STAMP := $(VENV)/.isaprof-installed

.PHONY: install test test-slow lint report bench bench-compare bench-quick bench-bounds baseline-check baseline-update gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || ( $(TORCH_INSTALL) )
	$(BIN)/pip install -q -e '.[dev,cluster,corpus]'
	touch $@

install: $(STAMP)

# Unit tests on every core (pytest-xdist, options in pyproject.toml); test-slow: the tests marked slow
# (published sizes, subprocess sweeps), which the default run deselects and CI runs as its own step.
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check isaprof tests benchmarks
	$(BIN)/ruff format --check isaprof tests benchmarks

# Runs a statement with isaprof.report.readme imported as r (README's generated figures, stable files)
READMEPY = $(BIN)/python -c "import sys, isaprof.report.readme as r; exec(sys.argv[1])"

# The main job: sweep (resumable: an interrupted run continues), reproduce the papers' figures, the
# efficiency tables at the papers' sizes (in parallel), latency bounds (GPUs at the papers' sizes, this CPU
# beside the sweep's latencies), connectivity pictures, then the Markdown report.
# Machine-dependent figures are keyed by the machine id (CPU model name, cores, threads, torch build;
# ISAPROF_MACHINE_ID where set): on another machine a plain `make report` re-measures the latency rows and
# roofs (the exact meta rows are reused) and the report names the CPU they come from. A second run with
# nothing changed changes no file (no run timings or write times in the committed files).
# `make report FRESH=1` re-measures from scratch, this machine's roofs included (a cached roof measured while
# the machine was busy would understate it, and every CPU bound beside the latencies would then be too low).
report: $(STAMP)
	$(if $(FRESH),rm -rf $(RESULTS))
	$(if $(FRESH),$(BIN)/isaprof machine --remeasure > /dev/null)
	$(BIN)/isaprof sweep $(SWEEP) --out $(RESULTS)
	$(BIN)/isaprof reproduce --out $(RESULTS)
	c=$$($(PAPERS) channels) && pids= && for hw in $$($(PAPERS) sizes); do \
		$(BIN)/isaprof table --size $$hw --channels $$c $(TABLE_ARGS) --out $(RESULTS)/table_$$hw.json & \
		pids="$$pids $$!"; done; s=0; for p in $$pids; do wait $$p || s=1; done; exit $$s
	$(BIN)/isaprof heads $(RESULTS)
	$(BIN)/isaprof networks $(RESULTS)
	$(BIN)/isaprof bounds $(RESULTS)
	$(BIN)/isaprof formula --all --channels 512 --size 61x59 --also-size 64x64 --jobs 2 --json --out $(RESULTS)/derived.json.new > /dev/null
	$(READMEPY) "r.keep_unless_changed('$(RESULTS)/derived.json.new', '$(RESULTS)/derived.json')"
	$(BIN)/isaprof verify --size 12x10 --json > $(RESULTS)/verify.json || true
	$(BIN)/isaprof verify --figure reports/connectivity.png > /dev/null
	$(BIN)/isaprof report $(RESULTS) --out reports
	$(READMEPY) "sys.exit(r.main(['reports/tables/performance.md', 'README.md']))"

# Timing benchmarks (pytest-benchmark). bench: run and save; bench-compare: run, compare medians with the last
# saved run (fail past 20%) and gate the same-run ratios block/dense (benchmarks/ratios.py, noise-robust);
# bench-quick: every 32x32 benchmark run once, so that a broken benchmark fails CI.
BENCH_QUICK := --benchmark-min-rounds=1 --benchmark-max-time=0 --benchmark-warmup=off
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -n 0 --benchmark-autosave

bench-compare: $(STAMP)
	$(BIN)/python -m pytest benchmarks -n 0 --benchmark-autosave --benchmark-compare \
		--benchmark-compare-fail=median:20%; s=$$?; $(BIN)/python benchmarks/ratios.py || s=1; exit $$s

bench-quick: $(STAMP)
	$(BIN)/python -m pytest benchmarks -n 0 -q -p no:cacheprovider --bench-no-costs -k 32x32 $(BENCH_QUICK)

# Latency is never asserted in `make test`: the one check that needs a clock (measured latency >= the
# roofline bound on this CPU, tests/studies/test_bounds.py) runs here.
bench-bounds: $(STAMP)
	$(BIN)/python -m pytest -n 0 -q -p no:cacheprovider -m timing tests/studies/test_bounds.py

baseline-check: $(STAMP)
	$(BIN)/isaprof baseline check

baseline-update: $(STAMP)
	$(BIN)/isaprof baseline update

# The real-GPU check (<= 8 min on one GPU): gpu-marked tests, a small CUDA sweep into $(RESULTS)/cuda, measured
# allocator peak and latency against the meta path's predictions. Runs with the machine's own Python as it is
# (no venv, no network): make gpu-check PYTHON=python3. Without CUDA it skips its CUDA parts and exits 0.
gpu-check:
	PYTHONPATH=. $(PYTHON) -m isaprof gpu-check --out $(RESULTS)/cuda

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
