"""Shared fixtures: real datasets, loaded once per session."""

import pytest


@pytest.fixture(scope="session")
def digits():
    from nas.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_regression():
    from nas.data import load_dataset

    return load_dataset("digits", regression=True)
