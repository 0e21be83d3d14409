"""The `newsletter` command: thin commands that open the store and call the core.

    context.py      consoles, settings, the store, the --date option
    setup.py        init
    subscribers.py  subscribers import | export | add | remove | list
    editions.py     articles, preview, status, retry
    send.py         send (dry run, rebuild, test send, --workers N, progress)
    service.py      run (the scheduler), serve, capture, inbound, hash-password
    doctor.py       doctor (the pre-flight checks before the first real send)
    demo.py         demo (what `make demo` runs)
    sessions.py     logout-everywhere (end every editor session)
    bounces.py      bounces (reports that came back to BOUNCE_ADDRESS)

Every command is registered below, in one list. The decisions are the
application layer's (`newsletter.app`); commands turn its outcomes into lines
and exit codes. Every error the core raises on purpose is a NewsletterError;
`main` prints it as one line (where: what (how to fix)) and exits 1, instead of
a traceback.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup, TyperOption

from newsletter.cli import (
    bounces,
    demo,
    doctor,
    editions,
    send,
    service,
    sessions,
    setup,
    subscribers,
)
from newsletter.cli.context import console, err
from newsletter.errors import NewsletterError


class _Command(TyperCommand):
    """A command whose --help shows flags bare: `--dry-run`, not `--dry-run <bool>`."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _Group(TyperGroup):
    """The same for a group's own options (`newsletter --help`, `--version`)."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


def _flags_without_type(params: list[Any]) -> list[Any]:
    """Why `<bool>` at all: Typer (0.29, which carries its own copy of click) draws the rich
    help panel with `TyperOption.display_type_rich` for every option, flags included,
    though a flag takes no value (its plain help skips them). That method returns the
    metavar when one is set, so a flag gets an empty one. Every command and group is
    built with the classes above, so every --help is alike (tests/test_cli_manners.py)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


app = typer.Typer(
    cls=_Group,
    help="Publish a daily newsletter: articles in, one email to every subscriber out.\n\n"
    "Example: newsletter preview --date 2026-11-25 && newsletter send --date 2026-11-25",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
subscribers_app = typer.Typer(
    cls=_Group,
    help="Manage the subscriber list.\n\nExample: newsletter subscribers import list.csv",
    no_args_is_help=True,
)


def _print_version(wanted: bool) -> None:
    if not wanted:
        return
    try:
        number = version("newsletter")
    except PackageNotFoundError:  # run from a checkout that was never installed
        number = "unknown (not installed; pip install it)"
    console.print(f"newsletter {number}", highlight=False)
    raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    pass


command = partial(app.command, cls=_Command)
subcommand = partial(subscribers_app.command, cls=_Command)

command()(setup.init)
app.add_typer(subscribers_app, name="subscribers")
subcommand("import")(subscribers.import_)
subcommand("export")(subscribers.export)
subcommand("add")(subscribers.add)
subcommand("remove")(subscribers.remove)
subcommand("list")(subscribers.list_)
command()(editions.articles)
command()(editions.preview)
command()(send.send)
command()(editions.status)
command()(editions.retry)
command()(service.run)
command()(service.serve)
command("hash-password")(service.hash_password)
command("logout-everywhere")(sessions.logout_everywhere)
command()(service.inbound)
command()(bounces.bounces)
command()(service.capture)
command()(doctor.doctor)
command()(demo.demo)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except NewsletterError as exc:
        # One line however narrow the terminal; the message is text, never markup.
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
