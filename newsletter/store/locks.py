"""Named locks in the database, so two schedulers on one database never both run.

A lock has a holder (`host:pid:nonce`) and a heartbeat. It can be taken when
it is free, when its heartbeat is older than `stale_after` (the holder died on
some machine), or when the caller proves the holder dead (same host, no such
process). SQLite serializes the writes; on PostgreSQL the primary key does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.store.engine import utcnow
from newsletter.store.schema import locks


@dataclass(frozen=True)
class LockHolder:
    holder: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime


def acquire_lock(
    engine: Engine,
    name: str,
    holder: str,
    *,
    stale_after: dt.timedelta,
    holder_is_dead: Callable[[str], bool],
) -> LockHolder | None:
    """Take the lock; None on success, else who holds it (for the refusal message)."""
    now = utcnow()
    with engine.begin() as conn:
        row = conn.execute(select(locks).where(locks.c.name == name)).first()
        if row is not None:
            current = LockHolder(row.holder, row.acquired_at, row.heartbeat_at)
            if row.holder != holder and row.heartbeat_at > now - stale_after:
                if not holder_is_dead(row.holder):
                    return current
            conn.execute(delete(locks).where(locks.c.name == name, locks.c.holder == row.holder))
        try:
            conn.execute(
                insert(locks).values(name=name, holder=holder, acquired_at=now, heartbeat_at=now)
            )
        except IntegrityError:  # another process took it between our read and insert
            row = conn.execute(select(locks).where(locks.c.name == name)).first()
            return LockHolder(row.holder, row.acquired_at, row.heartbeat_at)
    return None


def heartbeat_lock(engine: Engine, name: str, holder: str) -> bool:
    """Keep the lock fresh; False if it was taken from us (then stop working)."""
    with engine.begin() as conn:
        result = conn.execute(
            update(locks)
            .where(locks.c.name == name, locks.c.holder == holder)
            .values(heartbeat_at=utcnow())
        )
        return bool(result.rowcount)


def release_lock(engine: Engine, name: str, holder: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(locks).where(locks.c.name == name, locks.c.holder == holder))


def read_lock(engine: Engine, name: str) -> LockHolder | None:
    """Who holds a lock and when they were last seen, for health checks; None when free."""
    with engine.connect() as conn:
        row = conn.execute(select(locks).where(locks.c.name == name)).first()
    return LockHolder(row.holder, row.acquired_at, row.heartbeat_at) if row is not None else None
