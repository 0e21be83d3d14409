"""Reports that came back to the bounce address, recorded against their delivery.

One transaction per report (`record_bounce`): the event row, and what it does.

* A hard bounce marks its delivery failed (it was `sent`: the relay took it, a
  later hop refused it) and counts towards BOUNCE_LIMIT with the same
  `count_hard_bounce` the SMTP session's 5xx uses, once per delivery: a second
  report about the same delivery finds the row failed already and counts nothing.
* A soft bounce (given up on after retrying) marks its delivery failed too, and
  its subscriber becomes `bounced` at SOFT_BOUNCE_LIMIT deliveries that soft-bounced
  within SOFT_BOUNCE_WINDOW_DAYS (counted from these rows, so the window slides).
* A complaint unsubscribes at once, whatever the subscriber's status was.

The event's `fingerprint` is unique: the same report read again (a replayed
Maildir, an IMAP message not moved before a crash) inserts nothing and changes
nothing (`Recorded.new` is False). A report whose delivery is not ours, or not
known, is kept with NULLs, for a person to look at.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update
from sqlalchemy.engine import Connection

from newsletter.models import BounceKind, DeliveryStatus, SubscriberStatus
from newsletter.store.engine import utcnow
from newsletter.store.schema import bounce_events, deliveries, editions, subscribers
from newsletter.store.subscribers import count_hard_bounce, insert_statement

RECORDED_KINDS = frozenset({BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT})


@dataclass(frozen=True)
class DeliveryMatch:
    """The delivery a report names, and what must hold for it to be believed.

    From a VERP token (signed: nothing more to check), or from the Message-ID the
    report quotes (`<date.id.slot@domain>`, compose.py): then the delivery's edition
    must have that date and slot token, and its address be the recipient the report
    names, so a guessed id matches nothing.
    """

    delivery_id: int
    edition_date: dt.date | None = None
    slot_prefix: str = ""
    recipient: str = ""


@dataclass(frozen=True)
class BounceEvent:
    fingerprint: str  # SHA-256 hex of the report's own Message-ID, or of its bytes
    kind: BounceKind  # one of RECORDED_KINDS
    source: str  # maildir | stdin | imap
    match: DeliveryMatch | None = None
    recipient: str = ""
    status: str = ""
    diagnostic: str = ""
    reporter: str = ""
    message_id: str = ""  # of the message the report is about


@dataclass(frozen=True)
class BounceLimits:
    hard: int  # BOUNCE_LIMIT
    soft: int  # SOFT_BOUNCE_LIMIT
    soft_window_days: int  # SOFT_BOUNCE_WINDOW_DAYS


@dataclass(frozen=True)
class Recorded:
    new: bool  # False: this report was recorded before, and nothing changed now
    delivery_id: int | None = None  # the delivery it was matched to; None: not ours
    email: str = ""  # that delivery's address
    became: SubscriberStatus | None = None  # what this report made the subscriber


def record_bounce(engine: Engine, event: BounceEvent, limits: BounceLimits) -> Recorded:
    """Record one report and apply it, in one transaction (see the module doc)."""
    if event.kind not in RECORDED_KINDS:
        raise ValueError(f"a {event.kind} report is not recorded")
    now = utcnow()
    with engine.begin() as conn:
        found = _delivery(conn, event.match)
        delivery_id, subscriber_id, email = found or (None, None, "")
        inserted = conn.execute(
            insert_statement(conn, bounce_events)
            .values(
                fingerprint=event.fingerprint,
                delivery_id=delivery_id,
                subscriber_id=subscriber_id,
                kind=event.kind.value,
                recipient=event.recipient[:320],
                status=event.status[:16],
                diagnostic=event.diagnostic[:2000],
                reporter=event.reporter[:32],
                message_id=event.message_id[:300],
                source=event.source,
                received_at=now,
            )
            .on_conflict_do_nothing(index_elements=["fingerprint"])
        ).rowcount
        if not inserted:
            return Recorded(False, delivery_id, email)
        if delivery_id is None or subscriber_id is None:
            return Recorded(True)
        became = _apply(conn, event, delivery_id, subscriber_id, limits, now)
        return Recorded(True, delivery_id, email, became)


def _delivery(conn: Connection, match: DeliveryMatch | None) -> tuple[int, int, str] | None:
    """(delivery id, subscriber id, address) of the delivery `match` names, when it holds."""
    if match is None:
        return None
    row = conn.execute(
        select(
            deliveries.c.id,
            deliveries.c.subscriber_id,
            deliveries.c.email,
            editions.c.date,
            editions.c.slot_token,
        )
        .join(editions, editions.c.id == deliveries.c.edition_id)
        .where(deliveries.c.id == match.delivery_id)
    ).first()
    if row is None:
        return None
    if match.edition_date is not None and (
        row.date != match.edition_date
        or not row.slot_token.startswith(match.slot_prefix)
        or row.email.strip().lower() != match.recipient.strip().lower()
    ):
        return None
    return row.id, row.subscriber_id, row.email


def _apply(
    conn: Connection,
    event: BounceEvent,
    delivery_id: int,
    subscriber_id: int,
    limits: BounceLimits,
    now: dt.datetime,
) -> SubscriberStatus | None:
    if event.kind is BounceKind.COMPLAINT:
        changed = conn.execute(
            update(subscribers)
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.status != SubscriberStatus.UNSUBSCRIBED,
            )
            .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=now, updated_at=now)
        ).rowcount
        return SubscriberStatus.UNSUBSCRIBED if changed else None
    reply = f"bounced after delivery: {event.status} {event.diagnostic}".strip()
    failed_now = conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.SENT)
        .values(status=DeliveryStatus.FAILED, last_reply=reply[:1000], updated_at=now)
    ).rowcount
    if event.kind is BounceKind.HARD:
        if failed_now and count_hard_bounce(conn, subscriber_id, limits.hard):
            return SubscriberStatus.BOUNCED
        return None
    soft = conn.execute(
        select(func.count(func.distinct(bounce_events.c.delivery_id))).where(
            bounce_events.c.subscriber_id == subscriber_id,
            bounce_events.c.kind == BounceKind.SOFT.value,
            bounce_events.c.received_at >= now - dt.timedelta(days=limits.soft_window_days),
        )
    ).scalar_one()
    if soft < limits.soft:
        return None
    changed = conn.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id, subscribers.c.status == SubscriberStatus.ACTIVE)
        .values(status=SubscriberStatus.BOUNCED, updated_at=now)
    ).rowcount
    return SubscriberStatus.BOUNCED if changed else None


def bounce_events_of(engine: Engine, delivery_id: int) -> list[tuple[str, str, str]]:
    """(kind, status, reporter) of the reports recorded against a delivery, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(bounce_events.c.kind, bounce_events.c.status, bounce_events.c.reporter)
            .where(bounce_events.c.delivery_id == delivery_id)
            .order_by(bounce_events.c.id)
        ).all()
    return [(r.kind, r.status, r.reporter) for r in rows]
