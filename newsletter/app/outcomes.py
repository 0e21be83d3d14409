"""Every outcome a use case can have, as a value: what the front ends translate.

`newsletter send`, the scheduler and the editor's pages each turn these into
their own words (a line, a log record, a flash message), and nothing else: the
decision is made once, in the use case, and handed over typed. An outcome is
never a bare string or bool, so a front end that forgets one is a type error
(`match` with `assert_never`), not a silent difference.

Errors are not outcomes: a broken template, an unreadable source or an
unreachable relay raise a `NewsletterError` (where, what, how to fix).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from newsletter.delivery import SendResult, SendSummary
from newsletter.models import EditionStatus, SkippedFile
from newsletter.store.editions import Audience, StoredEdition


class Refusal(StrEnum):
    """Why an action on an edition was not done."""

    STARTED = "started"  # its send has started: the content is fixed, it cannot be held
    NOT_HELD = "not_held"  # un-hold of an edition that is not on hold
    NO_ARTICLES_NOW = "no_articles_now"  # a rebuild found no articles; the stored one is kept
    NO_EDITION = "no_edition"  # nothing is stored for the date


# ── building ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class NoArticles:
    """The source has nothing usable for the date: no edition, nothing sent."""

    date: dt.date
    skipped: tuple[SkippedFile, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """The date's stored edition; `built_now` when this call built and stored it."""

    stored: StoredEdition
    built_now: bool = False


@dataclass(frozen=True)
class Built:
    """A rebuild found nothing stored, so it built and stored the edition."""

    stored: StoredEdition


@dataclass(frozen=True)
class Rebuilt:
    """The stored, unsent edition was rendered afresh from the articles as they are now."""

    stored: StoredEdition


# ── sending ───────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Held:
    """An editor put the edition on hold: nothing is sent."""

    stored: StoredEdition
    built_now: bool = False


@dataclass(frozen=True)
class AlreadySent:
    """Every active subscriber has had the edition; nothing left to send."""

    stored: StoredEdition
    summary: SendSummary  # all zero: what a rerun prints
    built_now: bool = False


@dataclass(frozen=True)
class Ready:
    """The edition may go out now: its deliveries are queued and its status is sending."""

    stored: StoredEdition
    queued_now: int  # rows added by this call (new subscribers since the last run)
    to_send: int  # rows queued or claimed: what the senders have left to do
    built_now: bool = False  # this call built and stored the edition (its skipped files are new)
    resumed: str | None = None  # the reason of the pause this (manual) send resumes past
    complaints: ComplaintRate | None = None  # a manual send despite the complaint rate: warn


@dataclass(frozen=True)
class Sent:
    """The send ran to its end; `summary.remaining` rows wait for a retry or another sender."""

    stored: StoredEdition
    summary: SendSummary
    helpers_failed: bool = False  # `--workers N`: a helper process exited with an error


@dataclass(frozen=True)
class Stopped:
    """A stop (SIGTERM, Ctrl-C, the server's shutdown) ended the send early; the rest is queued."""

    stored: StoredEdition
    summary: SendSummary
    helpers_failed: bool = False


@dataclass(frozen=True)
class Paused:
    """The send paused itself: the edition's hard-bounce rate passed PAUSE_HARD_BOUNCE_RATE.

    Everything unsent is still queued; the scheduler leaves the edition alone and a
    manual `newsletter send` (or the editor's send-now) resumes it. From `deliver`, the
    send that paused (`summary` says how far it got); from `start_send` for the
    scheduler, an edition paused earlier (`summary` all zero).
    """

    stored: StoredEdition
    reason: str
    summary: SendSummary = field(default_factory=SendSummary)
    helpers_failed: bool = False


@dataclass(frozen=True)
class ComplaintRate:
    """The complaint rate of the last `days` days' editions, above MAX_COMPLAINT_RATE."""

    rate: float
    limit: float
    complaints: int
    messages: int
    days: int

    def describe(self) -> str:
        return (
            f"the {self.days}-day complaint rate is {self.rate:.2%} ({self.complaints} of "
            f"{self.messages} messages), above NEWSLETTER_MAX_COMPLAINT_RATE ({self.limit:.2%})"
        )


@dataclass(frozen=True)
class TooManyComplaints:
    """The scheduler did not start this edition: the complaint rate is too high.

    The edition stays built (unsent); the next scheduled run tries again, and a manual
    `newsletter send` still sends it (with a warning).
    """

    stored: StoredEdition
    complaints: ComplaintRate


# ── editors' controls and checks ──────────────────────────────────────────────


@dataclass(frozen=True)
class Changed:
    """A hold or un-hold took effect."""

    stored: StoredEdition


@dataclass(frozen=True)
class Unchanged:
    """The edition already was as asked (held twice)."""

    stored: StoredEdition


@dataclass(frozen=True)
class Refused:
    """The action was not done, and why; `status` is the edition's status then, if stored."""

    date: dt.date
    reason: Refusal
    status: EditionStatus | None = None


@dataclass(frozen=True)
class Requeued:
    """`retry`: the failed deliveries of an edition are queued again."""

    stored: StoredEdition
    count: int


@dataclass(frozen=True)
class Planned:
    """The dry run: what a send now would do, sending nothing."""

    date: dt.date
    subject: str
    stored: bool  # False: rendered for the dry run only
    audience: Audience


@dataclass(frozen=True)
class InvalidAddress:
    """A test send to something that is not an email address."""

    given: str
    reason: str


@dataclass(frozen=True)
class TestSent:
    """A test send reached the relay; `result` says whether it accepted the message."""

    __test__ = False  # not a pytest test class, whatever its name

    stored: StoredEdition
    address: str
    result: SendResult


PublishOutcome = NoArticles | Held | AlreadySent | Sent | Stopped | Paused | TooManyComplaints
SendStart = Ready | Held | AlreadySent | Paused
DeliverOutcome = Sent | Stopped | Paused
RebuildOutcome = NoArticles | Built | Rebuilt | Refused
HoldOutcome = NoArticles | Changed | Unchanged | Refused
