"""Where the project's configs live: one rule for the CLI, the Python API and library code reading a conf/ file.

The configs live in the repository's top-level ``conf/`` (the design card's
layout) and ``nas/conf`` links to it, so they ship inside the package
(setup.cfg's package data): a wheel install and an editable one both find
them here. ``NAS_CONFIG_DIR=DIR`` points everything at another tree. Hydra
would read a relative ``config_path`` as a Python package when an entry point
runs as an installed module, so callers get this absolute directory.
"""

import os

CONFIG_DIR = os.environ.get("NAS_CONFIG_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf"))
