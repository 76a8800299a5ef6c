"""``--help`` per app (issue 17): its own groups, every option with its one-line description, examples.

The descriptions come from the config files' leading comments
(`nas.cli.app_help.description`), so these tests read conf/ for what to expect:
a strategy config added without a description, or missing from the help,
fails here.
"""

import os
import subprocess
import sys

import pytest

from nas.cli.app_help import description

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(REPO, "conf")


def _help(module: str) -> str:
    proc = subprocess.run([sys.executable, "-m", f"nas.cli.{module}", "--help"], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def search_help():
    return _help("search")


def _options(group: str) -> dict[str, str]:
    folder = os.path.join(CONF, group)
    return {name[:-5]: description(open(os.path.join(folder, name), encoding="utf-8").read())
            for name in sorted(os.listdir(folder)) if name.endswith(".yaml")}


def _listed(text: str, name: str, about: str) -> bool:
    """Whether `text` has a line starting with the option's name followed by its (possibly wrapped) description."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if words and words[0] == name:
            shown = " ".join(line.split()[1:]).lstrip("* ").strip()
            following = [more.strip() for more in lines[i + 1:i + 4] if more.startswith(" " * 8)]
            if " ".join([shown, *following]).startswith(about):
                return True
    return False


def test_every_search_strategy_has_a_one_line_description():
    for name, about in _options("search").items():
        assert about, f"conf/search/{name}.yaml: its first comment line must describe the strategy"
        assert len(about) <= 100 and about.endswith("."), f"conf/search/{name}.yaml: {about!r}"


def test_search_help_lists_every_strategy_and_data_source_with_its_description(search_help):
    for group in ("search", "data"):
        for name, about in _options(group).items():
            assert _listed(search_help, name, about), f"{group}={name} missing from nas-search --help"
    assert "random *" in search_help  # the default is marked


def test_search_help_names_only_the_groups_it_uses_and_has_examples(search_help):
    assert "nas-search:" in search_help.splitlines()[0]
    for heading in ("Strategies: search=NAME", "Data: data=NAME", "Optimizer: optimizer=NAME", "Examples"):
        assert heading in search_help
    assert "model=" not in search_help  # nas-search builds its models from the strategy's space
    assert "Powered by Hydra" not in search_help and "$$" not in search_help  # escaped once, not twice
    assert "max_trials: 12" in search_help and "???" not in search_help  # the settings, as composed


def test_train_and_eval_help_describe_their_own_groups():
    train = _help("train")
    assert train.startswith("nas-train:") and "Model: model=NAME" in train and "search=" not in train
    for name, about in _options("model").items():
        assert _listed(train, name, about) or name in train
    evaluate = _help("evaluate")
    assert evaluate.startswith("nas-eval:") and "checkpoint=DIR" in evaluate
    for absent in ("model=", "search=", "optimizer=", "Optimizer"):
        assert absent not in evaluate


def test_a_description_is_the_first_sentence_of_the_leading_comment():
    assert description("# One. Two.\n# more\nkey: 1\n") == "One."
    assert description("# Spans\n# two lines.\n#\n# Later.\n") == "Spans two lines."
    assert description("# Example follows\n#   nas-search x=1\n") == "Example follows"
    assert description("key: 1\n") == ""
