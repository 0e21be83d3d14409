"""The values that flow between stages: frozen, typed, no behaviour.

Article → Edition → RenderedEdition → (per recipient) message bytes → DeliveryStatus.
Statuses are enums so a typo is an error, and their values are what the
database stores.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class EditionStatus(StrEnum):
    BUILT = "built"  # rendered and stored; nothing sent yet
    SENDING = "sending"  # deliveries queued; a send started
    SENT = "sent"  # every delivery reached a final status
    HELD = "held"  # an editor chose to skip this day


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # waiting to be claimed by a sender
    SENDING = "sending"  # claimed; handed or about to be handed to the server
    SENT = "sent"  # the server answered 250 to the end of DATA
    FAILED = "failed"  # permanent failure, or transient ones past the retry limit
    SKIPPED = "skipped"  # the subscriber left before their message went out


class BounceKind(StrEnum):
    """What a message arriving at the bounce address says (`newsletter.bounces`)."""

    HARD = "hard"  # permanent failure (5.x.x): counts towards BOUNCE_LIMIT
    SOFT = "soft"  # transient failure given up on (4.x.x, mailbox full...): counted apart
    DELAYED = "delayed"  # "still trying" notices: nothing to record
    COMPLAINT = "complaint"  # an ARF report (RFC 5965) from a feedback loop: unsubscribe at once
    AUTO_REPLY = "auto_reply"  # vacation / out-of-office / other auto-replies: ignored
    UNKNOWN = "unknown"  # not recognised as any of those: set aside for a person


class SignupOutcome(StrEnum):
    """What a sign-up did (the form's answer)."""

    SENT = "sent"  # a confirmation email went out
    ALREADY_SENT = "already_sent"  # one went out too recently (signup.RESEND_*): nothing sent
    ALREADY_ACTIVE = "already_active"  # subscribed already: nothing sent
    FAILED = "failed"  # the relay did not take the email; the sign-up is kept for a retry
    LIMITED = "limited"  # over a sign-up limit (SIGNUP_LIMIT_*): nothing stored, nothing sent


class ConfirmOutcome(StrEnum):
    """What pressing a confirmation link did."""

    CONFIRMED = "confirmed"  # active from now on, consent recorded
    NOT_PENDING = "not_pending"  # an old or used link, or an expired sign-up: sign up again


class InboundStatus(StrEnum):
    """What `newsletter inbound` did with one message sent to the unsubscribe address."""

    UNSUBSCRIBED = "unsubscribed"  # the token was valid and the address is now unsubscribed
    NOT_SUBSCRIBED = "not_subscribed"  # valid token, but the address was not on the list (any more)
    INVALID_TOKEN = "invalid_token"  # a token was there but forged, altered or expired
    NO_TOKEN = "no_token"  # no token at all: not acted on, reported for a person
    AUTOMATIC = "automatic"  # an auto-reply or delivery report: ignored on purpose
    UNREADABLE = "unreadable"  # not an email we can read (empty, too big, too deep, broken)


class Outcome(StrEnum):
    """What the relay's reply means for one message (`delivery.session.classify_code`)."""

    SENT = "sent"  # 2xx to the end of DATA
    TRANSIENT = "transient"  # 4xx, a dropped connection, a timeout: try again later
    PERMANENT = "permanent"  # 5xx for this recipient or message: do not try again


@dataclass(frozen=True)
class Article:
    """One summarized article, as any source produces it.

    `summary` holds plain-text paragraphs (what the text part shows). Sources
    that carry markup (Markdown) also set `summary_html`, already sanitized,
    which the HTML part shows instead.
    """

    headline: str
    summary: tuple[str, ...]
    url: str | None = None
    source: str | None = None  # the publication, e.g. "reuters.com"
    published: dt.date | None = None
    origin: str = ""  # the file path or feed URL it came from, for messages
    summary_html: str | None = None
    image_url: str | None = None
    image_alt: str | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file or feed item a source could not use, and why (shown to the operator)."""

    origin: str
    reason: str


@dataclass(frozen=True)
class DayArticles:
    """What a source found for a date: the articles and what it had to skip."""

    date: dt.date
    articles: tuple[Article, ...]
    skipped: tuple[SkippedFile, ...] = ()


@dataclass(frozen=True)
class Edition:
    """The day's chosen articles, in order, with the subject and preheader."""

    date: dt.date
    articles: tuple[Article, ...]
    subject: str
    preheader: str


@dataclass(frozen=True)
class RenderedEdition:
    """An edition rendered once: HTML (CSS inlined) and text, with slot markers.

    The markers (see `personalize.py`) are replaced per recipient; `slot_token`
    is random per render so article text can never forge a marker.
    """

    date: dt.date
    subject: str
    preheader: str
    html: str
    text: str
    slot_token: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipient:
    """Who one message is for: enough to personalize and address it."""

    subscriber_id: int | None
    email: str
    name: str = ""


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: SubscriberStatus
    source: str
    created_at: dt.datetime
    updated_at: dt.datetime
    extra: dict[str, str] = field(default_factory=dict)
