"""The `newsletter` command: thin commands that open the store and call the core.

Every error the core raises on purpose is a NewsletterError; `main` prints it
as one line (where: what (how to fix)) and exits 1, instead of a traceback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import shutil
import signal
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from newsletter import subscribers as subscriber_ops
from newsletter.articles import open_source
from newsletter.compose import compose_message
from newsletter.config import Settings, load_settings
from newsletter.delivery import SendSummary
from newsletter.errors import InputError, NewsletterError
from newsletter.logs import configure_logging
from newsletter.models import DeliveryStatus, Recipient, SubscriberStatus
from newsletter.pipeline import build_preview, prepare_edition, send_edition, send_test
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store import subscribers as subscriber_store
from newsletter.store.engine import open_engine

console = Console()
err = Console(stderr=True)

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
app.add_typer(subscribers_app, name="subscribers")

GMAIL_CLIP_BYTES = 102 * 1024
SAMPLE_RECIPIENT = Recipient(None, "reader@example.com", "Sample Reader")

DateOption = Annotated[
    str | None,
    typer.Option("--date", "-d", help="YYYY-MM-DD; default: today in NEWSLETTER_TIMEZONE."),
]


def settings_of(ctx: typer.Context) -> Settings:
    if ctx.obj is None:
        ctx.obj = load_settings()
        configure_logging(ctx.obj.log_level, ctx.obj.log_format)
    return ctx.obj


def parse_date(value: str | None, settings: Settings) -> dt.date:
    if value is None:
        return settings.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"not a date: {value!r}", where="--date", hint="write it as YYYY-MM-DD"
        ) from None


def engine_of(settings: Settings):  # noqa: ANN201
    return open_engine(settings.database_url)


# ── set-up ────────────────────────────────────────────────────────────────────


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the database, and .env from .env.example if there is none.

    Example: newsletter init
    """
    env, example = Path(".env"), Path(".env.example")
    if not env.exists() and example.exists():
        text = example.read_text(encoding="utf-8")
        text = text.replace(
            "NEWSLETTER_SECRET_KEY=change-me-to-a-long-random-string",
            f"NEWSLETTER_SECRET_KEY={secrets.token_urlsafe(32)}",
        )
        env.write_text(text, encoding="utf-8")
        console.print(f"wrote {env} from {example} (with a new random secret key)")
        ctx.obj = None
    settings = settings_of(ctx)
    engine_of(settings)
    console.print(f"database ready: {settings.database_url}")


# ── subscribers ───────────────────────────────────────────────────────────────


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV with an email column (see subscribers/README.md).")
    ],
    source: Annotated[
        str | None, typer.Option(help="Where these came from; default: file name.")
    ] = None,
) -> None:
    """Import subscribers from a CSV file; invalid rows are reported, valid ones imported.

    Example: newsletter subscribers import subscribers/example.csv
    """
    engine = engine_of(settings_of(ctx))
    report = subscriber_ops.import_csv(engine, file, source=source)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    for line, reason in report.invalid:
        err.print(f"[yellow]{file}:{line}:[/] {reason} (row skipped)")
    console.print(
        f"imported {file}: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.kept_unsubscribed} kept unsubscribed, "
        f"{report.kept_bounced} kept bounced, {len(report.invalid)} invalid"
    )


@subscribers_app.command("export")
def subscribers_export(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="Where to write; default: standard output.")
    ] = None,
    status: Annotated[SubscriberStatus | None, typer.Option(help="Only this status.")] = None,
) -> None:
    """Export subscribers to CSV.

    Example: newsletter subscribers export backup.csv --status active
    """
    engine = engine_of(settings_of(ctx))
    if file is None:
        subscriber_ops.export_csv(engine, sys.stdout, status=status)
        return
    with file.open("w", encoding="utf-8", newline="") as out:
        count = subscriber_ops.export_csv(engine, out, status=status)
    err.print(f"exported {count} subscribers to {file}")


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address to add.")],
    name: Annotated[str, typer.Option(help="The subscriber's name.")] = "",
) -> None:
    """Add one subscriber (active at once).

    Example: newsletter subscribers add ann@example.com --name "Ann Lee"
    """
    engine = engine_of(settings_of(ctx))
    subscriber = subscriber_ops.add_subscriber(engine, email, name=name, source="cli")
    console.print(f"{subscriber.email}: {subscriber.status}")


@subscribers_app.command("remove")
def subscribers_remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address to remove.")],
    delete: Annotated[
        bool, typer.Option("--delete", help="Erase the record instead of marking it unsubscribed.")
    ] = False,
) -> None:
    """Unsubscribe an address (kept as unsubscribed so no import re-adds it).

    Example: newsletter subscribers remove ann@example.com
    """
    engine = engine_of(settings_of(ctx))
    changed = subscriber_ops.remove_subscriber(engine, email, delete=delete)
    verb = "deleted" if delete else "unsubscribed"
    console.print(f"{email}: {verb}" if changed else f"{email}: not subscribed, nothing to do")


@subscribers_app.command("list")
def subscribers_list(
    ctx: typer.Context,
    status: Annotated[SubscriberStatus | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 50,
) -> None:
    """List subscribers and the counts by status.

    Example: newsletter subscribers list --status unsubscribed
    """
    engine = engine_of(settings_of(ctx))
    table = Table("email", "name", "status", "source", "since")
    for i, sub in enumerate(subscriber_store.iter_subscribers(engine, status, 500)):
        if i >= limit:
            break
        table.add_row(
            sub.email, sub.name, sub.status.value, sub.source, f"{sub.created_at:%Y-%m-%d}"
        )
    console.print(table)
    counts = subscriber_store.count_by_status(engine)
    console.print(", ".join(f"{s.value}: {counts.get(s, 0)}" for s in SubscriberStatus))


# ── articles and preview ──────────────────────────────────────────────────────


@app.command()
def articles(ctx: typer.Context, date: DateOption = None) -> None:
    """List the day's articles, and the files that could not be read and why.

    Example: newsletter articles --date 2026-11-25
    """
    settings = settings_of(ctx)
    day_date = parse_date(date, settings)
    day = open_source(settings.articles_source, settings.zone).articles_for(day_date)
    table = Table("#", "headline", "source", "link", title=f"articles for {day_date}")
    for i, article in enumerate(day.articles, 1):
        table.add_row(str(i), article.headline, article.source or "—", article.url or "—")
    console.print(table)
    for item in day.skipped:
        err.print(f"[yellow]skipped {item.origin}:[/] {item.reason}")
    if not day.articles:
        console.print(f"no articles for {day_date} in {settings.articles_source}")


@app.command()
def preview(
    ctx: typer.Context,
    date: DateOption = None,
    output: Annotated[Path, typer.Option(help="Directory for the preview files.")] = Path(
        "var/preview"
    ),
) -> None:
    """Render the day's edition to files, exactly as a sample subscriber gets it.

    Writes edition.html, edition.txt and sample.eml, and prints the subject,
    the size and any warnings. Nothing is stored or sent.

    Example: newsletter preview --date 2026-11-25 --output /tmp/preview
    """
    settings = settings_of(ctx)
    write_preview(settings, parse_date(date, settings), output)


def write_preview(settings: Settings, day_date: dt.date, output: Path) -> None:
    built = build_preview(settings, day_date)
    if built is None:
        console.print(f"no articles for {day_date}: no edition to preview")
        return
    rendered = built.rendered
    data = compose_message(rendered, settings, SAMPLE_RECIPIENT)
    html, text = _personalized_parts(data)
    output.mkdir(parents=True, exist_ok=True)
    (output / "edition.html").write_text(html, encoding="utf-8")
    (output / "edition.txt").write_text(text, encoding="utf-8")
    (output / "sample.eml").write_bytes(data)
    size = len(html.encode("utf-8"))
    console.print(f"subject: {rendered.subject}")
    console.print(f"preheader: {rendered.preheader}")
    console.print(
        f"HTML {size / 1024:.1f} KB, text {len(text.encode()) / 1024:.1f} KB, "
        f"message {len(data) / 1024:.1f} KB"
    )
    warnings = list(rendered.warnings) + [f"skipped {s.origin}: {s.reason}" for s in built.skipped]
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    console.print(
        f"wrote {output / 'edition.html'}, {output / 'edition.txt'}, {output / 'sample.eml'}"
    )


def _personalized_parts(data: bytes) -> tuple[str, str]:
    """The HTML and text exactly as the sample recipient's mail client decodes them."""
    message = message_from_bytes(data, policy=policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    return html, text


# ── sending ───────────────────────────────────────────────────────────────────


@app.command()
def send(
    ctx: typer.Context,
    date: DateOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Build and check everything; send nothing.")
    ] = False,
    to: Annotated[
        str | None, typer.Option("--to", help="Send a test of the real edition to this address.")
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Re-render a stored edition that has not gone out.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Sender processes claiming batches from the same database (each with "
            "CONCURRENCY connections).",
        ),
    ] = 1,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
) -> None:
    """Send the day's edition to every active subscriber who has not had it yet.

    Running it again sends nothing twice; new subscribers get the same edition.
    SIGTERM or Ctrl-C stops it cleanly (what was sent is recorded; the rest stays
    queued). Exit code 0 when the send ran (failed recipients are listed), 1 on an
    error that stopped it.

    Example: newsletter send --date 2026-11-25 --dry-run
    """
    settings = settings_of(ctx)
    day_date = parse_date(date, settings)
    engine = engine_of(settings)
    if dry_run:
        _dry_run(settings, engine, day_date)
        return
    if rebuild:
        _rebuild(settings, engine, day_date)
    prepared = prepare_edition(engine, settings, day_date)
    if prepared is None:
        console.print(f"no articles for {day_date}: no edition, nothing sent")
        raise typer.Exit(1 if settings.fail_on_empty else 0)
    for item in prepared.skipped:
        err.print(f"[yellow]skipped {item.origin}:[/] {item.reason}")
    stored = prepared.stored
    console.print(f"edition {day_date}: {stored.rendered.subject}")
    if to is not None:
        result = asyncio.run(send_test(engine, settings, stored, to))
        console.print(f"test send to {to}: {result.outcome.value} ({result.reply})")
        raise typer.Exit(0 if result.outcome.value == "sent" else 1)
    if worker:  # one of `--workers N`: the parent shows progress and the summary
        asyncio.run(_send_quietly(engine, settings, stored))
        return
    helpers = _start_workers(day_date, workers - 1)
    summary = _send_with_progress(engine, settings, stored, helpers=helpers)
    if summary.held:
        console.print(f"the edition of {day_date} is on hold (an editor skipped it): not sent")
        return
    _print_summary(summary)
    if summary.stopped:
        console.print(
            f"stopped by a signal: {summary.remaining} still queued; "
            f"`newsletter send --date {day_date}` finishes the edition"
        )
    elif summary.remaining:
        console.print(
            f"{summary.remaining} deliveries are held by another sender or wait for a retry; "
            f"`newsletter status --date {day_date}` shows them"
        )


def _dry_run(settings: Settings, engine, day_date: dt.date) -> None:  # noqa: ANN001
    stored = edition_store.get_edition(engine, day_date)
    if stored is None:
        built = build_preview(settings, day_date)
        if built is None:
            console.print(f"no articles for {day_date}: nothing would be sent")
            return
        rendered = built.rendered
    else:
        rendered = stored.rendered
    active = subscriber_store.count_by_status(engine).get(SubscriberStatus.ACTIVE, 0)
    done = 0
    if stored is not None:
        counts = delivery_store.count_by_status(engine, stored.id)
        done = sum(counts[s] for s in (DeliveryStatus.SENT, DeliveryStatus.FAILED))
    console.print(f"subject: {rendered.subject}")
    console.print(
        f"dry run: {active} active subscribers, {done} already handled for {day_date}; nothing sent"
    )


def _rebuild(settings: Settings, engine, day_date: dt.date) -> None:  # noqa: ANN001
    stored = edition_store.get_edition(engine, day_date)
    if stored is None:
        return
    if stored.status not in (edition_store.EditionStatus.BUILT, edition_store.EditionStatus.HELD):
        raise InputError(
            f"the edition of {day_date} is already {stored.status.value}; it cannot be rebuilt",
            where="--rebuild",
            hint="a started edition keeps its content so every subscriber gets the same email",
        )
    built = build_preview(settings, day_date)
    if built is not None:
        edition_store.replace_edition(engine, stored.id, built.rendered, built.article_count)


def _start_workers(day_date: dt.date, count: int) -> list[subprocess.Popen]:
    """`--workers N`: N-1 more sender processes on the same edition (this one is the Nth)."""
    command = [sys.executable, "-m", "newsletter", "send", "--date", day_date.isoformat()]
    return [
        subprocess.Popen([*command, "--worker"], stdout=subprocess.DEVNULL) for _ in range(count)
    ]


async def _send_quietly(engine, settings: Settings, stored) -> SendSummary:  # noqa: ANN001
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await send_edition(engine, settings, stored, stop=stop)


def _finished(counts: dict[DeliveryStatus, int]) -> int:
    return sum(
        counts[s] for s in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
    )


def _send_with_progress(engine, settings: Settings, stored, helpers=()) -> SendSummary:  # noqa: ANN001
    """This process's send with a progress bar; with helper processes, the bar and the
    summary count what all of them did (read from the database)."""
    counts = delivery_store.count_by_status(engine, stored.id)
    active = subscriber_store.count_by_status(engine).get(SubscriberStatus.ACTIVE, 0)
    done = sum(
        counts[s] for s in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
    )
    total = max(active + counts[DeliveryStatus.SKIPPED] - done, 0)
    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    started = time.monotonic()

    before = delivery_store.count_by_status(engine, stored.id)

    def stop_all(stop: asyncio.Event) -> None:
        stop.set()
        for helper in helpers:
            helper.send_signal(signal.SIGTERM)

    async def watch_database(task) -> None:  # noqa: ANN001
        while True:
            await asyncio.sleep(0.5)
            done_now = (
                _finished(
                    await asyncio.to_thread(delivery_store.count_by_status, engine, stored.id)
                )
                - done
            )
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done_now, rate=f"{done_now / elapsed:.0f} msg/s")

    async def run() -> SendSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_all, stop)
        task = progress.add_task("send", total=total or None, rate="")

        def on_result(status: DeliveryStatus, email: str) -> None:
            if not helpers and status in (
                DeliveryStatus.SENT,
                DeliveryStatus.FAILED,
                DeliveryStatus.SKIPPED,
            ):
                elapsed = max(time.monotonic() - started, 1e-6)
                done_now = progress.tasks[0].completed + 1
                progress.update(task, advance=1, rate=f"{done_now / elapsed:.0f} msg/s")

        watcher = asyncio.create_task(watch_database(task)) if helpers else None
        try:
            with progress:
                summary = await send_edition(
                    engine, settings, stored, on_result=on_result, stop=stop
                )
                for helper in helpers:
                    await asyncio.to_thread(helper.wait)
        finally:
            if watcher is not None:
                watcher.cancel()
        return summary

    summary = asyncio.run(run())
    if helpers:  # what every process did, from the record
        after = delivery_store.count_by_status(engine, stored.id)
        summary.sent = after[DeliveryStatus.SENT] - before[DeliveryStatus.SENT]
        summary.failed = after[DeliveryStatus.FAILED] - before[DeliveryStatus.FAILED]
        summary.skipped = after[DeliveryStatus.SKIPPED] - before[DeliveryStatus.SKIPPED]
        summary.remaining = after[DeliveryStatus.QUEUED] + after[DeliveryStatus.SENDING]
        summary.elapsed = time.monotonic() - started
        if any(helper.returncode for helper in helpers):
            err.print("[red]a worker process failed; see its error above[/]")
    return summary


def _print_summary(summary: SendSummary) -> None:
    rate = summary.sent / summary.elapsed if summary.elapsed else 0
    console.print(
        f"sent {summary.sent}, skipped {summary.skipped}, failed {summary.failed}, "
        f"queued for retry {summary.remaining}, in {summary.elapsed:.1f}s ({rate:.0f} msg/s)"
    )
    for email, reply in summary.failures[:20]:
        err.print(f"[red]failed[/] {email}: {reply}")


@app.command()
def status(
    ctx: typer.Context,
    date: Annotated[
        str | None, typer.Option("--date", "-d", help="YYYY-MM-DD; default: the recent editions.")
    ] = None,
) -> None:
    """Show editions with their deliveries counted by status, and failed recipients.

    Example: newsletter status --date 2026-11-25
    """
    settings = settings_of(ctx)
    engine = engine_of(settings)
    if date is None:
        _status_table(engine, [e for e, _ in edition_store.list_editions(engine, limit=10)])
        return
    day_date = parse_date(date, settings)
    stored = edition_store.get_edition(engine, day_date)
    if stored is None:
        console.print(f"no edition for {day_date} yet")
        return
    console.print(f"edition {day_date}: {stored.status.value} — {stored.rendered.subject}")
    _status_table(engine, [stored])
    failed = delivery_store.failed_deliveries(engine, stored.id, limit=50)
    if failed:
        table = Table("failed recipient", "attempts", "last reply", "at (UTC)")
        for item in failed:
            table.add_row(
                item.email, str(item.attempts), item.last_reply, f"{item.updated_at:%H:%M:%S}"
            )
        console.print(table)
        console.print(f"`newsletter retry --date {day_date}` queues them again")


def _status_table(engine, stored_editions) -> None:  # noqa: ANN001
    if not stored_editions:
        console.print("no editions yet")
        return
    table = Table("edition", "status", *(s.value for s in DeliveryStatus), "total")
    for stored in stored_editions:
        counts = delivery_store.count_by_status(engine, stored.id)
        table.add_row(
            stored.rendered.date.isoformat(),
            stored.status.value,
            *(str(counts[s]) for s in DeliveryStatus),
            str(sum(counts.values())),
        )
    console.print(table)


@app.command()
def retry(ctx: typer.Context, date: DateOption = None) -> None:
    """Queue the day's failed deliveries again (then `newsletter send` delivers them).

    Example: newsletter retry --date 2026-11-25 && newsletter send --date 2026-11-25
    """
    settings = settings_of(ctx)
    day_date = parse_date(date, settings)
    engine = engine_of(settings)
    stored = edition_store.get_edition(engine, day_date)
    if stored is None:
        raise InputError(f"no edition for {day_date}", where="--date", hint="check the date")
    count = delivery_store.requeue_failed(engine, stored.id)
    console.print(f"queued {count} failed deliveries of {day_date} again")


@app.command()
def run(ctx: typer.Context) -> None:
    """Run the scheduler: send each day's edition at NEWSLETTER_SEND_TIME (Ctrl-C stops).

    Example: NEWSLETTER_SEND_TIME=06:30 NEWSLETTER_TIMEZONE=Europe/Paris newsletter run
    """
    from newsletter.scheduler import run_scheduler

    settings = settings_of(ctx)
    engine_of(settings)

    def started(next_run: dt.datetime) -> None:
        console.print(
            f"scheduler started: daily at {settings.send_time} {settings.timezone}, "
            f"next run {next_run:%Y-%m-%d %H:%M %Z}; Ctrl-C or SIGTERM stops it"
        )

    run_scheduler(settings, on_started=started)
    console.print("scheduler stopped")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the web side: unsubscribe, sign-up, archive, and the editor at /editor.

    Example: newsletter serve --port 8000   (then open http://127.0.0.1:8000/editor)
    """
    import uvicorn

    from newsletter.web import create_app

    settings = settings_of(ctx)
    console.print(f"serving on http://{host}:{port} (editor: http://{host}:{port}/editor)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command("hash-password")
def hash_password_command(
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Print a hash of an editor password for NEWSLETTER_EDITOR_PASSWORD.

    Example: newsletter hash-password
    """
    from newsletter.web.security import hash_password

    console.print(hash_password(password), highlight=False, soft_wrap=True)


@app.command()
def inbound(
    ctx: typer.Context,
    maildir: Annotated[
        Path | None,
        typer.Option(help="Process every new message in this Maildir; default: one from stdin."),
    ] = None,
) -> None:
    """Process mail sent to the unsubscribe address (List-Unsubscribe's mailto: link).

    Only messages carrying a valid signed token unsubscribe anyone. Handled
    messages move from new/ to cur/. Exit code 1 if any message was not honoured.

    Example: newsletter inbound --maildir /var/mail/unsubscribe
    """
    from newsletter.inbound import process_maildir, process_stream
    from newsletter.tokens import Signer

    settings = settings_of(ctx)
    engine = engine_of(settings)
    signer = Signer(settings.secret_key.get_secret_value())
    if maildir is None:
        results = [process_stream(engine, signer)]
    else:
        results = process_maildir(engine, signer, maildir)
    for result in results:
        mark = "" if result.honoured else "[yellow]not honoured:[/] "
        console.print(f"{mark}{result.sender or '?'}: {result.status.value} {result.detail}")
    console.print(f"{len(results)} messages, {sum(r.honoured for r in results)} honoured")
    if not all(r.honoured for r in results):
        raise typer.Exit(1)


@app.command()
def capture(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 8025,
    maildir: Annotated[Path, typer.Option(help="Maildir that keeps what arrives.")] = Path(
        "var/maildir"
    ),
) -> None:
    """Run a local SMTP server that keeps every message in a Maildir (for previews and tests).

    Example: newsletter capture --port 8025 --maildir var/maildir
    """
    from newsletter.capture import start_capture

    controller = start_capture(maildir, port=port)
    console.print(
        f"capturing mail on 127.0.0.1:{controller.port} into {maildir}/new (Ctrl-C stops)"
    )
    try:
        _wait_forever()
    finally:
        controller.stop()


def _wait_forever() -> None:
    stop = {"flag": False}
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.update(flag=True))
    while not stop["flag"]:
        time.sleep(0.2)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path(
        "var/demo"
    ),
) -> None:
    """The `make demo` run: import the example list, capture SMTP locally, send the newest day.

    Example: newsletter demo --workdir /tmp/demo
    """
    from newsletter.capture import start_capture

    if workdir.exists():
        shutil.rmtree(workdir)
    maildir = workdir / "maildir"
    controller = start_capture(maildir)
    try:
        settings = load_settings(
            database_url=f"sqlite:///{workdir / 'newsletter.db'}",
            articles_source="articles/",
            templates_dir=Path("templates"),
            smtp_host="127.0.0.1",
            smtp_port=controller.port,
            smtp_security="none",
            smtp_username="",
            concurrency=4,
            rate_limit=0,
        )
        engine = open_engine(settings.database_url)
        report = subscriber_ops.import_csv(engine, Path("subscribers/example.csv"))
        console.print(f"imported {report.added} subscribers from subscribers/example.csv")
        source = open_source(settings.articles_source, settings.zone)
        dates = source.available_dates()
        if not dates:
            raise InputError("no article days found", where=settings.articles_source)
        day_date = dates[-1]
        preview_dir = workdir / "preview"
        write_preview(settings, day_date, preview_dir)
        prepared = prepare_edition(engine, settings, day_date)
        assert prepared is not None
        summary = _send_with_progress(engine, settings, prepared.stored)
        _print_summary(summary)
        again = _send_with_progress(engine, settings, prepared.stored)
        console.print(f"sending again delivered {again.sent} (each subscriber gets it once)")
    finally:
        controller.stop()
    captured = len(list((maildir / "new").iterdir()))
    console.print()
    console.print(f"[bold]captured messages:[/] {maildir / 'new'} ({captured} files, .eml-style)")
    console.print(f"[bold]preview:[/] {preview_dir / 'edition.html'} (open in a browser)")
    console.print(f"[bold]text part:[/] {preview_dir / 'edition.txt'}")
    console.print(f"[bold]database:[/] {workdir / 'newsletter.db'}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except NewsletterError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
