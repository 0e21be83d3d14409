"""Sign-up with double opt-in: a pending address, one confirmation email, consent on confirm.

The rules, each for a reason:

* A new address is stored `pending` and sent a confirmation email with a signed
  link (`Purpose.CONFIRM`, valid SIGNUP_EXPIRY_HOURS). Nothing else is sent to
  it until the link's Confirm button is pressed: only the mailbox's owner can.
* At most one confirmation email per address per hour (`RESEND_AFTER`), whoever
  asks, so the form cannot be used to flood someone's inbox.
* An active address gets no email and the same answer as everyone else, so the
  form never tells a stranger who is subscribed.
* An unsubscribed (or bounced) address that signs up again is sent a
  confirmation and keeps its status until it is confirmed: the one way back for
  someone who left, never a way for someone else to put them back. Its row is
  not turned into a pending one, so expiry can never erase the record that it
  unsubscribed (a later CSV import would then re-add it).
* Confirming records consent: the time, the IP address and the user agent.
* Sign-ups not confirmed within SIGNUP_EXPIRY_HOURS are deleted (`expire_pending`).

Store calls are synchronous and short; `sign_up` runs them in a thread so the
web app's event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from sqlalchemy import Engine

from newsletter.addresses import clean_name, validate_email
from newsletter.config import Settings
from newsletter.delivery import Outcome, SendResult, send_one
from newsletter.errors import DeliveryError
from newsletter.headers import clean_header_text
from newsletter.logs import event
from newsletter.message import make_message_id
from newsletter.models import ConfirmOutcome, SignupOutcome, SubscriberStatus
from newsletter.store import consent
from newsletter.store import subscribers as store
from newsletter.store.engine import utcnow
from newsletter.tokens import Purpose, Signer

log = logging.getLogger("newsletter.signup")

RESEND_AFTER = dt.timedelta(hours=1)


@dataclass(frozen=True)
class SignupResult:
    outcome: SignupOutcome
    email: str  # the address as validated
    reason: str = ""  # the relay's reply or error, when FAILED


def signup_expiry(settings: Settings) -> dt.timedelta:
    """How long a sign-up may stay unconfirmed (and a confirmation link stays valid)."""
    return dt.timedelta(hours=settings.signup_expiry_hours)


def expire_pending(engine: Engine, older_than: dt.timedelta) -> int:
    """Delete sign-ups not confirmed within `older_than`; how many were deleted.

    Called on every sign-up and safe to call from a scheduler at any time.
    """
    deleted = consent.delete_expired_pending(engine, utcnow() - older_than)
    if deleted:
        event(log, "signup_expired", count=deleted)
    return deleted


def register(engine: Engine, email: str, name: str) -> SubscriberStatus:
    """Store a sign-up of a valid address: new ones as pending; the address's status after.

    A pending row takes the newly typed name (nobody has confirmed it yet);
    active, unsubscribed and bounced rows are left exactly as they are.
    """
    existing = store.get_subscriber(engine, email)
    if existing is None:
        created = store.insert_subscriber(
            engine, email, name, status=SubscriberStatus.PENDING, source="signup"
        )
        if created is not None:
            return created.status
        existing = store.get_subscriber(engine, email)  # added meanwhile by someone else
        if existing is None:
            return SubscriberStatus.PENDING  # and deleted again meanwhile: nothing to send to
    if existing.status is SubscriberStatus.PENDING and name:
        store.set_name(engine, email, name)
    return existing.status


def confirm_url(settings: Settings, signer: Signer, email: str) -> str:
    return f"{settings.base_url}/confirm/{signer.sign(Purpose.CONFIRM, email)}"


def confirm_address(settings: Settings, signer: Signer, token: str) -> str:
    """The address a confirmation link is for; InputError when forged, altered or expired."""
    max_age = int(signup_expiry(settings).total_seconds())
    return signer.read(Purpose.CONFIRM, token, max_age=max_age)


async def sign_up(
    engine: Engine, settings: Settings, signer: Signer, email: str, name: str = ""
) -> SignupResult:
    """Handle one sign-up form: store it and send the confirmation email when one is due.

    Raises InputError for an address that is not valid. A relay failure is a
    FAILED result (not an exception) with the reason; the pending row stays and
    the hourly limit is given back, so trying again sends at once.
    """
    address = validate_email(email)
    name = clean_name(name)
    await asyncio.to_thread(expire_pending, engine, signup_expiry(settings))
    status = await asyncio.to_thread(register, engine, address, name)
    if status is SubscriberStatus.ACTIVE:
        event(log, "signup", recipient=address, outcome=SignupOutcome.ALREADY_ACTIVE)
        return SignupResult(SignupOutcome.ALREADY_ACTIVE, address)
    stamp = await asyncio.to_thread(
        consent.claim_confirmation, engine, address, resend_after=RESEND_AFTER
    )
    if stamp is None:
        event(log, "signup", recipient=address, outcome=SignupOutcome.ALREADY_SENT)
        return SignupResult(SignupOutcome.ALREADY_SENT, address)
    data = confirmation_message(
        settings, email=address, name=name, link=confirm_url(settings, signer, address)
    )
    result = await send_confirmation(settings, address, data)
    if result.outcome is not Outcome.SENT:
        await asyncio.to_thread(consent.release_confirmation, engine, address, stamp)
        event(
            log,
            "signup",
            level=logging.WARNING,
            recipient=address,
            outcome=SignupOutcome.FAILED,
            reply=result.reply,
        )
        return SignupResult(SignupOutcome.FAILED, address, result.reply)
    event(log, "signup", recipient=address, outcome=SignupOutcome.SENT, reply=result.reply)
    return SignupResult(SignupOutcome.SENT, address)


def confirm(engine: Engine, email: str, *, ip: str, user_agent: str) -> ConfirmOutcome:
    """The Confirm button: make the address active and record consent (safe to repeat)."""
    if consent.record_consent(engine, email, ip=ip, user_agent=user_agent):
        event(log, "signup_confirmed", recipient=email, ip=ip)
        return ConfirmOutcome.CONFIRMED
    current = store.get_subscriber(engine, email)
    if current is not None and current.status is SubscriberStatus.ACTIVE:
        return ConfirmOutcome.ALREADY_ACTIVE
    return ConfirmOutcome.NOT_PENDING


async def send_confirmation(settings: Settings, email: str, data: bytes) -> SendResult:
    """Hand one confirmation email to the relay; every failure is a result, never an exception."""
    try:
        return await send_one(settings, email, data)
    except DeliveryError as exc:  # the relay cannot be reached, or refuses the session
        return SendResult(Outcome.PERMANENT, exc.message)


def confirmation_message(settings: Settings, *, email: str, name: str, link: str) -> bytes:
    """The confirmation email: a short multipart/alternative message with one link.

    Built with the standard library rather than `message.build_message`: that
    builder is tuned for the bulk edition and always adds List-Unsubscribe and
    `Precedence: bulk`, which do not belong on a one-off message someone asked
    for. `Auto-Submitted: auto-generated` keeps vacation responders quiet.
    """
    hours = settings.signup_expiry_hours
    greeting = f"Hello {name}," if name else "Hello,"
    text = (
        f"{greeting}\n\n"
        f"Please confirm that you want to receive {settings.name} at {email}.\n"
        f"Open this link and press Confirm:\n\n{link}\n\n"
        f"The link works for {hours} hours. If you did not ask for this, ignore this "
        "email: you will not hear from us again.\n\n"
        f"-- \n{settings.name}\n{settings.postal_address}\n"
    )
    e = html.escape
    body = f"""<!DOCTYPE html>
<html lang="{e(settings.language)}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(settings.name)}</title></head>
<body style="margin:0;padding:24px;background:#f3f4f6;font-family:Arial,sans-serif;color:#1f2937">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"
 style="max-width:520px;background:#ffffff;border-radius:8px;padding:24px">
<tr><td>
<h1 style="font-family:Georgia,serif;font-size:22px;margin:0 0 16px">{e(settings.name)}</h1>
<p style="font-size:16px;line-height:1.5">{e(greeting)}</p>
<p style="font-size:16px;line-height:1.5">Please confirm that you want to receive
<strong>{e(settings.name)}</strong> at {e(email)}.</p>
<p style="margin:24px 0"><a href="{e(link)}" style="background:#1d4ed8;color:#ffffff;
padding:12px 20px;border-radius:6px;text-decoration:none;font-weight:bold;display:inline-block"
>Confirm my subscription</a></p>
<p style="font-size:14px;line-height:1.5;color:#4b5563">The link works for {hours} hours.
If you did not ask for this, ignore this email: you will not hear from us again.</p>
<p style="font-size:12px;color:#6b7280">{e(settings.postal_address)}</p>
</td></tr></table></td></tr></table></body></html>
"""
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(
        clean_header_text(settings.from_name), addr_spec=settings.from_address
    )
    message["To"] = Address(clean_header_text(name), addr_spec=email)
    message["Subject"] = clean_header_text(f"Confirm your subscription to {settings.name}")
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_message_id(settings.sender_domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(body, subtype="html")
    return message.as_bytes()
