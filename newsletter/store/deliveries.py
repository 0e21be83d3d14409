"""Queries on the delivery record: one row per (edition, subscriber).

The row is the unit of work and the record of truth. Its life:

    queued ──claim──> sending ──250 to DATA──> sent
                         │  └──5xx / retries spent──> failed
                         └──subscriber left──> skipped

A claim stamps the row with the claimer and a lease; a row whose lease ran out
(its sender died) is claimable again, which is what bounds duplicates after a
crash to the messages that were in flight.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Engine,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store.engine import database_name, utcnow
from newsletter.store.errors import translated
from newsletter.store.schema import bounce_events, deliveries, subscribers, test_sends
from newsletter.store.subscribers import count_hard_bounce


@dataclass(frozen=True)
class Claim:
    """A delivery this process now owns, with what it needs to address the message."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int
    first_attempt_at: dt.datetime | None


_QUEUED_COLUMNS = [
    "edition_id",
    "subscriber_id",
    "email",
    "status",
    "attempts",
    "last_reply",
    "updated_at",
]


def queue_deliveries(engine: Engine, edition_id: int) -> int:
    """Add a queued row for every active subscriber who has none yet for this edition.

    Safe to run again: existing rows (sent or not) are left alone, so a rerun
    sends nothing twice while a late subscriber still gets the edition. Safe to
    run by several senders at once too: the NOT EXISTS cannot see another
    sender's uncommitted rows, so ON CONFLICT DO NOTHING settles the race.
    """
    now = utcnow()
    already = exists().where(
        deliveries.c.edition_id == edition_id, deliveries.c.subscriber_id == subscribers.c.id
    )
    source = select(
        literal(edition_id),
        subscribers.c.id,
        subscribers.c.email,
        literal(DeliveryStatus.QUEUED.value),
        literal(0),
        literal(""),
        literal(now),
    ).where(subscribers.c.status == SubscriberStatus.ACTIVE, ~already)
    if engine.dialect.name == "postgresql":
        # psycopg reports no rowcount for this statement: count what it returns, in SQL
        statement = (
            postgresql_insert(deliveries)
            .from_select(_QUEUED_COLUMNS, source)
            .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
            .returning(deliveries.c.id)
            .cte("queued")
        )
        with engine.begin() as conn:
            return conn.execute(select(func.count()).select_from(statement)).scalar() or 0
    statement = (
        sqlite_insert(deliveries)
        .from_select(_QUEUED_COLUMNS, source)
        .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
    )
    with engine.begin() as conn:
        return conn.execute(statement).rowcount or 0


def claim_batch(
    engine: Engine, edition_id: int, *, claimer: str, size: int, lease: dt.timedelta
) -> tuple[list[Claim], int]:
    """Take up to `size` queued (or abandoned) rows for this process, atomically.

    One UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING: atomic on SQLite, and
    with SKIP LOCKED on PostgreSQL several senders never claim the same row.
    Rows whose subscriber is no longer active are marked skipped here, just
    before their message would be built; their number is returned beside the claims.
    """
    now = utcnow()
    # Two seeks on the (edition_id, status, id) index rather than one OR: with an
    # OR, the planner walks every row already sent, and a claim near the end of a
    # 300,000-row edition costs as much as the whole send so far.
    queued = select(deliveries.c.id).where(
        deliveries.c.edition_id == edition_id,
        deliveries.c.status == DeliveryStatus.QUEUED,
        or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
    )
    abandoned = select(deliveries.c.id).where(
        deliveries.c.edition_id == edition_id,
        deliveries.c.status == DeliveryStatus.SENDING,
        deliveries.c.lease_until < now,
    )

    def take(candidates, limit: int):  # noqa: ANN001, ANN202
        chosen = candidates.order_by(deliveries.c.id).limit(limit).with_for_update(skip_locked=True)
        return (
            update(deliveries)
            .where(deliveries.c.id.in_(chosen.scalar_subquery()))
            .values(
                status=DeliveryStatus.SENDING,
                claimed_by=claimer,
                lease_until=now + lease,
                updated_at=now,
            )
            .returning(
                deliveries.c.id,
                deliveries.c.subscriber_id,
                deliveries.c.attempts,
                deliveries.c.first_attempt_at,
            )
        )

    with engine.begin() as conn:
        claimed = conn.execute(take(queued, size)).all()
        if len(claimed) < size:
            claimed += conn.execute(take(abandoned, size - len(claimed))).all()
        if not claimed:
            return [], 0
        people = {
            row.id: row
            for row in conn.execute(
                select(
                    subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.status
                ).where(subscribers.c.id.in_([row.subscriber_id for row in claimed]))
            )
        }
        claims, gone = [], []
        for row in sorted(claimed, key=lambda r: r.id):
            person = people.get(row.subscriber_id)
            if person is None or person.status != SubscriberStatus.ACTIVE:
                gone.append(row.id)
                continue
            claims.append(
                Claim(
                    row.id,
                    row.subscriber_id,
                    person.email,
                    person.name,
                    row.attempts,
                    row.first_attempt_at,
                )
            )
        if gone:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(gone))
                .values(
                    status=DeliveryStatus.SKIPPED,
                    last_reply="subscriber no longer active",
                    claimed_by=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
    return claims, len(gone)


class ActiveCheck:
    """Is this subscriber still active? Asked right before each message is handed over.

    It runs once per message, so it keeps one DB-API connection and one plain
    statement instead of going through the SQL builder: an unsubscribe wins
    until the last moment without costing the send its speed. The engine's
    error translation does not see a raw connection, so this translates its
    own (the same `store.errors.translate`).
    """

    def __init__(self, engine: Engine) -> None:
        self.where = database_name(engine)
        with translated(self.where):
            self.raw = engine.raw_connection()
            self.autocommit = engine.dialect.name != "sqlite"
            if self.autocommit:  # no transaction left open between checks (PostgreSQL)
                self.raw.driver_connection.autocommit = True
        marker = {"qmark": "?", "numeric": ":1", "named": ":id"}.get(
            engine.dialect.paramstyle, "%s"
        )
        self.sql = f"SELECT status FROM subscribers WHERE id = {marker}"

    def __call__(self, subscriber_id: int) -> bool:
        with translated(self.where):
            cursor = self.raw.cursor()
            try:
                cursor.execute(self.sql, (subscriber_id,))
                row = cursor.fetchone()
            finally:
                cursor.close()
        return row is not None and row[0] == SubscriberStatus.ACTIVE.value

    def close(self) -> None:
        with translated(self.where):
            if self.autocommit:
                self.raw.driver_connection.autocommit = False
            self.raw.close()

    def discard(self) -> None:
        """After an error: drop the connection rather than give a broken one back to the pool."""
        self.raw.invalidate()


def claimers(engine: Engine, edition_id: int) -> list[str]:
    """Who holds claimed rows of an edition now: a dead one's rows can be taken back."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.claimed_by)
            .where(
                deliveries.c.edition_id == edition_id,
                deliveries.c.status == DeliveryStatus.SENDING,
                deliveries.c.claimed_by.is_not(None),
            )
            .distinct()
        )
        return [row.claimed_by for row in rows]


def release_claims_of(engine: Engine, edition_id: int, claimer: str) -> int:
    """Return a dead sender's claimed rows to the queue (it may have sent some: the bound)."""
    with engine.begin() as conn:
        result = conn.execute(
            update(deliveries)
            .where(
                deliveries.c.edition_id == edition_id,
                deliveries.c.status == DeliveryStatus.SENDING,
                deliveries.c.claimed_by == claimer,
            )
            .values(
                status=DeliveryStatus.QUEUED, claimed_by=None, lease_until=None, updated_at=utcnow()
            )
        )
        return result.rowcount or 0


def requeue_failed(engine: Engine, edition_id: int) -> int:
    """`newsletter retry`: failed rows get a fresh set of attempts (their history is kept in
    last_reply until the next try overwrites it).

    Not the ones a later bounce report failed (`bounce_events`): the relay took those
    messages and the recipient's server refused them, so sending again would only bounce
    again; retry is for what the relay itself refused or never took.
    """
    bounced_later = select(bounce_events.c.delivery_id).where(
        bounce_events.c.delivery_id.is_not(None)
    )
    with engine.begin() as conn:
        result = conn.execute(
            update(deliveries)
            .where(
                deliveries.c.edition_id == edition_id,
                deliveries.c.status == DeliveryStatus.FAILED,
                deliveries.c.id.not_in(bounced_later),
            )
            .values(
                status=DeliveryStatus.QUEUED,
                attempts=0,
                first_attempt_at=None,
                next_attempt_at=None,
                updated_at=utcnow(),
            )
        )
        return result.rowcount or 0


@dataclass(frozen=True)
class FailedDelivery:
    email: str
    attempts: int
    last_reply: str
    updated_at: dt.datetime


def failed_deliveries(engine: Engine, edition_id: int, limit: int = 50) -> list[FailedDelivery]:
    """The failed recipients of an edition with the server's last reply, for `status`."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                deliveries.c.email,
                deliveries.c.attempts,
                deliveries.c.last_reply,
                deliveries.c.updated_at,
            )
            .where(
                deliveries.c.edition_id == edition_id,
                deliveries.c.status == DeliveryStatus.FAILED,
            )
            .order_by(deliveries.c.id)
            .limit(limit)
        )
        return [FailedDelivery(*row) for row in rows]


@dataclass(frozen=True)
class DeliveryRecord:
    """One message's result, as the delivery row will hold it."""

    delivery_id: int
    status: DeliveryStatus
    reply: str
    attempted: bool = True  # False for a skip: no SMTP transaction took place
    next_attempt_at: dt.datetime | None = None
    hard_bounce: bool = False  # the relay refused the address: counts toward BOUNCE_LIMIT


_RECORD = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        last_reply=bindparam("b_reply"),
        claimed_by=None,
        lease_until=None,
        next_attempt_at=bindparam("b_next"),
        updated_at=bindparam("b_now"),
        attempts=deliveries.c.attempts + bindparam("b_inc"),
        hard_bounce=bindparam("b_hard"),
        first_attempt_at=case(
            (
                bindparam("b_inc") == 1,
                func.coalesce(deliveries.c.first_attempt_at, bindparam("b_now")),
            ),
            else_=deliveries.c.first_attempt_at,
        ),
    )
)
# A hard bounce is written only over a row still claimed, and says whose it is: the
# write that records it is the one that counts it.
_RECORD_BOUNCE = _RECORD.where(deliveries.c.status == DeliveryStatus.SENDING).returning(
    deliveries.c.subscriber_id
)


def record_outcomes(
    engine: Engine, outcomes: Sequence[DeliveryRecord], *, bounce_limit: int
) -> list[int]:
    """Record results and commit: this is the durable 'sent'. The delivery ids whose
    subscriber this write made `bounced`.

    Many results in one transaction (the sender's group commit), so the cost of a
    commit is shared by every connection that finished a message meanwhile. A hard
    bounce adds to its subscriber's bounce count in the same transaction, and only
    when this write is the one that records it (the row is still `sending`): so every
    recorded hard bounce counts exactly once, whether the send recorded it at once or
    its cleanup did at the stop, and writing a record again (a commit that seemed to
    fail had gone through) counts nothing twice.
    """
    if not outcomes:
        return []
    now = utcnow()
    rows = [
        {
            "b_id": o.delivery_id,
            "b_status": o.status.value,
            "b_reply": o.reply[:1000],
            "b_next": o.next_attempt_at,
            "b_now": now,
            "b_inc": 1 if o.attempted else 0,
            "b_hard": o.hard_bounce,
        }
        for o in outcomes
    ]
    plain = [row for o, row in zip(outcomes, rows, strict=True) if not o.hard_bounce]
    bounces = [(o, row) for o, row in zip(outcomes, rows, strict=True) if o.hard_bounce]
    bounced = []
    with engine.begin() as conn:
        if plain:
            conn.execute(_RECORD, plain)
        for outcome, row in bounces:  # one per 5xx for an address: few
            subscriber_id = conn.execute(_RECORD_BOUNCE, row).scalar()
            if subscriber_id is not None and count_hard_bounce(conn, subscriber_id, bounce_limit):
                bounced.append(outcome.delivery_id)
    return bounced


def release_claims(engine: Engine, delivery_ids: Iterable[int], *, claimer: str) -> int:
    """Give this claimer's unsent rows back to the queue (a clean stop), so the next run takes them.

    Only rows it still holds: one another sender took over meanwhile (this claim's
    lease ran out, or its run ended and the next one reclaimed it) stays theirs,
    even when this release arrives late, from a thread the stop left waiting on a lock.
    """
    ids = list(delivery_ids)
    if not ids:
        return 0
    with engine.begin() as conn:
        result = conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(ids),
                deliveries.c.status == DeliveryStatus.SENDING,
                deliveries.c.claimed_by == claimer,
            )
            .values(
                status=DeliveryStatus.QUEUED, claimed_by=None, lease_until=None, updated_at=utcnow()
            )
        )
        return result.rowcount or 0


def count_by_status(engine: Engine, edition_id: int) -> dict[DeliveryStatus, int]:
    """How far a send has got: every status present, zero for the others."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.edition_id == edition_id)
            .group_by(deliveries.c.status)
        ).all()
    counts = dict.fromkeys(DeliveryStatus, 0)
    counts.update({DeliveryStatus(status): n for status, n in rows})
    return counts


def record_test_send(engine: Engine, edition_id: int, email: str, status: str, reply: str) -> None:
    """Keep test sends apart from subscriber deliveries, so they never count as a send."""
    with engine.begin() as conn:
        conn.execute(
            insert(test_sends).values(
                edition_id=edition_id,
                email=email,
                status=status,
                last_reply=reply[:1000],
                created_at=utcnow(),
            )
        )


def next_retry_at(engine: Engine, edition_id: int) -> dt.datetime | None:
    """When the earliest deferred (transiently failed) row may be tried again."""
    with engine.connect() as conn:
        return conn.execute(
            select(func.min(deliveries.c.next_attempt_at)).where(
                deliveries.c.edition_id == edition_id,
                deliveries.c.status == DeliveryStatus.QUEUED,
                deliveries.c.next_attempt_at.is_not(None),
            )
        ).scalar()
