"""Sign-up with double opt-in: a pending address, one confirmation email, consent on confirm.

The rules, each for a reason:

* Limits before anything else (`store/signup_limits.py`): at most
  SIGNUP_LIMIT_PER_CLIENT sign-ups per SIGNUP_LIMIT_WINDOW from one client
  address (an IPv6 /64 is one client: anyone holding one has all of it),
  SIGNUP_LIMIT_PER_DOMAIN to one recipient domain (`victim+1@`, `victim+2@`…
  are one mailbox) and SIGNUP_LIMIT_TOTAL in all (what a botnet can make us
  send). Past one, the form answers 429 and nothing is stored or sent. The
  defaults, 5, 20 and 100 an hour: a household or an office behind one address
  signing up a few people, with a retry for a typo; a company domain whose staff
  sign up together, at a fifth of the total so one domain never takes it all;
  far more real sign-ups an hour than a self-hosted list gets, and a bound on
  what the relay sends for strangers (a list that grows faster raises them).
* What counts is a request that passed the CSRF check, the honeypot and address
  validation: one that fails those sends nothing, and counting it would let
  anyone with a script and no form token lock the form for everybody. It counts
  before the address's status is looked at, so an active or already-sent
  address costs the same as a new one and the limits never tell who is
  subscribed. A request refused by one limit counts toward none, so one client
  hammering the form only uses up its own share.
* A new address is stored `pending` and sent a confirmation email whose link
  holds a fresh nonce stored with the sign-up (`confirm_nonce`): only the latest
  email's link confirms, and only once. Nothing else is sent until the link's
  Confirm button is pressed: only the mailbox's owner can.
* The confirmation email carries no text the requester typed: no name in `To:`,
  no greeting by name, not even the address in the body (the `To:` shows it).
  Only the newsletter's own words and the link, so the form cannot carry a
  stranger's message into someone's inbox.
* At most one confirmation an hour to a pending address (`RESEND_PENDING`) and
  one a day to one that unsubscribed or bounced (`RESEND_SUPPRESSED`), whoever asks.
* Re-submitting never changes the stored name: a stranger cannot rename a
  pending sign-up. The owner sets or corrects it on the confirm page.
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
import ipaddress
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine

from newsletter.addresses import clean_name, validate_email
from newsletter.config import Settings
from newsletter.delivery import Outcome, SendResult, send_one
from newsletter.errors import DeliveryError, InputError
from newsletter.logs import event
from newsletter.models import ConfirmOutcome, SignupOutcome, SubscriberStatus
from newsletter.store import consent
from newsletter.store import subscribers as store
from newsletter.store.engine import utcnow
from newsletter.store.signup_limits import Limits, Refusal, take_signup_slot
from newsletter.tokens import Signer
from newsletter.transactional import transactional_message

log = logging.getLogger("newsletter.signup")

RESEND_PENDING = dt.timedelta(hours=1)  # a pending sign-up: one confirmation an hour
RESEND_SUPPRESSED = dt.timedelta(days=1)  # an address that left or bounced: one a day


@dataclass(frozen=True)
class SignupResult:
    outcome: SignupOutcome
    email: str  # the address as validated
    reason: str = ""  # the relay's reply or error, when FAILED
    refusal: Refusal | None = None  # the limit hit, when LIMITED


def signup_expiry(settings: Settings) -> dt.timedelta:
    """How long a sign-up may stay unconfirmed (and a confirmation link stays valid)."""
    return dt.timedelta(hours=settings.signup_expiry_hours)


def signup_limits(settings: Settings) -> Limits:
    return Limits(
        per_client=settings.signup_limit_per_client,
        per_domain=settings.signup_limit_per_domain,
        total=settings.signup_limit_total,
        window=dt.timedelta(seconds=settings.signup_limit_window),
    )


def client_key(client: str) -> str:
    """What one client is for the limits: its IPv4 address, or its IPv6 /64 (anyone given
    an IPv6 network gets at least a /64, and could rotate through all of it)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client[:64]  # not an IP (a test client's name): counted as given
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


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

    Only a new row takes the typed name; an existing row, pending or not, is left
    exactly as it is, so a stranger re-submitting the address cannot rename it.
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
    return existing.status


def confirm_url(settings: Settings, signer: Signer, email: str, nonce: str) -> str:
    return f"{settings.base_url}/confirm/{signer.sign_confirmation(email, nonce)}"


def read_link(settings: Settings, signer: Signer, token: str) -> tuple[str, str]:
    """(address, nonce) of a confirmation link; InputError when forged, altered or expired."""
    max_age = int(signup_expiry(settings).total_seconds())
    return signer.read_confirmation(token, max_age=max_age)


async def sign_up(
    engine: Engine,
    settings: Settings,
    signer: Signer,
    email: str,
    name: str = "",
    *,
    client: str,
) -> SignupResult:
    """Handle one sign-up form from `client` (its address, `proxy.client_address`): count it
    against the limits, store it and send the confirmation email when one is due.

    Raises InputError for an address that is not valid (nothing counted). A
    relay failure is a FAILED result (not an exception) with the reason; the
    pending row stays and the resend limit is given back, so trying again sends at once.
    """
    address = validate_email(email)
    name = clean_name(name)
    domain = address.rpartition("@")[2]
    refusal = await asyncio.to_thread(
        take_signup_slot,
        engine,
        client=client_key(client),
        domain=domain,
        limits=signup_limits(settings),
    )
    if refusal is not None:
        event(
            log,
            "signup_refused",
            level=logging.WARNING,
            reason="limit",
            limit=refusal.limit,
            client=client,
            domain=domain,
        )
        return SignupResult(SignupOutcome.LIMITED, address, refusal=refusal)
    await asyncio.to_thread(expire_pending, engine, signup_expiry(settings))
    status = await asyncio.to_thread(register, engine, address, name)
    if status is SubscriberStatus.ACTIVE:
        event(log, "signup", recipient=address, outcome=SignupOutcome.ALREADY_ACTIVE)
        return SignupResult(SignupOutcome.ALREADY_ACTIVE, address)
    claim = await asyncio.to_thread(
        consent.claim_confirmation,
        engine,
        address,
        secrets.token_hex(16),
        pending_after=RESEND_PENDING,
        suppressed_after=RESEND_SUPPRESSED,
    )
    if claim is None:
        event(log, "signup", recipient=address, outcome=SignupOutcome.ALREADY_SENT)
        return SignupResult(SignupOutcome.ALREADY_SENT, address)
    data = confirmation_message(
        settings, email=address, link=confirm_url(settings, signer, address, claim.nonce)
    )
    result = await send_confirmation(settings, address, data)
    if result.outcome is not Outcome.SENT:
        await asyncio.to_thread(consent.release_confirmation, engine, address, claim)
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


def confirm(
    engine: Engine, email: str, nonce: str, *, name: str | None, ip: str, user_agent: str
) -> ConfirmOutcome:
    """The Confirm button: make the address active and record consent, if the link's nonce is
    still the sign-up's; `name` (when the form had the field) is what its owner typed there."""
    cleaned = clean_name(name) if name is not None else None
    if consent.record_consent(engine, email, nonce, name=cleaned, ip=ip, user_agent=user_agent):
        event(log, "signup_confirmed", recipient=email, ip=ip)
        return ConfirmOutcome.CONFIRMED
    return ConfirmOutcome.NOT_PENDING


def pending_name(engine: Engine, email: str, nonce: str) -> str | None:
    """The name to prefill on the confirm page, or None when the link can no longer confirm."""
    return consent.pending_name(engine, email, nonce)


def old_link() -> InputError:
    """What an old confirmation link gets: an earlier email's, or one already used."""
    return InputError(
        "this confirmation link was already used, or a newer email replaced it",
        where="token",
        hint="sign up again for a new link",
    )


async def send_confirmation(settings: Settings, email: str, data: bytes) -> SendResult:
    """Hand one confirmation email to the relay; every failure is a result, never an exception."""
    try:
        return await send_one(settings, email, data)
    except DeliveryError as exc:  # the relay cannot be reached, or refuses the session
        return SendResult(Outcome.PERMANENT, exc.message)


def confirmation_message(
    settings: Settings,
    *,
    email: str,
    link: str,
    date: dt.datetime | None = None,
    message_id: str | None = None,
    boundary: str | None = None,
) -> bytes:
    """The confirmation email: small, plain, multipart/alternative, one link.

    Nothing the requester typed is in it but the address it goes to (in `To:`
    alone): "Hello," and the newsletter's own name. `date`, `message_id` and
    `boundary` are for golden tests (`transactional_message`).
    """
    hours = settings.signup_expiry_hours
    text = (
        "Hello,\n\n"
        f"Please confirm that you want to receive {settings.name} at this address.\n"
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
<body style="margin:0;padding:16px;font-family:Arial,sans-serif;font-size:16px;line-height:1.5">
<p>Hello,</p>
<p>Please confirm that you want to receive <strong>{e(settings.name)}</strong> at this address.</p>
<p><a href="{e(link)}">Confirm my subscription</a></p>
<p>The link works for {hours} hours. If you did not ask for this, ignore this email:
you will not hear from us again.</p>
<p style="font-size:13px;color:#555555">{e(settings.name)}<br>{e(settings.postal_address)}</p>
</body></html>
"""
    return transactional_message(
        settings,
        to=email,
        subject=f"Confirm your subscription to {settings.name}",
        text=text,
        html=body,
        kind="confirmation",
        date=date,
        message_id=message_id,
        boundary=boundary,
    )
