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
# focus-validator 2.x carries the FOCUS 1.2 rule set and needs Python >= 3.12 (Debian 12 ships 3.11):
# a 3.12+ interpreter under pyenv (pyenv's shims fail for a version that is not active), else on the
# PATH; none found -> the 1.2 validator test skips, saying so.
FOCUS12_PYTHON ?= $(firstword $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.1[2-9]*/bin/python3) \
	$(shell for p in python3.12 python3.13; do $$p -c '' 2>/dev/null && command -v $$p && break; done))
FOCUS12_VENV := .venv-focus12
FOCUS12_VALIDATOR := $(FOCUS12_VENV)/bin/focus-validator

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

# pyarrow<21: focus-validator 2.2.1 pins numpy<2, and newer pyarrow wheels refuse numpy 1.x at import
$(FOCUS12_VALIDATOR):
	@if [ -n "$(FOCUS12_PYTHON)" ]; then \
	  $(FOCUS12_PYTHON) -m venv $(FOCUS12_VENV) && \
	  $(FOCUS12_VENV)/bin/python -m pip install --quiet focus-validator==2.2.1 "pyarrow<21"; \
	else echo "no Python >= 3.12 found (set FOCUS12_PYTHON): the FOCUS 1.2 validator test will skip"; fi

## test: the whole test suite (installs test extras, focus-validator and the Debian packages tests need)
test: $(TEST_STAMP) $(FOCUS_VALIDATOR) $(FOCUS12_VALIDATOR) system-deps
	YIELDMETER_FOCUS_VALIDATOR=$(CURDIR)/$(FOCUS_VALIDATOR) \
	YIELDMETER_FOCUS12_VALIDATOR=$(CURDIR)/$(FOCUS12_VALIDATOR) \
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

## fuzz: the suite with fresh random examples in the property tests (make test replays fixed ones)
fuzz: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --hypothesis-profile=explore

## system-deps: Debian packages some tests drive (a headless browser, PDF tools, Java for Spark)
system-deps:
	@sh scripts/system-deps.sh

## bench: every benchmark in benchmarks/, figures written to benchmarks/results/
## (BENCH=pricing, or BENCH="pricing ingest", runs those only)
BENCH ?=
bench: $(TEST_STAMP)
	@set -e; for b in $(if $(BENCH),$(patsubst %,benchmarks/bench_%.py,$(BENCH)),benchmarks/bench_*.py); do \
		echo "== $$b"; $(BIN)/python $$b; done

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
	rm -rf $(VENV) $(FOCUS_VENV) $(FOCUS12_VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
