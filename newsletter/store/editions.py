"""Queries on stored editions.

An edition is stored with its rendered HTML and text the first time it is
built, and never re-rendered after its first message went out: the archive, a
resend and a late subscriber all get the same bytes. What the build found
besides the articles (render-time warnings, skipped files, a fingerprint of the
source) is stored with it, so nothing has to read the source again to show it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from newsletter.models import (
    DeliveryStatus,
    EditionStatus,
    RenderedEdition,
    SkippedFile,
    SubscriberStatus,
)
from newsletter.store.engine import utcnow
from newsletter.store.schema import deliveries, editions, subscribers

__all__ = [
    "Audience",
    "EditionStatus",  # kept importable from here; defined in models.py with every status
    "StoredEdition",
    "audience",
    "change_edition_status",
    "get_edition",
    "insert_edition",
    "list_editions",
    "replace_edition",
    "set_edition_status",
]

#: Delivery statuses a row never leaves: the subscriber has been handled for this edition.
HANDLED = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)


@dataclass(frozen=True)
class StoredEdition:
    id: int
    status: EditionStatus
    article_count: int
    rendered: RenderedEdition  # its `warnings` are the ones stored at build time
    created_at: dt.datetime
    sent_at: dt.datetime | None
    #: Files the source skipped when this was built; None when built before they were kept.
    skipped: tuple[SkippedFile, ...] | None = ()
    source_stamp: str | None = None


def get_edition(engine: Engine, date: dt.date) -> StoredEdition | None:
    """The stored edition of a date, so a rerun reuses its exact content."""
    with engine.connect() as conn:
        row = conn.execute(select(editions).where(editions.c.date == date)).mappings().first()
    return _stored(row) if row else None


def insert_edition(
    engine: Engine,
    rendered: RenderedEdition,
    article_count: int,
    *,
    skipped: Sequence[SkippedFile] = (),
    source_stamp: str | None = None,
) -> tuple[StoredEdition, bool]:
    """Store a freshly rendered edition; if another builder stored one first, keep theirs.

    Returns the stored edition and whether it is this one. INSERT … ON CONFLICT
    (date) DO NOTHING, then read the row: two builders at once (the scheduler and
    an editor's click, two `send --workers`) both get the one stored edition, and
    neither an IntegrityError. A SELECT first cannot settle it: both would see no
    row, and the second INSERT would hit the unique date.
    """
    values = {
        **_content(rendered, article_count, skipped, source_stamp),
        "date": rendered.date,
        "status": EditionStatus.BUILT.value,
        "created_at": utcnow(),
    }
    dialect_insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(editions)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["date"])
        .returning(editions.c.id)
    )
    with engine.begin() as conn:
        inserted = conn.execute(statement).first() is not None
    stored = get_edition(engine, rendered.date)
    assert stored is not None  # ours, or the one that won the race; editions are never deleted
    return stored, inserted


def replace_edition(
    engine: Engine,
    edition_id: int,
    rendered: RenderedEdition,
    count: int,
    *,
    skipped: Sequence[SkippedFile] = (),
    source_stamp: str | None = None,
) -> bool:
    """An editor's rebuild: new content for an edition nobody has been sent; True if replaced.

    A held edition may be rebuilt too (an editor holds a bad day, fixes the
    articles, rebuilds and checks the preview before releasing it, with no moment
    in which the scheduler could send it). False means a send started first.
    """
    statement = (
        update(editions)
        .where(
            editions.c.id == edition_id,
            editions.c.status.in_([EditionStatus.BUILT.value, EditionStatus.HELD.value]),
        )
        .values(**_content(rendered, count, skipped, source_stamp))
    )
    with engine.begin() as conn:
        return (conn.execute(statement).rowcount or 0) > 0


def set_edition_status(engine: Engine, edition_id: int, status: EditionStatus) -> None:
    """Move an edition along built → sending → sent; `sent_at` records when it finished."""
    values: dict[str, object] = {"status": status}
    if status == EditionStatus.SENT:
        values["sent_at"] = utcnow()
    with engine.begin() as conn:
        conn.execute(update(editions).where(editions.c.id == edition_id).values(**values))


def change_edition_status(
    engine: Engine, edition_id: int, *, expected: EditionStatus, new: EditionStatus
) -> bool:
    """Move an edition from `expected` to `new` only if it is still `expected`; True if moved.

    Hold (built → held), un-hold (held → built) and the start of a send
    (built → sending) go through here, so two clicks, or an editor's hold and
    the scheduler's send, never both win.
    """
    statement = (
        update(editions)
        .where(editions.c.id == edition_id, editions.c.status == expected.value)
        .values(status=new.value)
    )
    with engine.begin() as conn:
        return (conn.execute(statement).rowcount or 0) > 0


def list_editions(engine: Engine, limit: int = 30) -> list[tuple[StoredEdition, int]]:
    """Newest editions first, each with its number of delivery rows (for status pages)."""
    counts = (
        select(deliveries.c.edition_id, func.count().label("n"))
        .group_by(deliveries.c.edition_id)
        .subquery()
    )
    query = (
        select(editions, func.coalesce(counts.c.n, 0).label("deliveries"))
        .outerjoin(counts, counts.c.edition_id == editions.c.id)
        .order_by(editions.c.date.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [(_stored(row), row["deliveries"]) for row in rows]


@dataclass(frozen=True)
class Audience:
    """Who an edition is for right now (the dry run's numbers)."""

    active: int  # active subscribers
    handled: int  # delivery rows in a final status: sent, failed or skipped
    to_send: int  # active subscribers not handled yet: who a send now would reach


def audience(engine: Engine, edition_id: int | None) -> Audience:
    """Count an edition's audience in one place, so every front end says the same.

    `edition_id` None: an edition not stored yet, which nobody has had.
    """
    active = select(func.count()).where(subscribers.c.status == SubscriberStatus.ACTIVE)
    with engine.connect() as conn:
        if edition_id is None:
            count = conn.execute(active).scalar_one()
            return Audience(active=count, handled=0, to_send=count)
        final = [status.value for status in HANDLED]
        handled = conn.execute(
            select(func.count()).where(
                deliveries.c.edition_id == edition_id, deliveries.c.status.in_(final)
            )
        ).scalar_one()
        done_with = exists().where(
            deliveries.c.edition_id == edition_id,
            deliveries.c.subscriber_id == subscribers.c.id,
            deliveries.c.status.in_(final),
        )
        to_send = conn.execute(active.where(~done_with)).scalar_one()
        return Audience(active=conn.execute(active).scalar_one(), handled=handled, to_send=to_send)


def _content(
    rendered: RenderedEdition,
    article_count: int,
    skipped: Sequence[SkippedFile],
    source_stamp: str | None,
) -> dict[str, object]:
    return {
        "subject": rendered.subject,
        "preheader": rendered.preheader,
        "html": rendered.html,
        "text": rendered.text,
        "slot_token": rendered.slot_token,
        "article_count": article_count,
        "warnings": json.dumps(list(rendered.warnings)),
        "skipped": json.dumps([[item.origin, item.reason] for item in skipped]),
        "source_stamp": source_stamp,
    }


def _stored(row) -> StoredEdition:  # noqa: ANN001 (a SQLAlchemy RowMapping)
    skipped = row["skipped"]
    return StoredEdition(
        id=row["id"],
        status=EditionStatus(row["status"]),
        article_count=row["article_count"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        skipped=None
        if skipped is None
        else tuple(SkippedFile(origin, reason) for origin, reason in json.loads(skipped)),
        source_stamp=row["source_stamp"],
        rendered=RenderedEdition(
            date=row["date"],
            subject=row["subject"],
            preheader=row["preheader"],
            html=row["html"],
            text=row["text"],
            slot_token=row["slot_token"],
            warnings=tuple(json.loads(row["warnings"] or "[]")),
        ),
    )
