"""Queries only the editor's pages need: the dashboard's overview of the stored editions
(without their HTML and text) and the test-send history.

The status changes an editor makes (hold, un-hold, rebuild) are the compare-and-set
ones in `editions.py`, made through the application layer (`newsletter.app`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from newsletter.models import DeliveryStatus, EditionStatus
from newsletter.store.schema import deliveries, editions, test_sends


@dataclass(frozen=True)
class EditionSummary:
    """One stored edition without its HTML and text (the dashboard lists many)."""

    id: int
    date: dt.date
    status: EditionStatus
    subject: str
    article_count: int
    skipped: int | None  # files the source skipped at build time (None: built before kept)
    sent_at: dt.datetime | None
    deliveries: dict[DeliveryStatus, int]


def edition_summaries(engine: Engine, limit: int = 60) -> list[EditionSummary]:
    """The newest stored editions with their delivery rows counted by status, in two queries."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                editions.c.id,
                editions.c.date,
                editions.c.status,
                editions.c.subject,
                editions.c.article_count,
                editions.c.skipped,
                editions.c.sent_at,
            )
            .order_by(editions.c.date.desc())
            .limit(limit)
        ).all()
        counts: dict[int, dict[DeliveryStatus, int]] = {
            row.id: dict.fromkeys(DeliveryStatus, 0) for row in rows
        }
        if rows:
            grouped = conn.execute(
                select(deliveries.c.edition_id, deliveries.c.status, func.count())
                .where(deliveries.c.edition_id.in_(list(counts)))
                .group_by(deliveries.c.edition_id, deliveries.c.status)
            )
            for edition_id, status, number in grouped:
                counts[edition_id][DeliveryStatus(status)] = number
    return [
        EditionSummary(
            id=row.id,
            date=row.date,
            status=EditionStatus(row.status),
            subject=row.subject,
            article_count=row.article_count,
            skipped=None if row.skipped is None else len(json.loads(row.skipped)),
            sent_at=row.sent_at,
            deliveries=counts[row.id],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class EditorTestSend:
    """One test message sent from the editor or `send --to`, with the server's reply."""

    email: str
    status: str
    reply: str
    created_at: dt.datetime


def recent_test_sends(engine: Engine, edition_id: int, limit: int = 10) -> list[EditorTestSend]:
    """The latest test sends of an edition, newest first, so the editor sees what went where."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                test_sends.c.email,
                test_sends.c.status,
                test_sends.c.last_reply,
                test_sends.c.created_at,
            )
            .where(test_sends.c.edition_id == edition_id)
            .order_by(test_sends.c.id.desc())
            .limit(limit)
        )
        return [EditorTestSend(*row) for row in rows]
