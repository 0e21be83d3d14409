"""Unsubscribes by email: the `mailto:` half of List-Unsubscribe.

Every edition's List-Unsubscribe header carries
`mailto:<UNSUBSCRIBE_MAILTO>?subject=unsubscribe%20<token>`, so a mail client's
"unsubscribe" button sends a message whose Subject is `unsubscribe <token>`.
This module reads such messages (one from stdin, or every new one in a
Maildir) and unsubscribes the address the signed token names.

What is honoured, and why:

* Only a valid, unexpired unsubscribe token (in the Subject, or as
  `unsubscribe <token>` in the text body for clients that moved it there).
  The token is the same proof the one-click link carries.
* Not a bare "unsubscribe" from a subscriber's From address: From is trivially
  forged, and honouring it would let anyone unsubscribe anyone. Such messages
  are reported (`NO_TOKEN`, with the sender) for a person to handle; in a
  Maildir they are left flagged.
* Not automatic mail (Auto-Submitted other than `no`, delivery reports,
  `Precedence: bulk/junk/list`): a bounce or vacation reply quoting an edition
  must never unsubscribe someone.

The token's address need not match From (forwarding and aliases are common):
as with the link, holding the token is the proof. Nothing is ever sent back,
so no mail loop is possible.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote

from sqlalchemy import Engine

from newsletter.errors import InputError
from newsletter.logs import event
from newsletter.subscribers import unsubscribe
from newsletter.tokens import UNSUBSCRIBE_MAX_AGE, Purpose, Signer

log = logging.getLogger("newsletter.inbound")

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # an unsubscribe request is tiny; refuse to parse a DVD
# An itsdangerous URL-safe timed token: [.]payload.timestamp.signature (a leading dot: compressed).
_TOKEN = r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
_REQUEST = re.compile(rf"\bunsubscribe[\s:]+({_TOKEN})", re.IGNORECASE)


class InboundStatus(StrEnum):
    UNSUBSCRIBED = "unsubscribed"  # the token was valid and the address is now unsubscribed
    NOT_SUBSCRIBED = "not_subscribed"  # valid token, but the address was not on the list (any more)
    INVALID_TOKEN = "invalid_token"  # a token was there but forged, altered or expired
    NO_TOKEN = "no_token"  # no token at all: not acted on, reported for a person
    AUTOMATIC = "automatic"  # an auto-reply or delivery report: ignored on purpose
    UNREADABLE = "unreadable"  # not an email we can read (too big, empty)


@dataclass(frozen=True)
class InboundResult:
    status: InboundStatus
    sender: str  # the From address, as given (never trusted, only reported)
    email: str = ""  # the address the token names, when it was valid
    detail: str = ""  # why, in words, for the operator
    message_id: str = ""
    path: Path | None = None  # where the message now is, for Maildir processing

    @property
    def honoured(self) -> bool:
        """True when the message did what it asked (or there was nothing left to do)."""
        return self.status in (InboundStatus.UNSUBSCRIBED, InboundStatus.NOT_SUBSCRIBED)


def process_message(engine: Engine, signer: Signer, data: bytes) -> InboundResult:
    """Read one raw message and unsubscribe the address its token names, if it is valid."""
    if not data.strip() or len(data) > MAX_MESSAGE_BYTES:
        return _report(InboundResult(InboundStatus.UNREADABLE, "", detail="empty or too big"))
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    sender = _header(message, "From")
    sender = parseaddr(sender)[1] or sender
    message_id = _header(message, "Message-ID")
    base = InboundResult(InboundStatus.NO_TOKEN, sender, message_id=message_id)
    if _is_automatic(message):
        return _report(_with(base, InboundStatus.AUTOMATIC, detail="automatic message"))
    candidates = _tokens(message)
    if not candidates:
        return _report(_with(base, InboundStatus.NO_TOKEN, detail="no unsubscribe token found"))
    problem = ""
    for token in candidates:
        try:
            email = signer.read(Purpose.UNSUBSCRIBE, token, max_age=UNSUBSCRIBE_MAX_AGE)
        except InputError as exc:
            problem = problem or exc.message
            continue
        changed = unsubscribe(engine, email)
        status = InboundStatus.UNSUBSCRIBED if changed else InboundStatus.NOT_SUBSCRIBED
        detail = "unsubscribed" if changed else "already unsubscribed or not on the list"
        return _report(_with(base, status, email=email, detail=detail))
    return _report(_with(base, InboundStatus.INVALID_TOKEN, detail=problem))


def process_stream(engine: Engine, signer: Signer, stream: BinaryIO | None = None) -> InboundResult:
    """One message from a stream (stdin by default): for a mail server's pipe delivery."""
    source = stream if stream is not None else sys.stdin.buffer
    return process_message(engine, signer, source.read(MAX_MESSAGE_BYTES + 1))


def process_maildir(engine: Engine, signer: Signer, path: Path | str) -> list[InboundResult]:
    """Process every message in `path/new`, oldest first, moving each to `path/cur` when done.

    Moving to cur/ is the Maildir way of saying "seen", so a message is never
    processed twice, and a mail client pointed at the same Maildir still shows
    it: honoured ones are marked Seen (`:2,S`), the rest also Flagged (`:2,FS`)
    for a person to read. A database error stops the run with the message
    still in new/, so the next run tries it again. Raises InputError when
    `path` is not a Maildir.
    """
    root = Path(path)
    new, cur = root / "new", root / "cur"
    if not new.is_dir():
        raise InputError(
            "not a Maildir (it has no new/ folder)",
            where=str(root),
            hint="point --maildir at the folder holding new/, cur/ and tmp/",
        )
    cur.mkdir(exist_ok=True)
    entries = [
        entry for entry in new.iterdir() if entry.is_file() and not entry.name.startswith(".")
    ]
    entries.sort(key=lambda entry: (entry.stat().st_mtime, entry.name))
    results = []
    for entry in entries:
        result = process_message(engine, signer, entry.read_bytes())
        flags = "S" if result.honoured else "FS"
        target = cur / f"{entry.name.split(':', 1)[0]}:2,{flags}"
        os.replace(entry, target)
        results.append(_with(result, result.status, path=target))
    return results


# Helpers


def _tokens(message: EmailMessage) -> list[str]:
    """Candidate tokens: from the Subject first, then `unsubscribe <token>` in the text body."""
    subject = unquote(_header(message, "Subject"))  # a client may leave %20 undecoded
    found = _REQUEST.findall(subject)
    body = message.get_body(preferencelist=("plain",))
    if body is not None:
        try:
            text = body.get_content()
        except (LookupError, ValueError):  # an unknown charset or broken encoding
            text = ""
        if isinstance(text, str):
            found += _REQUEST.findall(text[:20_000])
    return list(dict.fromkeys(found))[:5]  # a message stuffed with guesses gets five tries


def _is_automatic(message: EmailMessage) -> bool:
    auto = _header(message, "Auto-Submitted").lower()
    precedence = _header(message, "Precedence").lower()
    return (
        (bool(auto) and auto != "no")
        or precedence in ("bulk", "junk", "list")
        or message.get_content_type() == "multipart/report"
    )


def _header(message: EmailMessage, name: str) -> str:
    try:
        return " ".join(str(message.get(name, "")).split())
    except (ValueError, IndexError, TypeError):  # a header the parser cannot make sense of
        return ""


def _with(result: InboundResult, status: InboundStatus, **changes: Any) -> InboundResult:
    return replace(result, status=status, **changes)


def _report(result: InboundResult) -> InboundResult:
    level = logging.INFO if result.honoured else logging.WARNING
    if result.status is InboundStatus.AUTOMATIC:
        level = logging.INFO
    event(
        log,
        "unsubscribe" if result.honoured else "inbound_ignored",
        level=level,
        via="mailto",
        status=result.status,
        recipient=result.email,
        sender=result.sender,
        detail=result.detail,
        message_id=result.message_id,
    )
    return result
