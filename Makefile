# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each (re)builds the project's virtualenv in .venv when setup.cfg changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-all bench clean fashion-data optuna-current

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The embedded default: random search on scikit-learn's digits, on CPU.
demo: $(STAMP)
	$(BIN)/nas-search

# Debian's Fashion-MNIST IDX files, which the Fashion-MNIST tests read (no download at run time).
fashion-data:
	@if [ ! -d $(FASHION_DIR) ] && [ -z "$$NAS_FASHION_MNIST_DIR" ] && command -v apt-get >/dev/null; then \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi

# The default test run (slow end-to-end checks excluded; `make test-all` runs them too).
test: $(STAMP) fashion-data
	$(BIN)/python -m pytest -m "not slow" --durations=15

test-all: $(STAMP) fashion-data
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py

# Optuna's current release, for benchmarks/sweeper_vs_optuna.py: its own venv, because
# hydra-optuna-sweeper (in .venv) pins optuna 2.x. torch is GPSampler's; greenlet lets it
# optimise its acquisition in batches. On a CPU-only machine TORCH='torch==<version>+cpu'
# (from a CPU wheel index or directory) saves CUDA's libraries.
OPTUNA_VENV := $(VENV)/optuna-current
TORCH ?= torch
optuna-current: $(OPTUNA_VENV)/.installed

$(OPTUNA_VENV)/.installed:
	test -x $(OPTUNA_VENV)/bin/python || $(PYTHON) -m venv $(OPTUNA_VENV)
	$(OPTUNA_VENV)/bin/python -m pip install --quiet 'optuna>=4' scipy greenlet '$(TORCH)'
	touch $@

clean:
	rm -rf $(VENV) runs outputs .pytest_cache .hypothesis *.egg-info
