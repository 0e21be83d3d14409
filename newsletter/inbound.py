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

Anyone can send anything to this address, so each message is read in
isolation and nothing in one can stop the others: at most MAX_MESSAGE_BYTES
are read; headers are decoded from at most MAX_HEADER_CHARS; the body is
parsed only when the Subject held no valid token, only when it declares at
most MAX_MIME_BOUNDARIES multipart boundaries (Python's email parser checks
every line against every open boundary, and recurses once per level: 2,000
levels raise RecursionError), and its parts are walked iteratively. Any
exception while reading gives an `UNREADABLE` result naming it; in a Maildir
such a message is set aside in the `.poison` folder (Maildir++) for a person,
never retried. Only a database error stops a run, leaving the message in
new/ for the next one.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, replace
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parseaddr
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote

from sqlalchemy import Engine

from newsletter.errors import InputError
from newsletter.hygiene import one_line
from newsletter.logs import event
from newsletter.maildir import (
    POISON_FOLDER,
    move_out_of_new,
    new_folder,
    new_messages,
    read_message,
    subfolder,
)
from newsletter.models import InboundStatus
from newsletter.subscribers import unsubscribe
from newsletter.tokens import UNSUBSCRIBE_MAX_AGE, Purpose, Signer

log = logging.getLogger("newsletter.inbound")

MAX_MESSAGE_BYTES = 1024 * 1024  # an unsubscribe request is a few KB; refuse to parse a DVD
MAX_HEADER_CHARS = 2000  # a Subject with a token is ~200; decoding is bounded by this
MAX_MIME_BOUNDARIES = 20  # a mail client nests 2 or 3 multiparts; more is not a request
MAX_PARTS = 50  # parts looked at for a text body
MAX_BODY_CHARS = 20_000  # of each text part searched for a token
# A sealed token (`tokens.VERSION` and URL-safe base64), or one from before sealed tokens
# (itsdangerous: [.]payload.timestamp.signature, a leading dot when compressed).
_TOKEN = r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+|s[A-Za-z0-9_-]{20,2000}"
_REQUEST = re.compile(rf"\bunsubscribe[\s:]+({_TOKEN})", re.IGNORECASE)
_BOUNDARY = re.compile(rb"boundary\*?[0-9]*\*?\s*=", re.IGNORECASE)


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
    """Read one raw message and unsubscribe the address its token names, if it is valid.

    Whatever the bytes, the result is an InboundResult: an exception while
    reading the message is an UNREADABLE result naming it. Database errors
    are not the message's fault and propagate.
    """
    try:
        base, email = _read_request(signer, data)
    except _UnreadableError as exc:
        return _report(InboundResult(InboundStatus.UNREADABLE, "", detail=str(exc)))
    except Exception as exc:  # hostile or broken input: a result, never a crash
        log.debug("unreadable message", exc_info=exc)
        detail = f"the message could not be read ({type(exc).__name__}: {one_line(str(exc))})"
        return _report(InboundResult(InboundStatus.UNREADABLE, "", detail=detail[:300]))
    if email is None:
        return _report(base)
    changed = unsubscribe(engine, email)
    status = InboundStatus.UNSUBSCRIBED if changed else InboundStatus.NOT_SUBSCRIBED
    detail = "unsubscribed" if changed else "already unsubscribed or not on the list"
    return _report(_with(base, status, email=email, detail=detail))


def process_stream(engine: Engine, signer: Signer, stream: BinaryIO | None = None) -> InboundResult:
    """One message from a stream (stdin by default): for a mail server's pipe delivery."""
    source = stream if stream is not None else sys.stdin.buffer
    return process_message(engine, signer, source.read(MAX_MESSAGE_BYTES + 1))


def process_maildir(engine: Engine, signer: Signer, path: Path | str) -> list[InboundResult]:
    """Process every message in `path/new`, oldest first, moving each out of new/ when done.

    Moving to cur/ is the Maildir way of saying "seen", so a message is never
    processed twice, and a mail client pointed at the same Maildir still shows
    it: honoured ones are marked Seen (`:2,S`), the rest also Flagged (`:2,FS`)
    for a person to read. An UNREADABLE one (too big, not a regular file, or
    it broke the parser) goes to `path/.poison/cur/` instead, with a log line
    saying why, and is never tried again. A database error stops the run with
    the message still in new/, so the next run tries it again. Raises
    InputError when `path` is not a Maildir or a message cannot be moved.
    """
    root = Path(path)
    new, cur = new_folder(root), root / "cur"
    cur.mkdir(exist_ok=True)
    results = []
    for entry in new_messages(new):
        result = _process_file(engine, signer, entry)
        if result.status is InboundStatus.UNREADABLE:
            target = move_out_of_new(entry, subfolder(root, POISON_FOLDER))
            event(log, "inbound_set_aside", level=logging.WARNING, path=target, why=result.detail)
        else:
            target = move_out_of_new(entry, cur, "S" if result.honoured else "FS")
        results.append(_with(result, result.status, path=target))
    return results


# Reading one message (pure: no database)


class _UnreadableError(Exception):
    """A message this module refuses to parse further; the text says why."""


def _read_request(signer: Signer, data: bytes) -> tuple[InboundResult, str | None]:
    """What the message asks: its result so far, and the address a valid token names."""
    if not data.strip():
        return InboundResult(InboundStatus.UNREADABLE, "", detail="empty"), None
    if len(data) > MAX_MESSAGE_BYTES:
        detail = f"too big (over {MAX_MESSAGE_BYTES // 1024} KB; a request is a few KB)"
        return InboundResult(InboundStatus.UNREADABLE, "", detail=detail), None
    # compat32 keeps headers as raw text: the default policy's header parser recurses and
    # takes minutes on a hostile Subject; these are decoded, bounded, by _header.
    head = BytesParser(policy=compat32).parsebytes(data, headersonly=True)
    sender = _header(head, "From")
    base = InboundResult(
        InboundStatus.NO_TOKEN,
        parseaddr(sender)[1] or sender,
        message_id=_header(head, "Message-ID"),
    )
    if _is_automatic(head):
        return _with(base, InboundStatus.AUTOMATIC, detail="automatic message"), None
    problem = ""
    tried: set[str] = set()
    subject = unquote(_header(head, "Subject"))  # a client may leave %20 undecoded
    for candidates in (lambda: _REQUEST.findall(subject), lambda: _body_tokens(data)):
        for token in candidates():
            if token in tried or len(tried) >= 5:  # a message stuffed with guesses gets five
                continue
            tried.add(token)
            try:
                return base, signer.read(Purpose.UNSUBSCRIBE, token, max_age=UNSUBSCRIBE_MAX_AGE)
            except InputError as exc:
                problem = problem or exc.message
    if tried:
        return _with(base, InboundStatus.INVALID_TOKEN, detail=problem), None
    return _with(base, InboundStatus.NO_TOKEN, detail="no unsubscribe token found"), None


def _body_tokens(data: bytes) -> list[str]:
    """`unsubscribe <token>` in the text parts, for clients that moved it out of the Subject."""
    boundaries = len(_BOUNDARY.findall(data))
    if boundaries > MAX_MIME_BOUNDARIES:
        raise _UnreadableError(
            f"it declares {boundaries} MIME boundaries (nested parts); a request has a few"
        )
    message = BytesParser(policy=compat32).parsebytes(data)
    found: list[str] = []
    for part in _parts(message):
        if part.get_content_type() != "text/plain" or _is_attachment(part):
            continue
        found += _REQUEST.findall(_text_of(part)[:MAX_BODY_CHARS])
    return found


def _parts(message: Message) -> list[Message]:
    """The message's leaf parts, breadth first, without recursion, at most MAX_PARTS."""
    leaves: list[Message] = []
    queue = [message]
    seen = 0
    while queue and seen < MAX_PARTS:
        part = queue.pop(0)
        seen += 1
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            queue.extend(p for p in payload if isinstance(p, Message))
        else:
            leaves.append(part)
    return leaves


def _is_attachment(part: Message) -> bool:
    return str(part.get("Content-Disposition", "")).strip().lower().startswith("attachment")


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know: the token is ASCII anyway
        return payload.decode("latin-1")


def _is_automatic(message: Message) -> bool:
    auto = _header(message, "Auto-Submitted").lower()
    precedence = _header(message, "Precedence").lower()
    return (
        (bool(auto) and auto != "no")
        or precedence in ("bulk", "junk", "list")
        or message.get_content_type() == "multipart/report"
    )


def _header(message: Message, name: str) -> str:
    """A header's first value, decoded from at most MAX_HEADER_CHARS, as one clean line."""
    raw = next((value for key, value in message.raw_items() if key.lower() == name.lower()), "")
    raw = str(raw)[:MAX_HEADER_CHARS]
    try:
        # Raw 8-bit headers arrive as surrogate escapes: most are UTF-8 (RFC 6532).
        raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        text = str(make_header(decode_header(raw)))
    except Exception:  # a broken encoded word or an unknown charset: the text as written
        text = raw
    return one_line(text)[:MAX_HEADER_CHARS]


# Maildir


def _process_file(engine: Engine, signer: Signer, entry: Path) -> InboundResult:
    """Read one file of new/, a regular file of bounded size only, and process it."""
    try:
        data = read_message(entry, MAX_MESSAGE_BYTES)
    except (InputError, OSError) as exc:  # a FIFO, a link, too big, unreadable
        detail = exc.message if isinstance(exc, InputError) else (exc.strerror or str(exc))
        return _report(InboundResult(InboundStatus.UNREADABLE, "", detail=detail))
    return process_message(engine, signer, data)


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
