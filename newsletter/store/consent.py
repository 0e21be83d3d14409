"""Queries of a web sign-up with double opt-in: the confirmation email, its nonce, the consent.

The rules are in `newsletter/signup.py`; these are its queries, on the
subscriber rows (looked up by `email_key`, like every subscriber query). Each
takes the `Engine` and opens its own short transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, exists, func, or_, select, update

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


@dataclass(frozen=True)
class Claim:
    """A confirmation email the caller may send now: its stamp and the nonce its link carries."""

    stamp: dt.datetime
    nonce: str


def claim_confirmation(
    engine: Engine,
    email: str,
    nonce: str,
    *,
    pending_after: dt.timedelta,
    suppressed_after: dt.timedelta,
) -> Claim | None:
    """Stamp `confirmation_sent_at` and store `nonce` unless a confirmation went to this
    address too recently: within `pending_after` for a pending sign-up, `suppressed_after`
    for an address that unsubscribed or bounced. The claim when one may be sent now, else None.

    One conditional UPDATE, so two sign-ups racing for the same address send at
    most one email, and the nonce that replaces the last link's is stored by the
    same statement that claims the send: only the newest link can confirm.
    Active addresses are never claimed (they need no confirmation, and must not
    learn they are on the list). `updated_at` is left alone: nothing about the
    subscription changed yet.
    """
    now = utcnow()
    sent = subscribers.c.confirmation_sent_at
    is_pending = subscribers.c.status == SubscriberStatus.PENDING.value
    statement = (
        update(subscribers)
        .where(
            subscribers.c.email_key == email_key(email),
            subscribers.c.status != SubscriberStatus.ACTIVE.value,
            or_(
                sent.is_(None),
                and_(is_pending, sent <= now - pending_after),
                and_(~is_pending, sent <= now - suppressed_after),
            ),
        )
        .values(confirmation_sent_at=now, confirm_nonce=nonce)
    )
    with engine.begin() as conn:
        return Claim(now, nonce) if (conn.execute(statement).rowcount or 0) > 0 else None


def release_confirmation(engine: Engine, email: str, claim: Claim) -> None:
    """Undo the stamp of `claim_confirmation` when the email could not be sent, so a retry
    may send at once.

    The claim's nonce stays: a relay that timed out after taking the message
    may still deliver it, and its link should then work; the retry's claim
    replaces the nonce anyway, as every new email does. Only this claim's row is
    touched (matched by its nonce), never a newer claim's.
    """
    statement = (
        update(subscribers)
        .where(
            subscribers.c.email_key == email_key(email),
            subscribers.c.confirm_nonce == claim.nonce,
            subscribers.c.confirmation_sent_at == claim.stamp,
        )
        .values(confirmation_sent_at=None)
    )
    with engine.begin() as conn:
        conn.execute(statement)


def _link_is_current(email: str, nonce: str) -> tuple:
    """The row a confirmation link may still confirm: its address, its nonce, not active, and
    not unsubscribed since the link was sent (a status changed by an import or the editor
    leaves the nonce in place; the unsubscribe that followed must win over the old link).
    A released claim (stamp cleared, `release_confirmation`) is judged by its nonce alone."""
    unsubscribed = subscribers.c.unsubscribed_at
    return (
        subscribers.c.email_key == email_key(email),
        subscribers.c.confirm_nonce == nonce,
        subscribers.c.status != SubscriberStatus.ACTIVE.value,
        or_(
            unsubscribed.is_(None),
            unsubscribed <= func.coalesce(subscribers.c.confirmation_sent_at, unsubscribed),
        ),
    )


def pending_name(engine: Engine, email: str, nonce: str) -> str | None:
    """The stored name of the sign-up a confirmation link is for, while the link may still
    confirm it (its nonce is the stored one, and the address is not active); else None."""
    statement = select(subscribers.c.name).where(*_link_is_current(email, nonce))
    with engine.connect() as conn:
        return conn.execute(statement).scalar()


def record_consent(
    engine: Engine, email: str, nonce: str, *, name: str | None, ip: str, user_agent: str
) -> bool:
    """Make a signed-up address active and keep the proof of consent; False if the link's
    `nonce` is not the one stored (an older email's link, or one already used).

    One UPDATE matching the address, the nonce and a status other than active
    (`_link_is_current`), which clears the nonce: a link confirms once, and an old
    one can never undo a later unsubscribe. `name`, when given, is the one the
    mailbox's owner set on the confirm page. Like `set_status(ACTIVE)` it stamps
    `confirmed_at`, clears `unsubscribed_at` and resets the bounce count: the
    person just proved the mailbox is theirs and works.
    """
    now = utcnow()
    values: dict[str, object] = {
        "status": SubscriberStatus.ACTIVE.value,
        "confirmed_at": now,
        "unsubscribed_at": None,
        "bounce_count": 0,
        "confirmation_sent_at": None,
        "confirm_nonce": None,
        "consent_at": now,
        "consent_ip": ip[:64],
        "consent_user_agent": user_agent[:500],
        "updated_at": now,
    }
    if name is not None:
        values["name"] = name[:200]
    statement = update(subscribers).where(*_link_is_current(email, nonce)).values(**values)
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
