"""Queries for the public archive: only editions that went out are ever shown.

An edition is published once its send started (`sending`) or finished
(`sent`). A built-but-unsent edition may still be rebuilt by an editor, and a
held one was deliberately skipped: neither is public.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, literal, select

from newsletter.models import RenderedEdition
from newsletter.store.editions import EditionStatus
from newsletter.store.schema import editions

PUBLISHED = (EditionStatus.SENDING.value, EditionStatus.SENT.value)


@dataclass(frozen=True)
class PublishedEdition:
    rendered: RenderedEdition  # html is "" unless asked for; text only when asked for
    published_at: dt.datetime  # when its send finished, or (still sending) when it was built


def list_published(
    engine: Engine, *, limit: int | None = None, with_text: bool = False
) -> list[PublishedEdition]:
    """Published editions, newest first: the archive index (light) and the feed (with text).

    The HTML is never loaded here (tens of KB each); the text only when asked.
    """
    text = editions.c.text if with_text else literal("").label("text")
    query = (
        select(
            editions.c.date,
            editions.c.subject,
            editions.c.preheader,
            editions.c.slot_token,
            text,
            func.coalesce(editions.c.sent_at, editions.c.created_at).label("published_at"),
        )
        .where(editions.c.status.in_(PUBLISHED))
        .order_by(editions.c.date.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        PublishedEdition(
            RenderedEdition(
                date=row.date,
                subject=row.subject,
                preheader=row.preheader,
                html="",
                text=row.text,
                slot_token=row.slot_token,
            ),
            row.published_at,
        )
        for row in rows
    ]
