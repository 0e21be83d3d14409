"""What every command shares: the two consoles, the settings, the store, the --date option."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine

from newsletter.config import Settings, load_settings
from newsletter.errors import InputError
from newsletter.logs import configure_logging
from newsletter.store.engine import open_engine

console = Console()
err = Console(stderr=True)

DateOption = Annotated[
    str | None,
    typer.Option(
        "--date", "-d", metavar="YYYY-MM-DD", help="The day; default: today in NEWSLETTER_TIMEZONE."
    ),
]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings (environment and .env), loaded once per command, with logging set up."""
    if ctx.obj is None:
        ctx.obj = load_settings()
        configure_logging(ctx.obj.log_level, ctx.obj.log_format)
    return ctx.obj


def engine_of(settings: Settings) -> Engine:
    """The store, which `newsletter init` must have made: a command never creates or
    upgrades a database (see store/engine.py), it says to run `init`."""
    return open_engine(settings.database_url)


def parse_date(value: str | None, settings: Settings) -> dt.date:
    if value is None:
        return settings.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"not a date: {value!r}", where="--date", hint="write it as YYYY-MM-DD"
        ) from None
