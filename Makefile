# One way to run everything: make demo, make test, make bench, make lint.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the package metadata changes.
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed
# The FinOps Foundation's focus-validator pins libraries that break ibis: it gets a venv of its own.
FOCUS_VENV := .venv-focus
FOCUS_VALIDATOR := $(FOCUS_VENV)/bin/focus-validator

.PHONY: demo test fuzz bench lint format validate system-deps clean

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

$(FOCUS_VALIDATOR):
	$(PYTHON) -m venv $(FOCUS_VENV)
	$(FOCUS_VENV)/bin/python -m pip install --quiet focus-validator==1.0.0 "multimethod<2"

## test: the whole test suite (installs test extras, focus-validator and the Debian packages tests need)
test: $(TEST_STAMP) $(FOCUS_VALIDATOR) system-deps
	YIELDMETER_FOCUS_VALIDATOR=$(CURDIR)/$(FOCUS_VALIDATOR) $(BIN)/python -m pytest -q -n 2 --dist loadfile

## fuzz: the suite with fresh random examples in the property tests (make test replays fixed ones)
fuzz: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --hypothesis-profile=explore

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
	rm -rf $(VENV) $(FOCUS_VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
