"""`newsletter bounces`: read what arrived at BOUNCE_ADDRESS and record it per delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from newsletter.cli.context import console, engine_of, err, settings_of


def bounces(
    ctx: typer.Context,
    maildir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Process every new message in this Maildir."),
    ] = None,
    imap: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Process every message in this IMAP mailbox: imaps://user:password@host/INBOX.",
        ),
    ] = None,
) -> None:
    """Record the bounces and complaints that came back to the bounce address.

    Reads delivery reports (and feedback-loop complaints) from a Maildir, an IMAP
    mailbox, or one message on stdin (a mail server's pipe). A hard bounce counts
    towards BOUNCE_LIMIT, soft ones towards SOFT_BOUNCE_LIMIT, a complaint
    unsubscribes. Each message is moved to a folder named for its outcome
    (.processed, .ignored, .unknown, .poison); reading one twice counts it once.

    Example: newsletter bounces --maildir /var/mail/bounces
    """
    from newsletter.bounces.mailbox import process_imap, process_maildir, process_stream
    from newsletter.bounces.record import BounceOutcome

    if maildir is not None and imap is not None:
        err.print("give --maildir or --imap, not both")
        raise typer.Exit(2)
    settings = settings_of(ctx)
    engine = engine_of(settings)
    if maildir is not None:
        results = process_maildir(engine, settings, maildir)
    elif imap is not None:
        results = process_imap(engine, settings, imap)
    else:
        results = [process_stream(engine, settings)]
    for result in results:
        who = result.email or (f"delivery {result.delivery_id}" if result.delivery_id else "?")
        line = f"{escape(who)}: {result.outcome.value} {escape(result.detail)}"
        if result.path is not None and result.outcome is not BounceOutcome.RECORDED:
            line += f" (now in {escape(str(result.path))})"
        console.print(line, highlight=False, soft_wrap=True)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    console.print(f"{len(results)} messages" + (f": {summary}" if summary else ""))
