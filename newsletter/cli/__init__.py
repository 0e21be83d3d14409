"""The `newsletter` command: thin commands that open the store and call the core.

    context.py      consoles, settings, the store, the --date option
    setup.py        init
    subscribers.py  subscribers import | export | add | remove | list
    editions.py     articles, preview, status, retry
    send.py         send (dry run, rebuild, test send, --workers N, progress)
    service.py      run (the scheduler), serve, capture, inbound, hash-password
    doctor.py       doctor (the pre-flight checks before the first real send)
    demo.py         demo (what `make demo` runs)

Every command is registered below, in one list. The decisions are the
application layer's (`newsletter.app`); commands turn its outcomes into lines
and exit codes. Every error the core raises on purpose is a NewsletterError;
`main` prints it as one line (where: what (how to fix)) and exits 1, instead of
a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer

from newsletter.cli import demo, doctor, editions, send, service, setup, subscribers
from newsletter.cli.context import err
from newsletter.errors import NewsletterError

app = typer.Typer(
    help="Publish a daily newsletter: articles in, one email to every subscriber out.\n\n"
    "Example: newsletter preview --date 2026-11-25 && newsletter send --date 2026-11-25",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
subscribers_app = typer.Typer(
    help="Manage the subscriber list.\n\nExample: newsletter subscribers import list.csv",
    no_args_is_help=True,
)

app.command()(setup.init)
app.add_typer(subscribers_app, name="subscribers")
subscribers_app.command("import")(subscribers.import_)
subscribers_app.command("export")(subscribers.export)
subscribers_app.command("add")(subscribers.add)
subscribers_app.command("remove")(subscribers.remove)
subscribers_app.command("list")(subscribers.list_)
app.command()(editions.articles)
app.command()(editions.preview)
app.command()(send.send)
app.command()(editions.status)
app.command()(editions.retry)
app.command()(service.run)
app.command()(service.serve)
app.command("hash-password")(service.hash_password)
app.command()(service.inbound)
app.command()(service.capture)
app.command()(doctor.doctor)
app.command()(demo.demo)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except NewsletterError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)  # one line
        sys.exit(1)
