"""The long-running and operator commands: run, serve, capture, inbound, hash-password."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.context import console, engine_of, settings_of
from newsletter.config import require_secret_key


def run(ctx: typer.Context) -> None:
    """Run the scheduler: send each day's edition at NEWSLETTER_SEND_TIME (Ctrl-C stops).

    Example: NEWSLETTER_SEND_TIME=06:30 NEWSLETTER_TIMEZONE=Europe/Paris newsletter run
    """
    from newsletter import scheduler
    from newsletter.app import check_sending
    from newsletter.cli.send import print_warnings

    settings = settings_of(ctx)
    require_secret_key(settings)
    engine = engine_of(settings)
    print_warnings(check_sending(engine, settings))  # refuses placeholders in earnest, first
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, scheduler.stop_on_signal)

    def started(next_run: dt.datetime) -> None:
        console.print(
            f"scheduler started: daily at {settings.send_time} {settings.timezone}, "
            f"next run {next_run:%Y-%m-%d %H:%M %Z}; Ctrl-C or SIGTERM stops it"
        )

    scheduler.run_scheduler(settings, on_started=started)
    console.print("scheduler stopped")


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on (0: any free one).", min=0, max=65535)
    ] = 8000,
) -> None:
    """Serve the web side: unsubscribe, sign-up, archive, and the editor at /editor.

    Behind a reverse proxy (deploy/nginx.conf), set NEWSLETTER_TRUSTED_PROXIES to
    its address so the client's address and https come from its headers. Slow or
    idle clients are closed after HTTP_HEADER_TIMEOUT / HTTP_KEEPALIVE_TIMEOUT, and
    connections beyond HTTP_MAX_CONNECTIONS are answered 503.

    Example: newsletter serve --port 8000   (then open http://127.0.0.1:8000/editor)
    """
    from newsletter.listen import listen
    from newsletter.web import create_app, server

    settings = settings_of(ctx)
    require_secret_key(settings)
    app = create_app(settings)
    sock = listen(host, port)  # a busy port stops here, with one line
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}"
    console.print(f"serving on {url} (editor: {url}/editor)", soft_wrap=True, highlight=False)
    sys.stdout.flush()  # under systemd or a pipe the line is seen now, not at exit
    server.run(app, settings, sock)


def hash_password(
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Print a hash of an editor password for NEWSLETTER_EDITOR_PASSWORD.

    Example: newsletter hash-password
    """
    from newsletter.web.security import hash_password as make_hash

    console.print(make_hash(password), highlight=False, soft_wrap=True)


def inbound(
    ctx: typer.Context,
    maildir: Annotated[
        Path | None,
        typer.Option(help="Process every new message in this Maildir; default: one from stdin."),
    ] = None,
) -> None:
    """Process mail sent to the unsubscribe address (List-Unsubscribe's mailto: link).

    Only messages carrying a valid signed token unsubscribe anyone. Handled
    messages move from new/ to cur/; one that cannot be read at all is set aside
    in the Maildir's .poison folder. Exit code 1 if any message was not honoured.

    Example: newsletter inbound --maildir /var/mail/unsubscribe
    """
    from newsletter.inbound import InboundStatus, process_maildir, process_stream
    from newsletter.tokens import signer_for

    settings = settings_of(ctx)
    engine = engine_of(settings)
    signer = signer_for(settings)
    if maildir is None:
        results = [process_stream(engine, signer)]
    else:
        results = process_maildir(engine, signer, maildir)
    for result in results:
        mark = "" if result.honoured else "[yellow]not honoured:[/] "
        console.print(f"{mark}{result.sender or '?'}: {result.status.value} {result.detail}")
        if result.status is InboundStatus.UNREADABLE and result.path is not None:
            console.print(f"  set aside in {result.path} (not processed again)")
    console.print(f"{len(results)} messages, {sum(r.honoured for r in results)} honoured")
    if not all(r.honoured for r in results):
        raise typer.Exit(1)


def capture(
    port: Annotated[
        int, typer.Option(help="Port to listen on (127.0.0.1; 0: any free one).", min=0, max=65535)
    ] = 8025,
    maildir: Annotated[
        Path, typer.Option(metavar="DIR", help="Maildir that keeps what arrives.")
    ] = Path("var/maildir"),
) -> None:
    """Run a local SMTP server that keeps every message in a Maildir (for previews and tests).

    Example: newsletter capture --port 8025 --maildir var/maildir
    """
    from newsletter.capture import start_capture

    controller = start_capture(maildir, port=port)  # a busy port stops here, with one line
    console.print(
        f"capturing mail on 127.0.0.1:{controller.port} into {maildir}/new (Ctrl-C stops)",
        soft_wrap=True,
        highlight=False,
    )
    sys.stdout.flush()
    signalled: list[int] = []  # the handler only appends: it must take no lock
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: signalled.append(number))
    try:
        while not signalled:
            time.sleep(0.2)
    finally:
        controller.stop()
