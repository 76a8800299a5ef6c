"""Shared fixtures: real datasets, loaded once per session."""

import os
import tempfile

import pytest

# Every nas-search / nas-train a test runs (in this process or a subprocess) appends to the lifelong
# database of experiments (nas.lde): point it at a throw-away file, never the developer's ~/.cache one.
# Set, not setdefault: a developer's own NAS_LDE_PATH must not collect test runs either.
os.environ["NAS_LDE_PATH"] = os.path.join(tempfile.mkdtemp(prefix="nas-test-lde-"), "lde.sqlite")


@pytest.fixture(scope="session")
def digits():
    from nas.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_regression():
    from nas.data import load_dataset

    return load_dataset("digits", regression=True)
