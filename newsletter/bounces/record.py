"""A report read at the bounce address, matched to its delivery and recorded.

`apply_report` takes what `parse.read_report` made of a message and decides:

    hard / soft / complaint, matched   -> RECORDED (store/bounces.py applies it), or
                                          DUPLICATE when this report was recorded before
    hard / soft / complaint, not ours  -> UNMATCHED (kept with no delivery, for a person)
    delayed, auto-reply                -> IGNORED (nothing to do: Postfix retries, a
                                          vacation reply says nothing about the address)
    unknown                            -> UNKNOWN (for a person)

The delivery is the one the VERP token of the address the report came to names
(`verp.py`: signed). Without BOUNCE_ADDRESS (no tokens), the one the Message-ID it
quotes names, when that is one of ours (`<date.id.slot@domain>`, compose.py), its
edition's date and slot token agree and the report names that delivery's
recipient: weaker (whoever got an edition knows its slot), so with a token
configured only the token counts. Never the recipient alone: anyone can mail us
a "bounce" for any address, and believing it would let them unsubscribe the list.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import compat32
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine

from newsletter.bounces import BounceKind, BounceReport
from newsletter.bounces.verp import BounceAddresses
from newsletter.config import Settings
from newsletter.hygiene import one_line
from newsletter.logs import event
from newsletter.models import SubscriberStatus
from newsletter.store.bounces import (
    RECORDED_KINDS,
    BounceEvent,
    BounceLimits,
    DeliveryMatch,
    record_bounce,
)

log = logging.getLogger("newsletter.bounces")

_MESSAGE_ID = re.compile(r"<?(\d{8})\.(\d{1,19})\.([0-9A-Za-z_-]{1,8})@([^>\s]+)>?")


class BounceOutcome(StrEnum):
    """What became of one message at the bounce address; the Maildir folder it goes to."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UNMATCHED = "unmatched"
    UNKNOWN = "unknown"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class BounceResult:
    outcome: BounceOutcome
    kind: BounceKind | None = None
    detail: str = ""  # in words, for the operator
    delivery_id: int | None = None
    email: str = ""  # the delivery's address, when matched
    became: SubscriberStatus | None = None  # what this report made the subscriber
    path: Path | None = None  # where the message is now (Maildir), or its mailbox (IMAP)


def fingerprint_of(data: bytes) -> str:
    """What makes a report the same report: its own Message-ID, or its bytes when it has none.

    Hex SHA-256, so a hostile Message-ID is stored as 64 harmless characters.
    """
    try:
        head = BytesParser(policy=compat32).parsebytes(data[:65536], headersonly=True)
        own = one_line(str(head.get("Message-ID", "") or ""))[:998]
    except Exception:  # the bytes are the identity then
        own = ""
    basis = f"message-id:{own}".encode() if own else data
    return hashlib.sha256(basis).hexdigest()


def apply_report(
    engine: Engine,
    settings: Settings,
    verp: BounceAddresses | None,
    report: BounceReport,
    *,
    fingerprint: str,
    source: str,
    proven_sender: bool = False,
) -> BounceResult:
    """Match a report to its delivery and record it (see the module doc).

    `proven_sender`: the report's origin is proven (a provider's signed webhook), so when
    neither a token nor our Message-ID names the delivery, the recipient it names does:
    their latest delivery (providers put their own envelope sender and often their own
    Message-ID on what they relay, so neither comes back to us).
    """
    if report.kind in (BounceKind.DELAYED, BounceKind.AUTO_REPLY):
        return _report(BounceResult(BounceOutcome.IGNORED, report.kind, report.kind.value))
    if report.kind not in RECORDED_KINDS:
        detail = report.detail or "not recognised as a bounce or a complaint"
        return _report(BounceResult(BounceOutcome.UNKNOWN, report.kind, one_line(detail)[:300]))
    recorded = record_bounce(
        engine,
        BounceEvent(
            fingerprint,
            report.kind,
            source,
            match_of(settings, verp, report, proven_sender=proven_sender),
            recipient=one_line(report.recipients[0]) if report.recipients else "",
            status=one_line(report.status),
            diagnostic=one_line(report.diagnostic),
            reporter=one_line(report.reporter),
            message_id=one_line(report.message_id),
        ),
        BounceLimits(
            settings.bounce_limit, settings.soft_bounce_limit, settings.soft_bounce_window_days
        ),
    )
    what = f"{report.kind.value} {report.status}".strip()
    if not recorded.new:
        outcome, detail = BounceOutcome.DUPLICATE, f"{what}: recorded before, nothing changed"
    elif recorded.delivery_id is None:
        outcome, detail = BounceOutcome.UNMATCHED, f"{what}: names no delivery of ours"
    else:
        outcome, detail = BounceOutcome.RECORDED, what
        if recorded.became is not None:
            detail += f"; the subscriber is now {recorded.became.value}"
    return _report(
        BounceResult(
            outcome, report.kind, detail, recorded.delivery_id, recorded.email, recorded.became
        )
    )


def match_of(
    settings: Settings,
    verp: BounceAddresses | None,
    report: BounceReport,
    *,
    proven_sender: bool = False,
) -> DeliveryMatch | None:
    """The delivery the report names: by its VERP address when BOUNCE_ADDRESS is set; else
    by the Message-ID it quotes, with the recipient it names (see DeliveryMatch); from a
    proven sender, failing those, the recipient's latest delivery."""
    if verp is not None:  # every real report comes to the token: only the signed one counts
        delivery_id = verp.delivery_of(report.sent_to) if report.sent_to else None
        return DeliveryMatch(delivery_id) if delivery_id is not None else None
    quoted = _quoted_match(settings, report)
    if quoted is None and proven_sender and report.recipients:
        return DeliveryMatch.latest_to(report.recipients[0])
    return quoted


def _quoted_match(settings: Settings, report: BounceReport) -> DeliveryMatch | None:
    """Our Message-ID, quoted by the report, with the recipient it names."""
    found = _MESSAGE_ID.fullmatch(report.message_id.strip())
    if found is None or found.group(4).lower() != settings.sender_domain.lower():
        return None
    if not report.recipients:
        return None
    try:
        date = dt.datetime.strptime(found.group(1), "%Y%m%d").date()
    except ValueError:
        return None
    return DeliveryMatch(int(found.group(2)), date, found.group(3), report.recipients[0])


def _report(result: BounceResult) -> BounceResult:
    quiet = result.outcome in (BounceOutcome.RECORDED, BounceOutcome.IGNORED)
    event(
        log,
        "bounce",
        level=logging.INFO if quiet else logging.WARNING,
        outcome=result.outcome,
        kind=result.kind,
        recipient=result.email,
        delivery=result.delivery_id,
        detail=result.detail,
    )
    return result
