"""Queries of a web sign-up with double opt-in: the confirmation email, the consent, expiry.

The rules are in `newsletter/signup.py`; these are its queries, on the
subscriber rows (looked up by `email_key`, like every subscriber query). Each
takes the `Engine` and opens its own short transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, delete, exists, func, or_, select, update

from newsletter.models import SubscriberStatus
from newsletter.store.engine import utcnow
from newsletter.store.schema import deliveries, subscribers
from newsletter.store.subscribers import email_key


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
    """The sign-up record of an address: the proof of consent, for an audit."""
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
