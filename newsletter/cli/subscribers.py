"""`newsletter subscribers …`: import, export, add, remove, list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from newsletter import subscribers as subscriber_ops
from newsletter.cli.context import console, engine_of, err, settings_of
from newsletter.models import SubscriberStatus
from newsletter.store import subscribers as subscriber_store


def import_(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV with an email column (see subscribers/README.md).")
    ],
    source: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Where these came from; default: file name.")
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
    console.print(f"imported {file}: {report.summary()}")


def export(
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


def add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address to add.")],
    name: Annotated[str, typer.Option(metavar="TEXT", help="The subscriber's name.")] = "",
) -> None:
    """Add one subscriber (active at once).

    Example: newsletter subscribers add ann@example.com --name "Ann Lee"
    """
    engine = engine_of(settings_of(ctx))
    subscriber = subscriber_ops.add_subscriber(engine, email, name=name, source="cli")
    console.print(f"{subscriber.email}: {subscriber.status}")


def remove(
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


def list_(
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
