# Two commands do everything on a fresh clone: `make run` (the pipeline on the embedded default) and
# `make test` (the test suite). Both create the environment once from pyproject.toml + requirements.lock.
SHELL := /bin/bash
VENV ?= .venv
CORES ?= 2
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: env run test test-fast lint bench clean
env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

run: env                ## the main job: snakemake on the embedded default (bundled sample data)
	snakemake --cores $(CORES) --workflow-profile workflow/profiles/default

test: env               ## the whole test suite (slow tests included: real Snakemake and DVC runs)
	pytest

test-fast: env          ## unit tests only
	pytest -m "not slow"

lint: env               ## Snakemake's linter on the workflow
	snakemake --lint

bench: env              ## ingest + validate + curate benchmark on the full corpora in ../shared/data/raw
	python benchmarks/bench_data.py --raw-root ../shared/data/raw --out benchmarks/RESULTS.md

clean:                  ## remove pipeline outputs (not the environment)
	rm -rf data/interim data/processed metrics logs .snakemake
