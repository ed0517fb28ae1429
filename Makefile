# One way to run everything: make demo, make test, make bench, make lint.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the package metadata changes.
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: demo test bench lint format validate system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench,spark]"
	touch $@ $(RUN_STAMP)

## demo: simulate an organisation, ingest it through the real path, print the board summary
demo: $(RUN_STAMP)
	$(BIN)/yieldmeter demo

## test: the whole test suite (installs test extras and the Debian packages tests need)
test: $(TEST_STAMP) system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

## system-deps: Debian packages some tests drive (a headless browser, PDF tools, Java for Spark)
system-deps:
	@sh scripts/system-deps.sh

## bench: every benchmark in benchmarks/, figures written to benchmarks/results/
bench: $(TEST_STAMP)
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

## validate: the validity report of the value measures on simulated organisations
validate: $(RUN_STAMP)
	$(BIN)/yieldmeter validate --suite --results benchmarks/results/validity.json --doc docs/validity.md

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(TEST_STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
