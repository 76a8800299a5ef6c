# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each (re)builds the project's virtualenv in .venv when setup.cfg changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The embedded default: random search on scikit-learn's digits, on CPU.
demo: $(STAMP)
	$(BIN)/nas-search

# The default test run (slow end-to-end checks excluded; `make test-all` runs them too).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs outputs .pytest_cache .hypothesis *.egg-info
