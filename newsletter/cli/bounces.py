"""`newsletter bounces`: read what arrived at BOUNCE_ADDRESS and record it per delivery."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from newsletter.cli.context import console, engine_of, err, settings_of
from newsletter.errors import MailboxError, StoreUnavailable

#: How often a waiting `--every` loop looks for a stop signal.
_STOP_SLICE = 0.2


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
            help="Process every message in this IMAP mailbox: imaps://user@host/INBOX (the "
            "password from NEWSLETTER_BOUNCE_IMAP_PASSWORD, or in the URL).",
        ),
    ] = None,
    every: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            min=1,
            help="Keep going: read the Maildir or mailbox again every SECONDS until stopped "
            "(SIGTERM, Ctrl-C). A poll that fails (server down, database busy) is one line, "
            "and the next poll tries again.",
        ),
    ] = None,
) -> None:
    """Record the bounces and complaints that came back to the bounce address.

    Reads delivery reports (and feedback-loop complaints) from a Maildir, an IMAP
    mailbox, or one message on stdin (a mail server's pipe). A hard bounce counts
    towards BOUNCE_LIMIT, soft ones towards SOFT_BOUNCE_LIMIT, a complaint
    unsubscribes. Each message is moved to a folder named for its outcome
    (.processed, .ignored, .unknown, .poison); reading one twice counts it once.

    Example: newsletter bounces --imap imaps://bounces@mail.example.org/INBOX --every 300
    """
    from newsletter.bounces.mailbox import process_imap, process_maildir, process_stream

    if maildir is not None and imap is not None:
        err.print("give --maildir or --imap, not both")
        raise typer.Exit(2)
    if every is not None and maildir is None and imap is None:
        err.print("--every needs --maildir or --imap (stdin is one message)")
        raise typer.Exit(2)
    settings = settings_of(ctx)
    engine = engine_of(settings)
    if maildir is None and imap is None:
        _show([process_stream(engine, settings)])
        return
    if maildir is not None:
        folder = maildir
        poll = lambda: process_maildir(engine, settings, folder)  # noqa: E731
    else:
        url = imap or ""
        poll = lambda: process_imap(engine, settings, url)  # noqa: E731
    if every is None:
        _show(poll())
        return
    _poll_until_stopped(poll, every)


def _poll_until_stopped(poll: Callable[[], list], every: float) -> None:
    """Poll, then wait `every` seconds, until SIGTERM or SIGINT: the poll under way
    finishes its message (each is bounded: MAX_PER_RUN messages, IMAP_TIMEOUT), then
    the command ends with exit code 0. A poll that fails is one line, and the next
    poll tries again: a mail server restarting must not end the service."""
    stop = {"asked": False}

    def asked(*_: object) -> None:
        stop["asked"] = True  # a plain assignment: no lock taken inside a handler

    previous = {sig: signal.signal(sig, asked) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop["asked"]:
            try:
                results = poll()
            except (MailboxError, StoreUnavailable) as exc:
                err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            else:
                if results:
                    _show(results)
            deadline = time.monotonic() + every
            while not stop["asked"] and time.monotonic() < deadline:
                time.sleep(min(_STOP_SLICE, max(0.0, deadline - time.monotonic())))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopped")


def _show(results: list) -> None:
    from newsletter.bounces.record import BounceOutcome

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
