"""Queries on the subscriber list.

Convention (the same as the other store modules): every function takes the
`Engine` and opens its own short transaction, so a caller can never leave one
open by mistake and a long export never holds a read snapshot. A batch import
calls `upsert_imported` once per batch: one transaction per batch.

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
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    Engine,
    Row,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from newsletter.errors import StoreError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.store.engine import utcnow
from newsletter.store.schema import deliveries, subscribers

# Keys per IN (...) list: well under SQLite's bound-parameter limit on any version.
_IN_CHUNK = 500
SUPPRESSED = frozenset({SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED})


class ImportRow(NamedTuple):
    """One address to import; `status` is set only when the file marks it unsubscribed/bounced."""

    email: str
    name: str = ""
    status: SubscriberStatus | None = None


@dataclass
class ImportCounts:
    """What one import batch did; the categories are exclusive and sum to the unique rows."""

    added: int = 0  # new addresses, stored as active
    updated: int = 0  # existing active/pending ones whose name or status (pending→active) changed
    unchanged: int = 0  # existing active ones the file had nothing new for
    kept_unsubscribed: int = 0  # already unsubscribed: left as they are
    kept_bounced: int = 0  # already bounced: left as they are
    suppressed: int = 0  # the file marks them unsubscribed/bounced: stored as such

    def __iadd__(self, other: ImportCounts) -> ImportCounts:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


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
    values = _new_row(email, name, status, source, now)
    with engine.begin() as conn:
        statement = (
            _insert(conn).values(**values).on_conflict_do_nothing(index_elements=["email_key"])
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


def upsert_imported(engine: Engine, rows: Sequence[ImportRow], source: str) -> ImportCounts:
    """Merge one batch of imported rows in one transaction, never re-activating a suppressed one.

    New addresses are inserted as active (or as the file's unsubscribed/bounced).
    Existing active/pending ones take the file's name when it gives one, and
    pending becomes active (the operator asserts consent by importing); the
    file's unsubscribed/bounced is applied to them. Existing unsubscribed and
    bounced rows are left exactly as they are. Within `rows` the first
    occurrence of an address wins.
    """
    wanted: dict[str, ImportRow] = {}
    for row in rows:
        wanted.setdefault(email_key(row.email), row)
    counts = ImportCounts()
    if not wanted:
        return counts
    now = utcnow()
    source = source[:100]
    try:
        _upsert_batch(engine, wanted, source, now, counts)
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot write the imported batch: {getattr(exc, 'orig', None) or exc}",
            hint="nothing of this batch was saved; earlier batches were",
        ) from exc
    return counts


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


# Helpers: statements shared by the queries above, and row conversion.


def _insert(conn: Connection) -> Insert:
    """An INSERT that knows ON CONFLICT for this database (SQLite and PostgreSQL both spell it)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise StoreError(f"unsupported database {dialect!r}", hint="use SQLite or PostgreSQL")
    return insert(subscribers)


def _new_row(
    email: str, name: str, status: SubscriberStatus, source: str, now: dt.datetime
) -> dict[str, Any]:
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


def _upsert_batch(
    engine: Engine,
    wanted: dict[str, ImportRow],
    source: str,
    now: dt.datetime,
    counts: ImportCounts,
) -> None:
    """The body of `upsert_imported`: look up, insert the new, update the changed."""
    with engine.begin() as conn:
        existing = _select_by_keys(conn, list(wanted))
        fresh = [key for key in wanted if key not in existing]
        inserted = _insert_many(conn, [wanted[key] for key in fresh], source, now)
        for key in inserted:
            if wanted[key].status is None:
                counts.added += 1
            else:
                counts.suppressed += 1
        raced = [key for key in fresh if key not in inserted]  # added meanwhile by someone else
        if raced:
            existing.update(_select_by_keys(conn, raced))
        changes = []
        for key, current in existing.items():
            change = _merge(current, wanted[key], now, counts)
            if change is not None:
                changes.append(change)
        if changes:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == bindparam("_id"))
                .values(
                    name=bindparam("_name"),
                    status=bindparam("_status"),
                    confirmed_at=bindparam("_confirmed_at"),
                    unsubscribed_at=bindparam("_unsubscribed_at"),
                    updated_at=bindparam("_updated_at"),
                ),
                changes,
            )


def _select_by_keys(conn: Connection, keys: Sequence[str]) -> dict[str, Row]:
    """The stored rows for these keys, looked up through the unique index on email_key.

    PostgreSQL gets one `= ANY(array)` parameter: psycopg prepares repeated
    statements, and a generic plan for a 500-parameter IN list, made while the
    table was small, turns into a sequential scan per batch as it grows (a 100k
    import went from 8 s to 48 s). SQLite gets IN lists small enough for any version.
    """
    columns = (
        subscribers.c.id,
        subscribers.c.email_key,
        subscribers.c.name,
        subscribers.c.status,
        subscribers.c.confirmed_at,
        subscribers.c.unsubscribed_at,
    )
    if conn.dialect.name == "postgresql":
        matches = [subscribers.c.email_key == any_(cast(list(keys), ARRAY(Text)))]
    else:
        matches = [
            subscribers.c.email_key.in_(keys[start : start + _IN_CHUNK])
            for start in range(0, len(keys), _IN_CHUNK)
        ]
    found: dict[str, Row] = {}
    for match in matches:
        for row in conn.execute(select(*columns).where(match)):
            found[row.email_key] = row
    return found


def _insert_many(
    conn: Connection, rows: list[ImportRow], source: str, now: dt.datetime
) -> set[str]:
    """Insert new rows in one executemany; the keys actually inserted (a racing add is skipped)."""
    if not rows:
        return set()
    values = [
        _new_row(row.email, row.name, row.status or SubscriberStatus.ACTIVE, source, now)
        for row in rows
    ]
    statement = (
        _insert(conn)
        .on_conflict_do_nothing(index_elements=["email_key"])
        .returning(subscribers.c.email_key)
    )
    return set(conn.execute(statement, values).scalars())


def _merge(
    current: Row, row: ImportRow, now: dt.datetime, counts: ImportCounts
) -> dict[str, Any] | None:
    """The update one imported row makes to a stored one (None: leave it), counted."""
    status = SubscriberStatus(current.status)
    if status is SubscriberStatus.UNSUBSCRIBED:
        counts.kept_unsubscribed += 1
        return None
    if status is SubscriberStatus.BOUNCED:
        counts.kept_bounced += 1
        return None
    name = row.name[:200] if row.name else current.name
    confirmed_at, unsubscribed_at = current.confirmed_at, current.unsubscribed_at
    if row.status is not None:
        new_status = row.status
        if new_status is SubscriberStatus.UNSUBSCRIBED:
            unsubscribed_at = now
        counts.suppressed += 1
    else:
        new_status = SubscriberStatus.ACTIVE
        if status is not SubscriberStatus.ACTIVE:
            confirmed_at = now
        if new_status is status and name == current.name:
            counts.unchanged += 1
            return None
        counts.updated += 1
    return {
        "_id": current.id,
        "_name": name,
        "_status": new_status.value,
        "_confirmed_at": confirmed_at,
        "_unsubscribed_at": unsubscribed_at,
        "_updated_at": now,
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


def record_hard_bounce(engine: Engine, subscriber_id: int, limit: int) -> bool:
    """Count a 5xx for this address; at `limit` (across editions) stop sending to it.

    Returns True when this bounce made the subscriber `bounced`.
    """
    now = utcnow()
    with engine.begin() as conn:
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


# Sign-up with double opt-in (the rules are in newsletter/signup.py; these are its queries).


@dataclass(frozen=True)
class Consent:
    """The proof of a web sign-up: when the link was last sent, and who confirmed, when, how."""

    confirmation_sent_at: dt.datetime | None
    consent_at: dt.datetime | None
    consent_ip: str | None
    consent_user_agent: str | None


def claim_confirmation(
    engine: Engine, email: str, *, resend_after: dt.timedelta
) -> dt.datetime | None:
    """Stamp `confirmation_sent_at` unless a confirmation went to this address within
    `resend_after`: the stamp when the caller may send one now, None when not.

    One conditional UPDATE, so two sign-ups racing for the same address send at
    most one email. Active addresses are never claimed (they need no
    confirmation, and must not learn they are on the list). `updated_at` is
    left alone: nothing about the subscription changed yet.
    """
    now = utcnow()
    statement = (
        update(subscribers)
        .where(
            subscribers.c.email_key == email_key(email),
            subscribers.c.status != SubscriberStatus.ACTIVE.value,
            or_(
                subscribers.c.confirmation_sent_at.is_(None),
                subscribers.c.confirmation_sent_at <= now - resend_after,
            ),
        )
        .values(confirmation_sent_at=now)
    )
    with engine.begin() as conn:
        return now if (conn.execute(statement).rowcount or 0) > 0 else None


def release_confirmation(engine: Engine, email: str, stamp: dt.datetime) -> None:
    """Undo `claim_confirmation` when the email could not be sent, so a retry may send at once."""
    statement = (
        update(subscribers)
        .where(
            subscribers.c.email_key == email_key(email),
            subscribers.c.confirmation_sent_at == stamp,
        )
        .values(confirmation_sent_at=None)
    )
    with engine.begin() as conn:
        conn.execute(statement)


def record_consent(engine: Engine, email: str, *, ip: str, user_agent: str) -> bool:
    """Make a signed-up address active and keep the proof of consent; False if nothing to confirm.

    Only an address that was sent a confirmation and is not active yet can be
    confirmed, so a stale link cannot undo a later unsubscribe (confirming
    clears `confirmation_sent_at`). Like `set_status(ACTIVE)` it stamps
    `confirmed_at`, clears `unsubscribed_at` and resets the bounce count: the
    person just proved the mailbox is theirs and works.
    """
    now = utcnow()
    statement = (
        update(subscribers)
        .where(
            subscribers.c.email_key == email_key(email),
            subscribers.c.status != SubscriberStatus.ACTIVE.value,
            subscribers.c.confirmation_sent_at.is_not(None),
        )
        .values(
            status=SubscriberStatus.ACTIVE.value,
            confirmed_at=now,
            unsubscribed_at=None,
            bounce_count=0,
            confirmation_sent_at=None,
            consent_at=now,
            consent_ip=ip[:64],
            consent_user_agent=user_agent[:500],
            updated_at=now,
        )
    )
    with engine.begin() as conn:
        return (conn.execute(statement).rowcount or 0) > 0


def get_consent(engine: Engine, email: str) -> Consent | None:
    """The sign-up record of an address (for the editor's subscriber page and audits)."""
    columns = (
        subscribers.c.confirmation_sent_at,
        subscribers.c.consent_at,
        subscribers.c.consent_ip,
        subscribers.c.consent_user_agent,
    )
    with engine.connect() as conn:
        row = conn.execute(
            select(*columns).where(subscribers.c.email_key == email_key(email))
        ).first()
    return Consent(*row) if row is not None else None


def delete_expired_pending(engine: Engine, cutoff: dt.datetime) -> int:
    """Forget sign-ups never confirmed: pending rows last asked for before `cutoff`.

    "Last asked for" is the last confirmation email, or the row's creation when
    none went out. Rows with delivery records are kept (a pending row never
    gets any; this only guards the foreign key). Unsubscribed rows are never
    touched, even when they asked to come back: they must stay suppressed.
    """
    asked = func.coalesce(subscribers.c.confirmation_sent_at, subscribers.c.created_at)
    has_deliveries = exists().where(deliveries.c.subscriber_id == subscribers.c.id)
    statement = delete(subscribers).where(
        subscribers.c.status == SubscriberStatus.PENDING.value, asked < cutoff, ~has_deliveries
    )
    with engine.begin() as conn:
        return conn.execute(statement).rowcount or 0
