"""`newsletter demo` (what `make demo` runs): the example list, a capture server, one edition.

Everything it reads ships inside the package (the sample site and the built-in
templates, `packaged.py`), and it makes its own secret key and ignores any .env,
so it runs the same from any directory; what it writes goes under --workdir.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from newsletter import app as core
from newsletter import subscribers as subscriber_ops
from newsletter.cli.context import console
from newsletter.cli.editions import write_preview
from newsletter.cli.send import print_summary, send_with_progress
from newsletter.config import Settings, load_settings
from newsletter.delivery import SendSummary
from newsletter.errors import InputError
from newsletter.packaged import sample_site
from newsletter.store.engine import open_engine


def demo(
    workdir: Annotated[
        Path, typer.Option(metavar="DIR", help="Where the demo keeps its files.")
    ] = Path("var/demo"),
) -> None:
    """The `make demo` run: import the example list, capture SMTP locally, send the newest day.

    Example: newsletter demo --workdir /tmp/demo
    """
    from newsletter.capture import start_capture

    if workdir.exists():
        shutil.rmtree(workdir)
    maildir = workdir / "maildir"
    preview_dir = workdir / "preview"
    sample = sample_site()
    example_list = sample / "subscribers" / "example.csv"
    controller = start_capture(maildir)
    try:
        settings = load_settings(
            _env_file=None,  # a site's .env (its relay, its database) is not the demo's
            database_url=f"sqlite:///{workdir / 'newsletter.db'}",
            articles_source=str(sample / "articles"),
            templates_dir=None,
            smtp_host="127.0.0.1",
            smtp_port=controller.port,
            smtp_security="none",
            smtp_username="",
            concurrency=4,
            rate_limit=0,
            secret_key=secrets.token_urlsafe(32),  # the demo's own: nothing it signs outlives it
        )
        from newsletter.store.migrate import upgrade  # Alembic: only when asked

        upgrade(settings.database_url)  # the demo's own database, made the way `init` makes one
        engine = open_engine(settings.database_url)
        report = subscriber_ops.import_csv(engine, example_list)
        console.print(f"imported {report.added} subscribers from the example list")
        dates = core.source_dates(settings)
        if not dates:
            raise InputError("no article days found", where=settings.articles_source)
        day_date = dates[-1]
        write_preview(engine, settings, day_date, preview_dir)
        print_summary(_send(engine, settings, day_date))
        again = _send(engine, settings, day_date)
        console.print(f"sending again delivered {again.sent} (each subscriber gets it once)")
    finally:
        controller.stop()
    captured = len(list((maildir / "new").iterdir()))
    console.print()
    console.print(f"[bold]captured messages:[/] {maildir / 'new'} ({captured} files, .eml-style)")
    console.print(f"[bold]preview:[/] {preview_dir / 'edition.html'} (open in a browser)")
    console.print(f"[bold]text part:[/] {preview_dir / 'edition.txt'}")
    console.print(f"[bold]database:[/] {workdir / 'newsletter.db'}")


def _send(engine: Engine, settings: Settings, day_date: dt.date) -> SendSummary:
    start = core.prepare_send(engine, settings, day_date)
    match start:
        case core.Ready():
            return send_with_progress(engine, settings, start).summary
        case core.AlreadySent():
            return start.summary
        case _:
            raise InputError(f"no edition to send for {day_date}", where=settings.articles_source)
