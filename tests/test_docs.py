"""The README documents every command (as sqlite-utils' tests/test_docs.py does for its CLI)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from newsletter.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def command_paths() -> list[str]:
    """Every registered command and subcommand, as typed after `newsletter` (hidden ones too)."""
    found: list[str] = []

    def walk(command, path: list[str]) -> None:  # noqa: ANN001 (a click command or group)
        subcommands = getattr(command, "commands", {})
        if path and not subcommands:
            found.append(" ".join(path))
        for name, sub in subcommands.items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return sorted(found)


def test_the_commands_are_found():
    paths = command_paths()
    assert {"send", "run", "hash-password", "subscribers import", "subscribers list"} <= set(paths)


@pytest.mark.parametrize("command", command_paths())
def test_every_command_is_in_the_readme(command):
    assert re.search(rf"`?newsletter {re.escape(command)}(?![\w-])", README), (
        f"`newsletter {command}` is missing from README.md: add it to the command list"
    )
