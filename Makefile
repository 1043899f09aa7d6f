# The two commands of the README: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint fuzz up down clean bench

setup: $(STAMP) kafka-libs

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

kafka-libs: $(STAMP)
	$(BIN)/records fetch-kafka

up: setup
	$(BIN)/records up

down:
	@if [ -x $(BIN)/records ]; then $(BIN)/records down; fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	@rm -f .cache/pytest-report.xml
	$(BIN)/pytest -q --junitxml=.cache/pytest-report.xml
	@# pytest writes its report last: a run cut short by a process exit (exit status 0 or not)
	@# leaves none, and must not pass
	@test -s .cache/pytest-report.xml || { echo "pytest ended without writing its report: the run was cut short" >&2; exit 1; }

# Longer fuzzing of the decoders and the enforcement (tests/unit/test_fuzz.py): 5,000
# examples per property instead of the ~200 `make test` runs.
fuzz: setup
	FUZZ_PROFILE=long $(BIN)/pytest -q -p no:cacheprovider tests/unit/test_fuzz.py

demo: setup
	$(BIN)/records demo --reset

# The throughput benchmark on a fresh stack of its own; `make bench BENCH_ARGS=--quick` for ~50k events.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: setup $(BENCH_STAMP)
	$(BIN)/records bench $(BENCH_ARGS)

clean: down
	rm -rf .data reports
