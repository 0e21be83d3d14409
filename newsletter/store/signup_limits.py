"""The sign-up limits' queries: one row per sign-up let through, counted per client, domain, all.

The rules (what counts, the defaults) are in `newsletter/signup.py`; here is how a
slot is taken so that two requests racing for the last one cannot both get it.

`take_signup_slot` inserts the request's row first and counts after, in one
transaction, and rolls the row back when a count is over its limit:

* SQLite: the transaction's first statement writes, so it holds the database's
  one write lock from its start to its commit; a concurrent request waits on the
  busy timeout, then starts afresh and counts the committed row.
* PostgreSQL: a concurrent transaction's row is invisible until it commits
  (READ COMMITTED), so both could count themselves under the limit; a
  transaction-scoped advisory lock taken first makes them take turns.

Only admitted requests keep a row, so a request refused by one limit uses up none
of the others, and the table holds at most a day of admitted sign-ups: rows older
than that are deleted by the next request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, delete, func, insert, select

from newsletter.store.engine import utcnow
from newsletter.store.schema import signup_requests

KEEP_FOR = dt.timedelta(days=1)  # the longest SIGNUP_LIMIT_WINDOW; older rows are pruned
_PG_LOCK_KEY = 0x6E65777332  # pg_advisory_xact_lock key of the sign-up limits


class Limit(StrEnum):
    """Which limit refused a sign-up (logged, and named on the 429 page's log line)."""

    PER_CLIENT = "per_client"
    PER_DOMAIN = "per_domain"
    TOTAL = "total"


@dataclass(frozen=True)
class Limits:
    per_client: int
    per_domain: int
    total: int
    window: dt.timedelta


@dataclass(frozen=True)
class Refusal:
    """A sign-up over a limit: which one, and when its oldest counted request leaves the window."""

    limit: Limit
    retry_after: dt.timedelta


def take_signup_slot(
    engine: Engine, *, client: str, domain: str, limits: Limits, now: dt.datetime | None = None
) -> Refusal | None:
    """Count one sign-up from `client` to `domain`: None when it is let through (and counted),
    else the first limit it would exceed (and nothing is counted)."""
    now = now or utcnow()
    client, domain = client[:64], domain.lower()[:255]
    since = now - limits.window
    with engine.connect() as conn, conn.begin() as transaction:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        conn.execute(delete(signup_requests).where(signup_requests.c.at < now - KEEP_FOR))
        conn.execute(insert(signup_requests).values(at=now, client=client, domain=domain))
        recent = signup_requests.c.at > since
        by_client = signup_requests.c.client == client
        by_domain = signup_requests.c.domain == domain
        counts = conn.execute(
            select(
                func.count().filter(by_client), func.count().filter(by_domain), func.count()
            ).where(recent)
        ).one()
        over = [
            (limit, where)
            for limit, where, count, most in (
                (Limit.PER_CLIENT, by_client, counts[0], limits.per_client),
                (Limit.PER_DOMAIN, by_domain, counts[1], limits.per_domain),
                (Limit.TOTAL, recent, counts[2], limits.total),
            )
            if count > most
        ]
        if not over:
            return None  # committed as the block ends
        limit, where = over[0]
        oldest = conn.execute(select(func.min(signup_requests.c.at)).where(recent, where))
        first = oldest.scalar_one()
        transaction.rollback()  # the refused request counts toward nothing
    return Refusal(limit, max(first + limits.window - now, dt.timedelta(seconds=1)))


def count_signup_requests(engine: Engine) -> int:
    """How many admitted sign-ups the table holds (for tests and a look at pruning)."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(signup_requests)).scalar_one()
