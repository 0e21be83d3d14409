"""Queries on the subscriber list.

Convention (the same as the other store modules): every function takes the
`Engine` and opens its own short transaction, so a caller can never leave one
open by mistake and a long export never holds a read snapshot. Merging an
imported batch is `store/imports.py`; a web sign-up's confirmation and consent,
`store/consent.py`.

Addresses are looked up by `email_key` (stripped and lower-cased), which is what
the schema makes unique; the address as typed is kept in `email` for sending.

Status changes stamp time: `confirmed_at` when a row becomes active,
`unsubscribed_at` when it becomes unsubscribed (cleared if it is re-activated),
`updated_at` on every change. Re-importing never re-activates an unsubscribed or
bounced address; only `set_status` (an explicit operator action) can.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, Row, Table, delete, func, not_, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from newsletter.errors import StoreError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.store.engine import utcnow
from newsletter.store.schema import deliveries, subscribers

SUPPRESSED = frozenset({SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED})


def email_key(address: str) -> str:
    """The unique lookup form of an address: stripped and lower-cased."""
    return address.strip().lower()


def insert_subscriber(
    engine: Engine,
    email: str,
    name: str = "",
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    source: str = "",
) -> Subscriber | None:
    """Add one address; None when it is already on the list (a concurrent add is not an error)."""
    now = utcnow()
    values = new_row(email, name, status, source, now)
    with engine.begin() as conn:
        statement = (
            insert_statement(conn)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["email_key"])
        )
        row = conn.execute(statement.returning(*subscribers.c)).first()
    return _subscriber(row) if row is not None else None


def get_subscriber(engine: Engine, email: str) -> Subscriber | None:
    """Look an address up whatever its case, to show it or to act on it."""
    with engine.connect() as conn:
        row = conn.execute(
            select(subscribers).where(subscribers.c.email_key == email_key(email))
        ).first()
    return _subscriber(row) if row is not None else None


def set_name(engine: Engine, email: str, name: str) -> bool:
    """Correct the name shown in greetings; False if the address is unknown or already so named."""
    statement = (
        update(subscribers)
        .where(subscribers.c.email_key == email_key(email), subscribers.c.name != name[:200])
        .values(name=name[:200], updated_at=utcnow())
    )
    with engine.begin() as conn:
        return (conn.execute(statement).rowcount or 0) > 0


def set_status(engine: Engine, email: str, status: SubscriberStatus) -> bool:
    """Change an address's status, stamping when; False if unknown or already in that status.

    Becoming active sets `confirmed_at`, clears `unsubscribed_at` and resets the
    bounce count (the operator vouches for the address again); becoming
    unsubscribed sets `unsubscribed_at`.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": status.value, "updated_at": now}
    if status is SubscriberStatus.ACTIVE:
        values.update(confirmed_at=now, unsubscribed_at=None, bounce_count=0)
    elif status is SubscriberStatus.UNSUBSCRIBED:
        values.update(unsubscribed_at=now)
    statement = (
        update(subscribers)
        .where(subscribers.c.email_key == email_key(email), subscribers.c.status != status.value)
        .values(**values)
    )
    with engine.begin() as conn:
        return (conn.execute(statement).rowcount or 0) > 0


def delete_subscriber(engine: Engine, email: str) -> bool:
    """Erase an address and its delivery rows (they point at it by foreign key); False if unknown.

    This is erasure on request: nothing of the address is left, so a later
    import could add it again. Marking it unsubscribed is the normal removal.
    """
    with engine.begin() as conn:
        found = conn.execute(
            select(subscribers.c.id).where(subscribers.c.email_key == email_key(email))
        ).first()
        if found is None:
            return False
        conn.execute(delete(deliveries).where(deliveries.c.subscriber_id == found.id))
        conn.execute(delete(subscribers).where(subscribers.c.id == found.id))
    return True


def count_by_status(engine: Engine) -> dict[SubscriberStatus, int]:
    """How many addresses are in each status, every status present (zero included), for status."""
    counts = dict.fromkeys(SubscriberStatus, 0)
    with engine.connect() as conn:
        rows = conn.execute(
            select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
        )
        for status, number in rows:
            counts[SubscriberStatus(status)] = number
    return counts


def active_address_outside(engine: Engine, names: Sequence[str]) -> str | None:
    """One active subscriber's address whose domain is none of `names` (nor under one).

    Whether a send could reach real people (`config.is_trial`): one indexed
    scan that stops at the first such row, not a read of the whole list.
    """
    key = subscribers.c.email_key
    tests = [key.like(f"%@{name}") for name in names] + [key.like(f"%.{name}") for name in names]
    statement = (
        select(subscribers.c.email)
        .where(subscribers.c.status == SubscriberStatus.ACTIVE.value, not_(or_(*tests)))
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(statement).scalar()


def iter_subscribers(
    engine: Engine, status: SubscriberStatus | None = None, batch_size: int = 1000
) -> Iterator[Subscriber]:
    """Every subscriber (of one status) in id order, a page at a time, for export and sends.

    Keyset paging on id (never OFFSET): each page is one short query, rows
    added or removed meanwhile never shift a page, and no page repeats a row.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    last_id = 0
    while True:
        statement = (
            select(subscribers)
            .where(subscribers.c.id > last_id)
            .order_by(subscribers.c.id)
            .limit(batch_size)
        )
        if status is not None:
            statement = statement.where(subscribers.c.status == status.value)
        with engine.connect() as conn:
            page = conn.execute(statement).all()
        for row in page:
            yield _subscriber(row)
        if len(page) < batch_size:
            return
        last_id = page[-1].id


def search_subscribers(engine: Engine, query: str, limit: int = 50) -> list[Subscriber]:
    """Addresses containing `query` (any case), so an operator can find someone by part of it."""
    statement = (
        select(subscribers)
        .where(subscribers.c.email_key.contains(email_key(query), autoescape=True))
        .order_by(subscribers.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_subscriber(row) for row in conn.execute(statement)]


def count_hard_bounce(conn: Connection, subscriber_id: int, limit: int) -> bool:
    """Count a 5xx for this address, in the transaction that records it (see
    `deliveries.record_outcomes`); at `limit` (across editions) stop sending to it.

    Returns True when this bounce made the subscriber `bounced`.
    """
    now = utcnow()
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .values(bounce_count=subscribers.c.bounce_count + 1, updated_at=now)
    )
    result = conn.execute(
        update(subscribers)
        .where(
            subscribers.c.id == subscriber_id,
            subscribers.c.bounce_count >= limit,
            subscribers.c.status == SubscriberStatus.ACTIVE,
        )
        .values(status=SubscriberStatus.BOUNCED, updated_at=now)
    )
    return bool(result.rowcount)


# Helpers: statements shared by the queries above and store/imports.py, and row conversion.


def insert_statement(conn: Connection, table: Table = subscribers) -> Insert:
    """An INSERT that knows ON CONFLICT for this database (SQLite and PostgreSQL both spell it)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise StoreError(f"unsupported database {dialect!r}", hint="use SQLite or PostgreSQL")
    return insert(table)


def new_row(
    email: str, name: str, status: SubscriberStatus, source: str, now: dt.datetime
) -> dict[str, Any]:
    """The columns of a new subscriber row, stamped `now` (one add, or each row of an import)."""
    return {
        "email": email.strip(),
        "email_key": email_key(email),
        "name": name[:200],
        "status": status.value,
        "source": source[:100],
        "bounce_count": 0,
        "created_at": now,
        "updated_at": now,
        "confirmed_at": now if status is SubscriberStatus.ACTIVE else None,
        "unsubscribed_at": now if status is SubscriberStatus.UNSUBSCRIBED else None,
    }


def _subscriber(row: Row) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        status=SubscriberStatus(row.status),
        source=row.source,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
