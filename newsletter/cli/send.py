"""`newsletter send`: the dry run, a rebuild, a test send, and the send with a progress bar.

Every decision is the application layer's (`newsletter.app`): this module turns
its outcomes into lines and exit codes, and SIGTERM/Ctrl-C into its stop event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from typing import Annotated, assert_never

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from newsletter import app as core
from newsletter.cli.context import DateOption, console, engine_of, err, parse_date, settings_of
from newsletter.config import Finding, Settings, Severity, check_settings, require_secret_key
from newsletter.delivery import SendSummary
from newsletter.errors import InputError


def send(
    ctx: typer.Context,
    date: DateOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Build and check everything; send nothing.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="ADDRESS", help="Send a test of the real edition to this address."
        ),
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
    queued). A send that paused itself (its hard-bounce rate passed
    NEWSLETTER_PAUSE_HARD_BOUNCE_RATE) is resumed by running this again. Exit code 0
    when the send ran (failed recipients are listed), 1 on an error that stopped it,
    3 when it paused.

    Example: newsletter send --date 2026-11-25 --dry-run
    """
    settings = settings_of(ctx)
    require_secret_key(settings)
    day_date = parse_date(date, settings)
    engine = engine_of(settings)
    if dry_run:
        print_warnings(check_settings(settings))  # a dry run only warns
        _show_plan(core.plan(engine, settings, day_date), day_date)
        return
    if rebuild:
        _check_rebuild(core.rebuild(engine, settings, day_date), day_date)
    if to is not None:
        print_warnings(check_settings(settings))  # a test send only warns
        _test_send(engine, settings, day_date, to)
        return
    warnings = core.check_sending(engine, settings)  # refuses placeholders in earnest
    if not worker:
        print_warnings(warnings)
    started_by = core.StartedBy.HELPER if worker else core.StartedBy.OPERATOR
    start = core.prepare_send(engine, settings, day_date, started_by=started_by)
    if worker:  # one of `--workers N`: the parent shows progress and the summary
        if isinstance(start, core.Ready):
            asyncio.run(_deliver_quietly(engine, settings, start))
        return
    if isinstance(start, core.NoArticles):
        console.print(f"no articles for {day_date}: no edition, nothing sent")
        raise typer.Exit(1 if settings.fail_on_empty else 0)
    if start.built_now:
        for item in start.stored.skipped or ():
            err.print(f"[yellow]skipped {item.origin}:[/] {item.reason}")
    console.print(f"edition {day_date}: {start.stored.rendered.subject}")
    match start:
        case core.Held():
            console.print(f"the edition of {day_date} is on hold (an editor skipped it): not sent")
        case core.AlreadySent():
            print_summary(start.summary)
        case core.Paused() | core.TooManyComplaints():  # the scheduler's outcomes, not ours
            console.print(f"the edition of {day_date} was not sent: {_why(start)}")
            raise typer.Exit(3)
        case core.Ready():
            _warn_health(start)
            _report(send_with_progress(engine, settings, start, workers=workers), day_date)
        case _:
            assert_never(start)


def _why(outcome: core.Paused | core.TooManyComplaints) -> str:
    if isinstance(outcome, core.Paused):
        return f"paused: {outcome.reason}"
    return outcome.complaints.describe()


def _warn_health(ready: core.Ready) -> None:
    """An operator's send past the health checks says so, once, before it starts."""
    if ready.resumed:
        err.print(
            f"[yellow]resuming past a paused send[/] ({ready.resumed}): it will not pause "
            "again for this edition",
            highlight=False,
            soft_wrap=True,
        )
    if ready.complaints:
        err.print(
            f"[yellow]warning:[/] {ready.complaints.describe()}: the scheduler would not "
            "start this edition; sending it as asked",
            highlight=False,
            soft_wrap=True,
        )


def print_warnings(findings: tuple[Finding, ...]) -> None:
    """The sending policy's findings, one line each; an error is one a real send refuses."""
    for finding in findings:
        refused = ""
        if finding.severity is Severity.ERROR:
            refused = " (a send to subscribers refuses this)"
        err.print(f"[yellow]warning:[/] {finding}{refused}", highlight=False, soft_wrap=True)


def _show_plan(outcome: core.Planned | core.NoArticles, day_date: dt.date) -> None:
    if isinstance(outcome, core.NoArticles):
        console.print(f"no articles for {day_date}: nothing would be sent")
        return
    audience = outcome.audience
    console.print(f"subject: {outcome.subject}")
    console.print(
        f"dry run: {audience.active} active subscribers, {audience.handled} already handled "
        f"for {day_date}, {audience.to_send} would get it now; nothing sent"
    )


def _check_rebuild(outcome: core.RebuildOutcome, day_date: dt.date) -> None:
    """A refused rebuild stops the command: sending the old content was not what was asked."""
    if not isinstance(outcome, core.Refused):
        return  # rebuilt, built now, or no articles (which the send then reports)
    if outcome.reason is core.Refusal.NO_ARTICLES_NOW:
        raise InputError(
            f"the source has no articles for {day_date} any more; the stored edition is kept",
            where="--rebuild",
            hint="send without --rebuild to deliver the stored edition",
        )
    status = outcome.status.value if outcome.status else "gone"
    raise InputError(
        f"the edition of {day_date} is already {status}; it cannot be rebuilt",
        where="--rebuild",
        hint="a started edition keeps its content so every subscriber gets the same email",
    )


def _test_send(engine: Engine, settings: Settings, day_date: dt.date, to: str) -> None:
    outcome = asyncio.run(core.send_test(engine, settings, day_date, to))
    match outcome:
        case core.NoArticles():
            console.print(f"no articles for {day_date}: no edition, nothing sent")
            raise typer.Exit(1 if settings.fail_on_empty else 0)
        case core.InvalidAddress():
            raise InputError(outcome.reason, where="--to")
        case core.TestSent():
            console.print(f"edition {day_date}: {outcome.stored.rendered.subject}")
            result = outcome.result
            console.print(f"test send to {to}: {result.outcome.value} ({result.reply})")
            raise typer.Exit(0 if result.outcome.value == "sent" else 1)
        case _:
            assert_never(outcome)


async def _deliver_quietly(engine: Engine, settings: Settings, ready: core.Ready) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await core.deliver(engine, settings, ready, stop=stop)


def send_with_progress(
    engine: Engine, settings: Settings, ready: core.Ready, *, workers: int = 1
) -> core.DeliverOutcome:
    """The send with a progress bar; SIGTERM or Ctrl-C is its stop. With helper processes
    the bar counts what all of them did (the application layer reads it from the record)."""
    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    task = progress.add_task("send", total=ready.to_send or None, rate="")
    started = time.monotonic()

    def show(done: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        progress.update(task, completed=done, rate=f"{done / elapsed:.0f} msg/s")

    async def run() -> core.DeliverOutcome:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        with progress:
            return await core.deliver(
                engine, settings, ready, stop=stop, on_progress=show, workers=workers
            )

    return asyncio.run(run())


def _report(outcome: core.DeliverOutcome, day_date: dt.date) -> None:
    summary = outcome.summary
    print_summary(summary)
    if outcome.helpers_failed:
        err.print("[red]a worker process failed; see its error above[/]")
    if isinstance(outcome, core.Paused):
        console.print(
            f"paused: {outcome.reason}; {summary.remaining} still queued. Check the list "
            f"(`newsletter status --date {day_date}`), then `newsletter send --date "
            f"{day_date}` resumes the edition",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(3)
    if isinstance(outcome, core.Stopped):
        console.print(
            f"stopped by a signal: {summary.remaining} still queued; "
            f"`newsletter send --date {day_date}` finishes the edition"
        )
    elif summary.remaining:
        console.print(
            f"{summary.remaining} deliveries are held by another sender or wait for a retry; "
            f"`newsletter status --date {day_date}` shows them"
        )


def print_summary(summary: SendSummary) -> None:
    rate = summary.sent / summary.elapsed if summary.elapsed else 0
    console.print(
        f"sent {summary.sent}, skipped {summary.skipped}, failed {summary.failed}, "
        f"queued for retry {summary.remaining}, in {summary.elapsed:.1f}s ({rate:.0f} msg/s)"
    )
    for email, reply in summary.failures[:20]:
        err.print(f"[red]failed[/] {email}: {reply}")
