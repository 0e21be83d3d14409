"""One message's bytes -> a `BounceReport` (pure; never raises).

A STAND-IN, written by the bounce-recording branch so that `newsletter bounces`
runs: a tiny RFC 3464 reader (multipart/report; report-type=delivery-status)
and the recognition of an RFC 5965 feedback report, nothing else. The full
parser (Exim, Sendmail, Exchange and Gmail styles, plain-text bounces,
auto-replies) is H-F's `newsletter/bounces/parse.py`, which replaces this file.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parseaddr

from newsletter.bounces import BounceKind, BounceReport
from newsletter.hygiene import one_line


def read_report(data: bytes) -> BounceReport:
    """What the message at the bounce address says; UNKNOWN (with why) when not understood."""
    try:
        return _read(BytesParser(policy=compat32).parsebytes(data[: 1024 * 1024]))
    except Exception as exc:  # never raises: hostile input is an UNKNOWN report
        return BounceReport(BounceKind.UNKNOWN, detail=f"unreadable: {type(exc).__name__}")


def _read(message: Message) -> BounceReport:
    sent_to = _address(message, "Delivered-To", "X-Original-To", "To")
    report_type = (message.get_param("report-type") or "").lower()
    if message.get_content_type() != "multipart/report":
        return BounceReport(BounceKind.UNKNOWN, sent_to=sent_to, detail="not a report")
    parts = [p for p in message.get_payload() if isinstance(p, Message)]
    original = next(
        (p for p in parts if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")),
        None,
    )
    message_id = _original_message_id(original)
    if report_type == "feedback-report":
        return BounceReport(
            BounceKind.COMPLAINT, sent_to=sent_to, message_id=message_id, reporter="arf"
        )
    status_part = next(
        (p for p in parts if p.get_content_type() == "message/delivery-status"), None
    )
    if report_type != "delivery-status" or status_part is None:
        return BounceReport(BounceKind.UNKNOWN, sent_to=sent_to, detail="not a delivery report")
    blocks = [b for b in status_part.get_payload() if isinstance(b, Message)]
    per_message = blocks[0] if blocks else Message()
    recipients = [b for b in blocks[1:] if b.get("Action")]
    if not recipients:
        return BounceReport(BounceKind.UNKNOWN, sent_to=sent_to, detail="no recipient fields")
    first = recipients[0]
    action = str(first.get("Action", "")).strip().lower()
    status = str(first.get("Status", "")).strip().split(" ")[0]
    if action == "failed":
        kind = BounceKind.HARD if status.startswith("5") else BounceKind.SOFT
    elif action == "delayed":
        kind = BounceKind.DELAYED
    else:
        kind = BounceKind.UNKNOWN
    reporting = str(per_message.get("Reporting-MTA", "")) + str(message.get("From", ""))
    return BounceReport(
        kind,
        recipients=tuple(_dsn_address(b) for b in recipients if _dsn_address(b)),
        sent_to=sent_to,
        status=status,
        diagnostic=one_line(str(first.get("Diagnostic-Code", "")))[:500],
        message_id=message_id,
        reporter="postfix"
        if "postfix" in reporting.lower() or "MAILER-DAEMON" in reporting
        else "dsn",
    )


def _address(message: Message, *names: str) -> str:
    for name in names:
        value = message.get(name)
        if value:
            return parseaddr(str(value))[1].lower()
    return ""


def _dsn_address(block: Message) -> str:
    value = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
    return value.split(";", 1)[-1].strip().strip("<>").lower()


def _original_message_id(part: Message | None) -> str:
    if part is None:
        return ""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        return one_line(str(inner.get("Message-ID", "")))
    if isinstance(payload, str):
        headers = BytesParser(policy=compat32).parsebytes(payload.encode(), headersonly=True)
        return one_line(str(headers.get("Message-ID", "")))
    return ""
