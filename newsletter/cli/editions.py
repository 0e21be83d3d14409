"""`newsletter articles`, `preview`, `status`, `retry`: looking at a date and its edition."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from newsletter import app as core
from newsletter.cli.context import DateOption, console, engine_of, err, parse_date, settings_of
from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.models import DeliveryStatus


def articles(ctx: typer.Context, date: DateOption = None) -> None:
    """List the day's articles with their whole links, and the files that could not be read.

    Each article is its headline and source, then its link on a line of its own,
    never cut or wrapped by the terminal's width, so it can be copied or clicked.

    Example: newsletter articles --date 2026-11-25
    """
    settings = settings_of(ctx)
    day_date = parse_date(date, settings)
    day = core.day_articles(settings, day_date)
    if day.articles:
        console.print(f"articles for {day_date}: {len(day.articles)}", highlight=False)
    for i, article in enumerate(day.articles, 1):
        source = f"  [dim]({escape(article.source)})[/]" if article.source else ""
        console.print(
            f"{i:>2}. {escape(article.headline)}{source}", soft_wrap=True, highlight=False
        )
        console.print(
            f"    {article.url or '(no link)'}", soft_wrap=True, highlight=False, markup=False
        )
    for item in day.skipped:
        err.print(f"[yellow]skipped {escape(str(item.origin))}:[/] {escape(item.reason)}")
    if not day.articles:
        console.print(f"no articles for {day_date} in {settings.articles_source}")


def preview(
    ctx: typer.Context,
    date: DateOption = None,
    output: Annotated[
        Path, typer.Option(metavar="DIR", help="Directory for the preview files.")
    ] = Path("var/preview"),
) -> None:
    """Render the day's edition to files, exactly as a sample subscriber gets it.

    The stored edition if the date has one (what a send delivers), else the
    articles as they are now. Writes edition.html, edition.txt and sample.eml,
    and prints the subject, the size and any warnings. Nothing is stored or sent.

    Example: newsletter preview --date 2026-11-25 --output /tmp/preview
    """
    settings = settings_of(ctx)
    write_preview(engine_of(settings), settings, parse_date(date, settings), output)


def write_preview(engine: Engine, settings: Settings, day_date: dt.date, output: Path) -> None:
    shown = core.preview(engine, settings, day_date)
    if isinstance(shown, core.NoArticles):
        console.print(f"no articles for {day_date}: no edition to preview")
        return
    output.mkdir(parents=True, exist_ok=True)
    (output / "edition.html").write_text(shown.html, encoding="utf-8")
    (output / "edition.txt").write_text(shown.text, encoding="utf-8")
    (output / "sample.eml").write_bytes(shown.message)
    console.print(f"subject: {shown.subject}")
    console.print(f"preheader: {shown.preheader}")
    console.print(
        f"HTML {shown.html_bytes / 1024:.1f} KB, text {shown.text_bytes / 1024:.1f} KB, "
        f"message {len(shown.message) / 1024:.1f} KB"
    )
    skipped = [f"skipped {item.origin}: {item.reason}" for item in shown.skipped]
    for warning in [*shown.notes, *shown.warnings, *skipped]:
        err.print(f"[yellow]warning:[/] {warning}")
    console.print(
        f"wrote {output / 'edition.html'}, {output / 'edition.txt'}, {output / 'sample.eml'}"
    )


def status(
    ctx: typer.Context,
    date: Annotated[
        str | None,
        typer.Option(
            "--date", "-d", metavar="YYYY-MM-DD", help="The day; default: the recent editions."
        ),
    ] = None,
) -> None:
    """Show editions with their deliveries counted by status, and failed recipients.

    Each edition's hard-bounce, soft-bounce and complaint rates (of the messages the
    relay answered) are columns; the last 30 days' follow the table, with any paused
    send and the scheduler's refusal while the complaint rate is too high.

    Example: newsletter status --date 2026-11-25
    """
    settings = settings_of(ctx)
    engine = engine_of(settings)
    if date is None:
        reports = core.recent_editions(engine, limit=10)
        _status_table(reports)
        _health_lines(core.sender_health(engine, settings), reports)
        return
    day_date = parse_date(date, settings)
    report = core.edition_report(engine, day_date)
    if report is None:
        console.print(f"no edition for {day_date} yet")
        return
    stored = report.stored
    console.print(f"edition {day_date}: {stored.status.value} — {stored.rendered.subject}")
    _status_table([report])
    _health_lines(core.sender_health(engine, settings), [report])
    if report.failed:
        table = Table("failed recipient", "attempts", "last reply", "at (UTC)")
        for item in report.failed:
            table.add_row(
                item.email, str(item.attempts), item.last_reply, f"{item.updated_at:%H:%M:%S}"
            )
        console.print(table)
        console.print(f"`newsletter retry --date {day_date}` queues them again")


def _status_table(reports: list[core.EditionReport]) -> None:
    if not reports:
        console.print("no editions yet")
        return
    table = Table(
        "edition",
        "status",
        *(s.value for s in DeliveryStatus),
        "total",
        "hard",
        "soft",
        "complaints",
    )
    for report in reports:
        figures = report.figures
        table.add_row(
            report.stored.rendered.date.isoformat(),
            "paused" if report.pause else report.stored.status.value,
            *(str(report.counts[s]) for s in DeliveryStatus),
            str(sum(report.counts.values())),
            *(
                _percent(rate, figures.messages)
                for rate in (figures.hard_rate, figures.soft_rate, figures.complaint_rate)
            ),
        )
    console.print(table)


def _percent(rate: float, messages: int) -> str:
    return f"{rate:.2%}" if messages else "-"


def _health_lines(health: core.SenderHealth, reports: list[core.EditionReport]) -> None:
    """The 30-day figures, each paused send and the scheduler's refusal, a line each."""
    window = health.figures.window
    console.print(
        f"last {core.WINDOW_DAYS} days (editions since {health.figures.since}): "
        f"{window.messages} messages; hard bounces {window.hard} "
        f"({_percent(window.hard_rate, window.messages)}), soft bounces {window.soft} "
        f"({_percent(window.soft_rate, window.messages)}), complaints {window.complaints} "
        f"({_percent(window.complaint_rate, window.messages)})",
        highlight=False,
        soft_wrap=True,
    )
    for report in reports:
        if report.pause is not None:
            day = report.stored.rendered.date
            console.print(
                f"[red]paused[/] edition {day}: {escape(report.pause.reason or '')}; "
                f"`newsletter send --date {day}` resumes it",
                highlight=False,
                soft_wrap=True,
            )
    if health.complaints is not None:
        console.print(
            f"[red]the scheduler starts no new edition:[/] {health.complaints.describe()}",
            highlight=False,
            soft_wrap=True,
        )


def retry(ctx: typer.Context, date: DateOption = None) -> None:
    """Queue the day's failed deliveries again (then `newsletter send` delivers them).

    Example: newsletter retry --date 2026-11-25 && newsletter send --date 2026-11-25
    """
    settings = settings_of(ctx)
    day_date = parse_date(date, settings)
    outcome = core.retry(engine_of(settings), day_date)
    if isinstance(outcome, core.Refused):
        raise InputError(f"no edition for {day_date}", where="--date", hint="check the date")
    console.print(f"queued {outcome.count} failed deliveries of {day_date} again")
