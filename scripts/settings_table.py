"""Print (or, with --write, put into README.md) the table of every setting of every service.

Generated from the pydantic settings classes so the README cannot drift from the code;
tests/test_readme.py fails when the README's table is stale.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from ctrops_common.settings import ENV_PREFIX, CommonSettings, ServiceSettings
from ctrops_common.stack import StackSettings

README = Path(__file__).resolve().parents[1] / "README.md"
SERVICES = ["gateway", "ingest", "trainer", "explainer", "reporter", "monitor", "scorer"]
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    found: list[tuple[str, type[BaseSettings]]] = [
        ("all services", CommonSettings), ("all services", ServiceSettings), ("make run", StackSettings)
    ]
    for service in SERVICES:
        module = importlib.import_module(f"ctrops_{service}.settings")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__:
                found.append((service, cls))
    return found


def env_names(name: str, field) -> list[str]:
    alias = field.validation_alias
    if alias is not None and hasattr(alias, "choices"):
        return [str(c) for c in alias.choices]
    return [(ENV_PREFIX + name).upper()]


def _default(field) -> str:
    if field.default_factory is not None:
        return "(computed)"
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):  # the default is in the code for all to read; a value set is not shown anywhere
        value = value.get_secret_value()
    return f"`{value}`" if str(value) != "" else "empty"


def rows() -> list[tuple[str, str, str, str]]:
    seen: dict[str, tuple[str, str, str, list[str]]] = {}
    for owner, cls in settings_classes():
        own = cls.model_fields if cls in (CommonSettings,) else {
            k: v for k, v in cls.model_fields.items()
            if not any(k in base.model_fields for base in cls.__mro__[1:] if isinstance(base, type)
                       and issubclass(base, BaseSettings) and base is not BaseSettings)
        }
        for name, field in own.items():
            names = " / ".join(f"`{n}`" for n in env_names(name, field))
            if names in seen:
                if owner not in seen[names][3]:
                    seen[names][3].append(owner)
                continue
            seen[names] = (names, _default(field), (field.description or "").replace("|", "\\|"), [owner])
    return [(n, d, desc, ", ".join(o)) for n, d, desc, o in seen.values()]


def table() -> str:
    lines = ["| variable | default | used by | meaning |", "|---|---|---|---|"]
    lines += [f"| {n} | {d} | {o} | {desc} |" for n, d, desc, o in rows()]
    return "\n".join(lines)


def readme_with_table(text: str) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    return pattern.sub(f"{START}\n{table()}\n{END}", text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args()
    if args.write:
        README.write_text(readme_with_table(README.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
