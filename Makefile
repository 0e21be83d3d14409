# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv itself; `make test` also installs the system tools the
# tests use (spamassassin, postfix's smtp-sink, chromium) when run as root.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/newsletter demo

system-deps:
	bash scripts/install-system-deps.sh

# DB=postgresql runs the whole suite against a throwaway PostgreSQL 15 cluster instead.
DB ?= sqlite
# Test files run in WORKERS processes (pytest-xdist; each file stays in one process, so a
# module's servers start once). Much of the suite waits on subprocesses, locks and sockets.
WORKERS ?= 2

test: $(STAMP) system-deps
	$(BIN)/ruff check newsletter tests
	$(BIN)/pytest -q --db=$(DB) -n $(WORKERS) --dist loadfile

# The benchmark (see BENCHMARKS.md): about 10 minutes; bench-quick proves it works in < 1.
.PHONY: bench bench-quick
bench: $(STAMP) system-deps
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(STAMP) system-deps
	$(BIN)/python -m bench.run --quick $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check newsletter tests
	$(BIN)/ruff format --check newsletter tests

clean:
	rm -rf $(VENV) var .pytest_cache
