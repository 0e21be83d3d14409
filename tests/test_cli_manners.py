"""How the command behaves as a program: busy ports, --version, --help, hints, whole links.

a taken port         `serve` and `capture` exit 1 with one line naming the port
                     and the fix, and announce nothing (real subprocesses)
--version            the installed package's version
--help               every command's flags shown bare: `--dry-run`, not `--dry-run <bool>`
hints                every `newsletter …` named in the package's messages is a real command
articles             whole links at a narrow terminal (COLUMNS=80)
"""

from __future__ import annotations

import ast
import datetime as dt
import re
import socket
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperOption
from typer.testing import CliRunner

from newsletter import app as core
from newsletter.cli import app

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "newsletter"
DAY = "2026-11-25"


# A taken port


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on (on every address, as a careless server would)."""
    with socket.socket() as other:
        other.bind(("0.0.0.0", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "capture"])
def test_a_taken_port_is_one_line_and_exit_1(cli_env, taken_port, command, tmp_path):
    cli_env["COLUMNS"] = "60"  # the line stays one line on a narrow terminal
    extra = ["--maildir", str(tmp_path / "maildir")] if command == "capture" else []
    result = cli_env.run(command, "--port", str(taken_port), *extra, check=False)
    assert result.returncode == 1
    assert result.stdout == ""  # nothing announced: it was never listening
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: --port: port {taken_port} on 127.0.0.1 is already in use")
    assert "choose another port with --port" in line


# --version and --help


def test_version_is_the_installed_packages():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"newsletter {version('newsletter')}\n"


def commands() -> dict[str, object]:
    """Every command and group by the words typed after `newsletter` ('' is the top)."""
    found: dict[str, object] = {}

    def walk(command, path: list[str]) -> None:  # noqa: ANN001 (a Typer command or group)
        found[" ".join(path)] = command
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def flags_of(command) -> list[str]:  # noqa: ANN001
    return [
        opt
        for param in command.params
        if isinstance(param, TyperOption) and param.is_flag and not param.hidden
        for opt in param.opts
    ]


def test_the_commands_and_their_flags_are_found():
    found = commands()
    assert {"", "subscribers", "send", "subscribers remove", "capture"} <= set(found)
    assert {"--dry-run", "--rebuild"} <= set(flags_of(found["send"]))
    assert "--version" in flags_of(found[""])


@pytest.mark.parametrize("path", sorted(commands()))
def test_help_shows_flags_without_a_type(path):
    result = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output, result.output
    for flag in ["--help", *flags_of(commands()[path])]:
        [line] = [
            line for line in result.output.splitlines() if re.match(rf"[│\s]*{flag}(?![\w-])", line)
        ]
        assert not line.split(flag, 1)[1].strip().startswith("<"), line


# Hints name real commands

MENTION = re.compile(r"(`|<code>|Example: |\$ )?newsletter ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")


def package_texts() -> Iterator[tuple[str, str]]:
    """Every string in the package's code (messages, hints, help) and every template, by place."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield f"{path.relative_to(ROOT)}:{node.lineno}", node.value
    for folder in (ROOT / "templates", PACKAGE):
        for path in sorted(folder.rglob("*")):
            if path.suffix in {".j2", ".html", ".txt"} and path.is_file():
                yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


def unknown_commands(texts) -> list[str]:  # noqa: ANN001
    """Mentions of `newsletter WORD [WORD]` that name no command.

    A known command (or a group with one of its subcommands) is fine. An unknown
    word is prose ("the newsletter is sent") unless the mention is marked as a
    command: in backticks or <code>, after "Example: " or a shell prompt.
    """
    known = commands()
    bad = []
    for where, text in texts:
        for found in MENTION.finditer(text):
            marked, first, second = found.groups()
            group = known.get(first)
            if group is not None and hasattr(group, "commands"):
                if second is not None and second not in group.commands:
                    bad.append(f"{where}: {found.group(0)}")
            elif group is None and marked:
                bad.append(f"{where}: {found.group(0)}")
    return bad


def test_every_command_a_message_names_is_real():
    assert unknown_commands(package_texts()) == []


def test_the_hint_check_reads_the_package_and_catches_a_wrong_command():
    texts = list(package_texts())
    named = {m.group(2) for _, text in texts for m in MENTION.finditer(text)}
    assert {"send", "retry", "init", "subscribers", "hash-password"} <= named
    wrong = [("a.py:1", "find it with `newsletter subscribers search PART`")]
    wrong += [("b.py:2", "run `newsletter doctr` first"), ("c.py:3", "the newsletter is sent")]
    assert unknown_commands(wrong) == [
        "a.py:1: `newsletter subscribers search",
        "b.py:2: `newsletter doctr",
    ]


# articles: whole links


def test_articles_shows_whole_links_on_a_narrow_terminal(cli_env, settings, articles_dir):
    long_url = "https://example.org/" + "/".join(["a-rather-long-path-segment"] * 6) + "?ref=daily"
    (articles_dir / DAY / "09-long-link.json").write_text(
        '{"headline": "A Story With a Long Link", "summary": "Text.", '
        f'"url": "{long_url}", "source": "example.org", "date": "{DAY}"}}'
    )
    urls = [a.url for a in core.day_articles(settings, dt.date.fromisoformat(DAY)).articles]
    assert long_url in urls and len(urls) == 6 and all(urls)

    cli_env["COLUMNS"] = "80"
    listed = cli_env.run("articles", "--date", DAY)
    lines = [line.strip() for line in listed.stdout.splitlines()]
    for url in urls:
        assert url in lines, f"{url} is not whole on a line of its own in:\n{listed.stdout}"
    assert "…" not in listed.stdout
    assert "A Story With a Long Link" in listed.stdout
