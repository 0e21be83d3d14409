"""What arrives at the bounce address: delivery status notifications, complaints, auto-replies.

    parse.py    one message's bytes -> a `BounceReport` (pure; never raises)
    verp.py     the envelope sender `bounces+<token>@...` naming a delivery, and its reading
    record.py   a report matched to its delivery and recorded (SQL in store/bounces.py)
    mailbox.py  reading a Maildir, stdin or an IMAP mailbox, a folder per outcome
    providers.py  a provider's webhook (SES, Mailgun, Postmark, SendGrid) verified and read
    sns_certificates.py  the SNS signing certificates (and SubscribeURLs) fetched, bounded

A report says what kind of message it is, whom it is about and, when the
message was sent to a VERP form of NEWSLETTER_BOUNCE_ADDRESS, the token that
names the delivery (so a DSN that lacks the recipient is still matched).
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.models import BounceKind

__all__ = ["BounceKind", "BounceReport"]


@dataclass(frozen=True)
class BounceReport:
    """One message at the bounce address, read. Every field but `kind` may be empty."""

    kind: BounceKind
    # The failed (or complained-about) recipients the report names, lower-cased:
    # DSN Final-Recipient/Original-Recipient, ARF Original-Rcpt-To, or an address a
    # plain-text bounce quotes. Empty when the report names nobody.
    recipients: tuple[str, ...] = ()
    # The address the report was sent to (Delivered-To / X-Original-To / To, envelope
    # first): `bounces+<token>@...` for a VERP one; the caller reads the token from it.
    sent_to: str = ""
    status: str = ""  # the enhanced status code, e.g. "5.1.1" (RFC 3463), when given
    diagnostic: str = ""  # the remote server's words (Diagnostic-Code, or the text), one line
    message_id: str = ""  # the Message-ID of the original message, with brackets, when quoted
    reporter: str = ""  # who wrote it: "postfix", "exim", "sendmail", "exchange", "gmail",
    #                     "arf", "text", "auto-reply" ... (for logs and tests)
    detail: str = ""  # why it is UNKNOWN, or any other note for the log
