"""`records NAME ...` imports only the command module that registers NAME
(records/cli/__init__.py): the table of modules and names must say exactly what each
module registers, and together they must be every command `records --help` lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from typer.main import get_command

from records.cli import _MODULES, build_app


def _names(app: typer.Typer) -> set[str]:
    return set(get_command(app).commands)  # type: ignore[attr-defined]


def test_each_command_builds_only_its_module_and_the_table_names_every_command() -> None:
    for module, names in _MODULES:
        for name in names:
            assert _names(build_app(name)) == set(names), (module, name)
    assert _names(build_app()) == {name for _, names in _MODULES for name in names}
    assert _names(build_app("no-such-command")) == _names(build_app())  # typer then says it is unknown


def test_an_unknown_command_is_still_refused_by_name() -> None:
    records = str(Path(sys.executable).with_name("records"))
    result = subprocess.run([records, "no-such-command"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "No such command 'no-such-command'" in result.stderr
