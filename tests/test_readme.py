"""README.md keeps its promises: the two commands, and a settings table that matches the code."""

from __future__ import annotations

from pathlib import Path

from ctrops_common.testing import load_script

ROOT = Path(__file__).resolve().parents[1]


def _settings_table_module():
    return load_script(ROOT / "scripts" / "settings_table.py")


def test_readme_settings_table_is_current():
    module = _settings_table_module()
    readme = (ROOT / "README.md").read_text()
    assert module.readme_with_table(readme) == readme, "run: .venv/bin/python scripts/settings_table.py --write"


def test_every_setting_has_a_description():
    module = _settings_table_module()
    missing = [name for name, _, description, _ in module.rows() if not description]
    assert not missing, f"settings without description=: {missing}"


def test_readme_documents_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
