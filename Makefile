# Two commands do everything on a fresh clone: `make run` (the pipeline on the embedded default) and
# `make test` (the test suite). Both create the environment once from pyproject.toml + requirements.lock.
SHELL := /bin/bash
VENV ?= .venv
CORES ?= 2
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# Only the embedded default is offline (its models come from PyPI wheels); a study fetches hub models.
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: env run test test-fast rehearse lint bench full-data study clean
SHARED_RAW ?= ../shared/data/raw
STUDY ?= studies/mi-study.yaml
FULL_SOURCES := CPsyCounD CPsyCounE AnnoMI KMI_prerelease
env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

run: env                ## the main job: snakemake on the embedded default (bundled sample data)
	$(OFFLINE) snakemake --cores $(CORES) --workflow-profile workflow/profiles/default

test: env               ## the whole test suite (slow tests included: real Snakemake and DVC runs)
	$(OFFLINE) pytest

test-fast: env          ## unit tests only
	$(OFFLINE) pytest -m "not slow"

rehearse: env           ## the study's toy-scale twin end to end: dvc exp run + the SLURM profile (part of make test)
	$(OFFLINE) pytest -p no:cacheprovider -s tests/rehearsal

lint: env               ## Snakemake's linter on the workflow
	snakemake --lint

bench: env              ## ingest + validate + curate benchmark on the full corpora in ../shared/data/raw
	python benchmarks/bench_data.py --raw-root ../shared/data/raw --out benchmarks/RESULTS.md

study: env              ## reproduce a study as a DVC experiment: make study STUDY=studies/mi-study.yaml
	counseltune study apply $(STUDY)
	dvc exp run

full-data: env          ## copy the full corpora from SHARED_RAW into data/raw/ and track them with DVC
	mkdir -p data/raw
	for name in $(FULL_SOURCES); do rm -rf "data/raw/$$name"; cp -r "$(SHARED_RAW)/$$name" data/raw/; done
	dvc add $(addprefix data/raw/,$(FULL_SOURCES))

clean:                  ## remove pipeline outputs (not the environment)
	rm -rf data/interim data/processed metrics logs .snakemake
