"""Shared fixtures: real datasets, loaded once per session."""

import os

import pytest

# Two CPU cores: keep XLA from oversubscribing them in every test process.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")


@pytest.fixture(scope="session")
def digits():
    from nas.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_regression():
    from nas.data import load_dataset

    return load_dataset("digits", regression=True)
