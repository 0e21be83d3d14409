"""Queries on stored editions.

An edition is stored with its rendered HTML and text the first time it is
built, and never re-rendered after its first message went out: the archive, a
resend and a late subscriber all get the same bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, func, insert, select, update

from newsletter.models import RenderedEdition
from newsletter.store.engine import utcnow
from newsletter.store.schema import deliveries, editions


class EditionStatus(StrEnum):
    BUILT = "built"  # rendered and stored; nothing sent yet
    SENDING = "sending"  # deliveries queued; a send started
    SENT = "sent"  # every delivery reached a final status
    HELD = "held"  # an editor chose to skip this day


@dataclass(frozen=True)
class StoredEdition:
    id: int
    status: EditionStatus
    article_count: int
    rendered: RenderedEdition
    created_at: dt.datetime
    sent_at: dt.datetime | None


def get_edition(engine: Engine, date: dt.date) -> StoredEdition | None:
    """The stored edition of a date, so a rerun reuses its exact content."""
    with engine.connect() as conn:
        row = conn.execute(select(editions).where(editions.c.date == date)).mappings().first()
    return _stored(row) if row else None


def insert_edition(engine: Engine, rendered: RenderedEdition, article_count: int) -> StoredEdition:
    """Store a freshly rendered edition; if another process stored one first, keep theirs."""
    with engine.begin() as conn:
        existing = conn.execute(
            select(editions.c.id).where(editions.c.date == rendered.date)
        ).first()
        if existing is None:
            conn.execute(
                insert(editions).values(
                    date=rendered.date,
                    subject=rendered.subject,
                    preheader=rendered.preheader,
                    html=rendered.html,
                    text=rendered.text,
                    slot_token=rendered.slot_token,
                    article_count=article_count,
                    status=EditionStatus.BUILT,
                    created_at=utcnow(),
                )
            )
    stored = get_edition(engine, rendered.date)
    assert stored is not None
    return stored


def replace_edition(engine: Engine, edition_id: int, rendered: RenderedEdition, count: int) -> bool:
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
        .values(
            subject=rendered.subject,
            preheader=rendered.preheader,
            html=rendered.html,
            text=rendered.text,
            slot_token=rendered.slot_token,
            article_count=count,
        )
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


def _stored(row) -> StoredEdition:  # noqa: ANN001 (a SQLAlchemy RowMapping)
    return StoredEdition(
        id=row["id"],
        status=EditionStatus(row["status"]),
        article_count=row["article_count"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        rendered=RenderedEdition(
            date=row["date"],
            subject=row["subject"],
            preheader=row["preheader"],
            html=row["html"],
            text=row["text"],
            slot_token=row["slot_token"],
        ),
    )
