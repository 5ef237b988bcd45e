# A thin Makefile: it only calls the tools. `make run` and `make test` are the whole set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN_STAMP := $(VENV)/.example-stamp

.PHONY: help install run test lint typecheck pytest conformance docs docs-serve bench stress clean

help:
	@echo "make run    - install into $(VENV) and serve the example app on http://127.0.0.1:8000"
	@echo "make test   - install, lint, type check and run the tests"
	@echo "make conformance - httpx's own test suite on PoolTransport, and the tests against nginx"
	@echo "make lint | typecheck | docs | bench | stress | clean"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# `make run` installs only what the example app needs (the `example` extra), with pip's
# progress shown, then serves it; the banner prints the URLs once it listens.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing httpool and the example app's few dependencies into $(VENV)..."
	$(BIN)/python -m pip install --progress-bar on -e ".[example]"
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m example_app

lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy src tests

pytest: install
	$(BIN)/pytest --cov --cov-report=term

test: lint typecheck pytest

# httpx's CLI extra pins rich below 14, which import-linter's progress display cannot run
# on: the conformance tools get a venv of their own, so `make lint` keeps working after.
CONF_VENV ?= .venv-conformance
CONF_STAMP := $(CONF_VENV)/.installed-stamp

$(CONF_STAMP): pyproject.toml
	$(PYTHON) -m venv $(CONF_VENV)
	$(CONF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CONF_VENV)/bin/python -m pip install --quiet -e ".[conformance]"
	touch $(CONF_STAMP)

conformance: $(CONF_STAMP)
	$(CONF_VENV)/bin/python -m tests.conformance
	$(CONF_VENV)/bin/pytest -m nginx

# BENCH_ARGS: options of `python -m bench`, e.g. BENCH_ARGS="--baseline bd45b69 --only e2e"
bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)

stress: install
	$(BIN)/python -m tests.stress --requests 50000 --concurrency 200

docs: install
	$(BIN)/mkdocs build --strict

docs-serve: install
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) $(CONF_VENV) site .pytest_cache .mypy_cache .ruff_cache .coverage .cache
