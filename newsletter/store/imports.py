"""Merging an imported batch into the subscriber list, counted, never re-activating anyone.

`subscribers.import_csv` calls `upsert_imported` once per batch: one
transaction per batch, so a database failure loses at most the batch in hand.
Existing rows are looked up through the unique index on `email_key`, new ones
inserted in one executemany, changed ones updated in another.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, DateTime, Engine, Row, Text, any_, bindparam, cast, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import StoreError
from newsletter.models import SubscriberStatus
from newsletter.store.engine import utcnow
from newsletter.store.schema import subscribers
from newsletter.store.subscribers import email_key, new_row

# Keys per IN (...) list: well under SQLite's bound-parameter limit on any version.
_IN_CHUNK = 500
# Rows per multi-row INSERT on SQLite (fewer where its bound-parameter limit is lower).
_INSERT_ROWS = 1000


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
    """Insert new rows, skipping any added meanwhile; the keys actually inserted.

    One multi-row INSERT … ON CONFLICT DO NOTHING RETURNING per chunk, written
    at the driver's level: SQLAlchemy's executemany spent more time binding each
    row's ten values (four timestamps formatted one by one) than SQLite spent
    storing them. The values are still `new_row`'s, and the timestamps still go
    through the column type's own bind processor, once per batch since every
    one of them is `now` or NULL. PostgreSQL gets the whole batch as one array
    per column (`unnest`): one statement, a constant number of parameters.
    """
    if not rows:
        return set()
    values = [
        new_row(row.email, row.name, row.status or SubscriberStatus.ACTIVE, source, now)
        for row in rows
    ]
    names = list(values[0])
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    table = quote(subscribers.name)
    tail = f"ON CONFLICT ({quote('email_key')}) DO NOTHING RETURNING {quote('email_key')}"
    inserted: set[str] = set()
    if dialect.name == "postgresql":
        arrays = ", ".join(
            f"%s::{subscribers.c[name].type.compile(dialect=dialect)}[]" for name in names
        )
        statement = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) {tail}"
        parameters = tuple([value[name] for value in values] for name in names)
        inserted.update(key for (key,) in conn.exec_driver_sql(statement, parameters))
        return inserted
    stamps = _stamp_processors(conn, names)
    flat = [
        stamps[index](cell) if index in stamps else cell
        for value in values
        for index, cell in enumerate(value.values())
    ]
    per_row = len(names)
    chunk = max(1, min(_INSERT_ROWS, _sqlite_variable_limit(conn) // per_row))
    placeholder = "(" + ", ".join("?" * per_row) + ")"
    for start in range(0, len(values), chunk):
        count = min(chunk, len(values) - start)
        statement = (
            f"INSERT INTO {table} ({columns}) VALUES "
            + ", ".join([placeholder] * count)
            + f" {tail}"
        )
        parameters = tuple(flat[start * per_row : (start + count) * per_row])
        inserted.update(key for (key,) in conn.exec_driver_sql(statement, parameters))
    return inserted


def _stamp_processors(conn: Connection, names: list[str]) -> dict[int, Any]:
    """For each timestamp column (by position), its type's bind processor, memoized per value.

    Every timestamp of a batch is `now` or NULL, so each is formatted once."""
    dialect = conn.dialect
    processors: dict[int, Any] = {}
    for index, name in enumerate(names):
        column_type = subscribers.c[name].type
        if not isinstance(column_type, DateTime):
            continue
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[index] = _memoized(process)
    return processors


def _memoized(process: Any) -> Any:
    seen: dict[Any, Any] = {}

    def once(value: Any) -> Any:
        if value not in seen:
            seen[value] = process(value)
        return seen[value]

    return once


def _sqlite_variable_limit(conn: Connection) -> int:
    """How many `?` one SQLite statement may hold on this build (999 before 3.32, then 32766)."""
    driver = conn.connection.dbapi_connection
    try:
        return int(driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))  # type: ignore[union-attr]
    except (AttributeError, sqlite3.Error):
        return 999


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
