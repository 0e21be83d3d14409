"""One message that arrived at the bounce address, read into a `BounceReport`; pure.

What is recognised, in this order (the order is the point: an Exchange or Exim
bounce carries `Auto-Submitted: auto-replied`, so a delivery report is looked
for before the auto-reply signs, and an auto-reply never counts as a bounce):

1. an RFC 5965 ARF complaint (a `message/feedback-report` part): COMPLAINT;
2. an RFC 3464 DSN (a `message/delivery-status` part, or RFC 6533's global one):
   per recipient block, Action `failed` is HARD or SOFT by its Status, `delayed`
   is DELAYED, and `delivered` / `relayed` / `expanded` are no bounce at all;
3. a plain-text bounce from a mailer daemon (qmail, Exim without its DSN part,
   old Postfix and Gmail forms...): the failed address, a status and the words;
4. an auto-reply (RFC 3834 `Auto-Submitted`, `X-Autoreply`, `Precedence:
   auto_reply`, Exchange's `X-Auto-Response-Suppress`, an out-of-office Subject)
   or a read receipt (RFC 8098): AUTO_REPLY, ignored;
5. anything else: UNKNOWN, for a person.

Hard or soft: the enhanced status code's class decides (RFC 3463: 5 permanent,
4 transient), except X.2.2 "mailbox full", which RFC 3463 §3.3 calls a
"persistent transient failure": the mailbox exists and empties when its owner
deletes mail, so one full mailbox must not end a subscription; it is SOFT even
when a server sends it with class 5. So is X.7.x (security or policy: spam
filters, blocklists, DMARC): it judges the sender or the message, not the
address, and counting it as hard would shed good subscribers the day the sender
is blocklisted; the soft-bounce limit still ends an address refused for weeks.
A generic X.0.0 (Exim's usual Status) gives way to the code the server itself
quoted, or to the words for a full mailbox. With no status, `_PHRASES`
(well-known wordings) decide, then the basic SMTP reply code, then the report
itself ("failed" in a DSN, "permanent" in a plain-text bounce: HARD; a
plain-text bounce that says neither: SOFT).

`sent_to` is the address the report came to (Delivered-To, X-Original-To,
Envelope-To, then To), preferring a VERP form (`bounces+<token>@`); when none of
those has one, the VERP envelope sender the report quotes (Postfix's
X-Postfix-Sender, ARF's Original-Mail-From, the returned message's Return-Path),
since a feedback loop mails its own address, not ours. The caller checks the
token's signature, so a quoted one is no weaker than a header.

Anyone can mail the bounce address, so nothing here trusts the bytes: at most
MAX_MESSAGE_BYTES in MAX_LINES lines are parsed (the parser's cost is per
line), only with at most MAX_BOUNDARIES multipart boundaries and MAX_NESTED
message/* parts declared (Python's parser checks each line against every open
boundary and recurses per level), at most MAX_PARTS parts are walked
(iteratively), text is searched in its first MAX_TEXT_CHARS, and any exception
at all becomes an UNKNOWN report naming it. Addresses are lower-cased and
checked; every text passes `hygiene.one_line`, bounded.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from newsletter.addresses import validate_email
from newsletter.bounces import BounceReport
from newsletter.errors import InputError
from newsletter.hygiene import one_line
from newsletter.models import BounceKind

__all__ = ["read_report", "MAX_MESSAGE_BYTES"]

# As bounces/mailbox.py reads; a DSN that quotes a whole edition is ~150 KB.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
MAX_LINES = 20_000  # the parser's cost is per line; a DSN quoting an edition has ~3,000
MAX_BOUNDARIES = 25  # a real report nests three or four multiparts
MAX_NESTED = 10  # message/* parts (each one a recursion of the parser)
MAX_PARTS = 60
MAX_TEXT_CHARS = 30_000  # of a notification text searched for addresses and codes
MAX_HEADER_CHARS = 2_000
MAX_RECIPIENTS = 50
MAX_DIAGNOSTIC = 500
MAX_DETAIL = 300

_BOUNDARY = re.compile(rb"boundary\*?[0-9]*\*?\s*=", re.IGNORECASE)
_MESSAGE_TYPE = re.compile(rb"content-type:\s*message/", re.IGNORECASE)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<![\d.])([45])\d\d(?=[ -])")
_ADDRESS = re.compile(
    r"[A-Za-z0-9._%+!#$&'*/=?^`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+"
)
_TYPE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,19}[ \t]*;[ \t]*")
_ADDR_SPEC = re.compile(rf"^{_ADDRESS.pattern}$")
_MESSAGE_ID = re.compile(r"^Message-ID:[ \t]*(<[^<>\s]{3,250}>)", re.IGNORECASE | re.MULTILINE)
_NOT_A_RECIPIENT = ("postmaster", "mailer-daemon", "mail-daemon", "abuse", "noreply", "no-reply")

# Where a plain-text bounce's copy of the original message starts: text after it is
# the original, not the report (its To and addresses are not the failed ones).
_COPY_STARTS = re.compile(
    r"^[ \t-]*(?:This is a copy of the message|Below this line is a copy of the message"
    r"|-+ ?Original message ?-+|Original message follows|Returned mail follows"
    r"|Undelivered message headers|Included is a copy of the message)",
    re.IGNORECASE | re.MULTILINE,
)
# The opening words of the daemons' plain-text bounces (the style they name).
_TEXT_BOUNCES = (
    ("qmail", re.compile(r"This is the qmail-send program", re.I)),
    ("exim", re.compile(r"This message was created automatically by mail delivery software", re.I)),
    ("postfix", re.compile(r"This is the mail system at host", re.I)),
    ("gmail", re.compile(r"Delivery to the following recipients? failed", re.I)),
    (
        "text",
        re.compile(
            r"(?:could not|couldn't|cannot|was not|wasn't)\s+(?:be\s+)?delivered"
            r"|delivery (?:has )?failed|undeliverable|returned mail"
            r"|permanent (?:fatal )?errors?",
            re.I,
        ),
    ),
)
_DAEMON_FROM = re.compile(r"mailer-daemon|mail-daemon|postmaster|mail delivery", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (?:status notification|failure|has failed|failed)"
    r"|failure notice|mail delivery failed|non-?delivery|could not be delivered",
    re.I,
)
_DELAY_WORDS = re.compile(
    r"has not yet been delivered|delayed|will (?:continue|keep) (?:trying|to try)|still trying"
    r"|no action is required",
    re.I,
)
_PERMANENT_WORDS = re.compile(r"permanent|given up|giving up|failed permanently", re.I)
# Well-known wordings, for when a report gives no enhanced status code; first match wins,
# so "mailbox full" (soft, see the docstring) is tried before the "no such mailbox" kin.
_MAILBOX_FULL = re.compile(
    r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:its |the )?(?:storage|quota)"
    r"|insufficient (?:system )?storage|out of storage|mailbox size limit",
    re.I,
)
_PHRASES = (
    (BounceKind.SOFT, _MAILBOX_FULL),
    (
        BounceKind.HARD,
        re.compile(
            r"user unknown|unknown user|no such (?:user|recipient|mailbox|address)"
            r"|does ?n[o']t exist|unknown recipient|recipient (?:address )?rejected"
            r"|recipient not found|invalid (?:recipient|mailbox|address)"
            r"|mailbox (?:unavailable|not found|disabled)|account (?:has been )?disabled"
            r"|unrouteable address|domain not found|host not found|host or domain name not found"
            r"|name or service not known|nxdomain|no mx|not our customer|address rejected",
            re.I,
        ),
    ),
    (
        BounceKind.SOFT,
        re.compile(
            r"temporar|try again later|greylist|too many connections"
            r"|rate limit|deferred|timed? ?out|connection refused",
            re.I,
        ),
    ),
)
_AUTO_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response"
    r"|abwesenheitsnotiz|automatische antwort|abwesend|r[ée]ponse automatique|absence du bureau"
    r"|absent\b|respuesta autom[áa]tica|fuera de la oficina|risposta automatica|fuori sede"
    r"|automatisch antwoord|afwezig|on vacation|vacation reply|away from (?:the|my) office",
    re.I,
)
_COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other", "")
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")


def read_report(data: bytes) -> BounceReport:
    """What one raw message at the bounce address says. Never raises: whatever the bytes,
    a report (UNKNOWN, with `detail` saying why, when they are not one of the kinds)."""
    try:
        return _read(data)
    except Exception as exc:  # hostile or broken input: a report, never a crash
        detail = f"the message could not be read ({type(exc).__name__}: {one_line(str(exc))})"
        return BounceReport(BounceKind.UNKNOWN, detail=detail[:MAX_DETAIL])


def _read(data: bytes) -> BounceReport:
    if not data.strip():
        return _unknown("empty")
    if len(data) > MAX_MESSAGE_BYTES:
        return _unknown(f"too big (over {MAX_MESSAGE_BYTES // 1024} KB; a bounce is a few KB)")
    if max(data.count(b"\n"), data.count(b"\r")) > MAX_LINES:
        return _unknown(f"too many lines (over {MAX_LINES:,}; a bounce has a few hundred)")
    if len(_BOUNDARY.findall(data)) > MAX_BOUNDARIES:
        return _unknown(f"nested too deep (over {MAX_BOUNDARIES} MIME boundaries)")
    if len(_MESSAGE_TYPE.findall(data)) > MAX_NESTED:
        return _unknown(f"nested too deep (over {MAX_NESTED} message parts)")
    message = BytesParser(policy=compat32).parsebytes(data)
    parts = _walk(message)
    if parts is None:
        return _unknown(f"too many MIME parts (over {MAX_PARTS})")
    sent_to = _sent_to(message)
    for part in parts:
        if part.get_content_type() == "message/feedback-report":
            return _complaint(message, parts, part, sent_to)
    for part in parts:
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            return _dsn(message, parts, part, sent_to)
    if any(p.get_content_type() == "message/disposition-notification" for p in parts):
        return _auto_reply(sent_to, "a read receipt (RFC 8098 MDN): ignored")
    text_bounce = _text_bounce(message, parts, sent_to)
    if text_bounce is not None:
        return text_bounce
    if _is_auto_reply(message):
        return _auto_reply(sent_to, "an auto-reply or out-of-office message: ignored")
    return _unknown("not a delivery report, complaint or auto-reply", sent_to=sent_to)


# RFC 5965 complaints


def _complaint(
    message: Message, parts: list[Message], report: Message, sent_to: str
) -> BounceReport:
    fields = _field_blocks(report)
    first = fields[0] if fields else {}
    feedback_type = first.get("feedback-type", "").strip().lower()
    original = _original(parts)
    recipients = _addresses(first.get("original-rcpt-to", ""))
    if not recipients and original is not None:
        # Microsoft's JMRP names the recipient in a header of its own; others leave To.
        recipients = _addresses(
            _header(original, "X-HmXmrOriginalRecipient") or _header(original, "To")
        )
    verp = _quoted_senders(first.get("original-mail-from", ""), original)
    user_agent = one_line(first.get("user-agent", ""))
    diagnostic = one_line(
        f"feedback-type {feedback_type or '(none)'}" + (f" from {user_agent}" if user_agent else "")
    )
    kind = BounceKind.COMPLAINT if feedback_type in _COMPLAINT_TYPES else BounceKind.UNKNOWN
    return BounceReport(
        kind,
        recipients=recipients,
        sent_to=_prefer_verp(sent_to, verp),
        diagnostic=diagnostic[:MAX_DIAGNOSTIC],
        message_id=_message_id_of(original),
        reporter="arf",
        detail=""
        if kind is BounceKind.COMPLAINT
        else f"a {feedback_type} feedback report, not a complaint",
    )


# RFC 3464 delivery status notifications


def _dsn(
    message: Message, parts: list[Message], status_part: Message, sent_to: str
) -> BounceReport:
    blocks = _field_blocks(status_part)
    per_message = blocks[0] if blocks else {}
    recipient_blocks = [b for b in blocks if "action" in b or "final-recipient" in b][
        :MAX_RECIPIENTS
    ]
    original = _original(parts)
    reporter = _style(message, blocks, _notification_text(parts))
    verp = _quoted_senders(per_message.get("x-postfix-sender", ""), original)
    sent_to = _prefer_verp(sent_to, verp)
    message_id = _message_id_of(original) or _message_id(
        per_message.get("x-original-message-id", "")
    )
    if not recipient_blocks:
        return _unknown(
            "a delivery report with no recipient fields", sent_to=sent_to, reporter=reporter
        )
    judged = []
    for block in recipient_blocks:
        action = block.get("action", "failed").strip().lower()
        diagnostic = one_line(_strip_type(block.get("diagnostic-code", "")))[:MAX_DIAGNOSTIC]
        if action.startswith("delayed"):
            kind, status = BounceKind.DELAYED, _status(block.get("status", ""))
        elif action.startswith(("delivered", "relayed", "expanded")):
            kind, status = BounceKind.UNKNOWN, _status(block.get("status", ""))
        else:
            kind, status = _judge(block.get("status", ""), diagnostic, BounceKind.HARD)
        address = _address(_strip_type(block.get("original-recipient", ""))) or _address(
            _strip_type(block.get("final-recipient", ""))
        )
        judged.append((kind, status, diagnostic, address, action))
    # One report per message: the gravest outcome speaks for it, with every address that had it.
    order = (BounceKind.HARD, BounceKind.SOFT, BounceKind.DELAYED, BounceKind.UNKNOWN)
    kind = min((j[0] for j in judged), key=order.index)
    chosen = [j for j in judged if j[0] is kind]
    recipients = tuple(dict.fromkeys(j[3] for j in chosen if j[3]))
    if not recipients and kind is not BounceKind.UNKNOWN:
        recipients = _addresses(_header(message, "X-Failed-Recipients"))
    detail = ""
    if kind is BounceKind.UNKNOWN:
        said = chosen[0][4] or "delivered"
        detail = f"a delivery report saying {said}: not a bounce, nothing to record"
    return BounceReport(
        kind,
        recipients=recipients,
        sent_to=sent_to,
        status=chosen[0][1],
        diagnostic=chosen[0][2],
        message_id=message_id,
        reporter=reporter,
        detail=detail,
    )


def _style(message: Message, blocks: list[dict[str, str]], text: str) -> str:
    """Which MTA wrote the report (for logs and tests): each leaves its own marks."""
    sender = _header(message, "From").lower()
    fields = {name for block in blocks for name in block}
    mta = blocks[0].get("reporting-mta", "").lower() if blocks else ""
    if "x-postfix-queue-id" in fields or "This is the mail system at host" in text:
        return "postfix"
    if (
        "x-ms-exchange-message-is-ndr" in _names(message)
        or "microsoft" in text.lower()
        or "outlook.com" in mta
    ):
        return "exchange"
    if "googlemail.com" in sender or "google.com" in mta or "googlemail.com" in mta:
        return "gmail"
    if "x-exim-diagnostic" in fields or _TEXT_BOUNCES[1][1].search(text):
        return "exim"
    if "The original message was received at" in text or _header(message, "Subject").startswith(
        "Returned mail"
    ):
        return "sendmail"
    return "dsn"


# Plain-text bounces


def _text_bounce(message: Message, parts: list[Message], sent_to: str) -> BounceReport | None:
    """A daemon's bounce without a DSN part, or None when the message is not one.

    It must come from a daemon (its From, or a bounce Subject) AND say so in words
    a daemon uses, or carry Exim's and Gmail's X-Failed-Recipients: a person's
    out-of-office reply quoting "undeliverable" is not a bounce.
    """
    failed_header = _header(message, "X-Failed-Recipients")
    text = _notification_text(parts)
    body, copy = _split_copy(text)
    reporter = next((name for name, words in _TEXT_BOUNCES if words.search(body)), "")
    from_daemon = bool(_DAEMON_FROM.search(_header(message, "From")))
    bounce_subject = bool(_BOUNCE_SUBJECT.search(_header(message, "Subject")))
    if not failed_header and not (reporter and (from_daemon or bounce_subject)):
        return None
    if reporter == "text" and "googlemail.com" in _header(message, "From").lower():
        reporter = "gmail"
    recipients = _addresses(failed_header) or _failed_in_text(
        body, exclude={sent_to, *_addresses(_header(message, "From"))}
    )
    status, diagnostic = _diagnosis(body)
    if _DELAY_WORDS.search(body) and not _PERMANENT_WORDS.search(body):
        kind = BounceKind.DELAYED
    else:
        fallback = BounceKind.HARD if _PERMANENT_WORDS.search(body) else BounceKind.SOFT
        kind, status = _judge(status, diagnostic, fallback)
    original = _original(parts)
    message_id = _message_id_of(original) or _message_id(_MESSAGE_ID.search(copy))
    return BounceReport(
        kind,
        recipients=recipients,
        sent_to=_prefer_verp(sent_to, _quoted_senders("", original)),
        status=status,
        diagnostic=diagnostic,
        message_id=message_id,
        reporter=reporter or "text",
    )


def _failed_in_text(body: str, exclude: set[str]) -> tuple[str, ...]:
    """The addresses a plain-text bounce names as failed: qmail's and Postfix's `<a@b>:`
    lines, else the first address that is not the daemon's, ours or the reader's."""
    quoted = re.findall(r"^[ \t]*<([^<>\s]{3,320})>:", body, re.MULTILINE)
    found = tuple(dict.fromkeys(a for a in map(_address, quoted) if a))
    if found:
        return found[:MAX_RECIPIENTS]
    for candidate in _ADDRESS.findall(body):
        address = _address(candidate)
        if address and address not in exclude and not address.startswith(_NOT_A_RECIPIENT):
            return (address,)
    return ()


def _diagnosis(body: str) -> tuple[str, str]:
    """The enhanced status code and the line that gives the server's words."""
    status_match = _ENHANCED.search(body)
    status = ".".join(status_match.groups()) if status_match else ""
    for line in body.splitlines():
        if (
            _ENHANCED.search(line)
            or _BASIC.search(line)
            or any(p.search(line) for _, p in _PHRASES)
        ):
            return status, one_line(line)[:MAX_DIAGNOSTIC]
    return status, ""


def _split_copy(text: str) -> tuple[str, str]:
    """The report's own words, and the copy of the original message after them."""
    match = _COPY_STARTS.search(text)
    return (text, "") if match is None else (text[: match.start()], text[match.start() :])


# Auto-replies


def _is_auto_reply(message: Message) -> bool:
    auto = _header(message, "Auto-Submitted").lower()
    precedence = _header(message, "Precedence").lower()
    flagged = bool(_names(message) & {"x-autoreply", "x-autorespond", "x-auto-response-suppress"})
    return (
        (bool(auto) and not auto.startswith("no"))
        or precedence == "auto_reply"
        or flagged
        or bool(_AUTO_SUBJECT.search(_header(message, "Subject")))
    )


# Hard or soft


def _judge(status: str, diagnostic: str, fallback: BounceKind) -> tuple[BounceKind, str]:
    """HARD or SOFT for a failure, and the status code it rests on (see the module docstring)."""
    code, quoted = _status(status), _status(diagnostic)
    if not code or (code.endswith(".0.0") and quoted[:1] == code[:1]):
        code = quoted or code  # Exim's "Status: 5.0.0" over the server's own "550 5.1.1"
    if code[:1] in ("4", "5"):
        if code.split(".")[1:] == ["2", "2"]:
            return BounceKind.SOFT, code  # mailbox full: RFC 3463's persistent transient
        if code.split(".")[1] == "7":
            return BounceKind.SOFT, code  # a policy block: about the sender, not the address
        if code.endswith(".0.0") and _MAILBOX_FULL.search(diagnostic):
            return BounceKind.SOFT, code  # "other or undefined", in words: mailbox full
        return (BounceKind.HARD if code[0] == "5" else BounceKind.SOFT), code
    # No code, or a success code on a failure (which contradicts itself): the words decide.
    for kind, phrase in _PHRASES:
        if phrase.search(diagnostic):
            return kind, ""
    basic = _BASIC.search(diagnostic + " ")
    if basic:
        return (BounceKind.HARD if basic.group(1) == "5" else BounceKind.SOFT), ""
    return fallback, ""


def _status(text: str) -> str:
    match = _ENHANCED.search(text or "")
    return ".".join(match.groups()) if match else ""


# Reading MIME, bounded


def _walk(message: Message) -> list[Message] | None:
    """Every part of the report, breadth first and without recursion; a returned message
    (message/rfc822) is one part, not walked into. None when there are over MAX_PARTS."""
    parts: list[Message] = []
    queue = [message]
    while queue:
        part = queue.pop(0)
        parts.append(part)
        if len(parts) > MAX_PARTS:
            return None
        payload = part.get_payload()
        if (
            part.is_multipart()
            and part.get_content_maintype() == "multipart"
            and isinstance(payload, list)
        ):
            queue.extend(p for p in payload if isinstance(p, Message))
    return parts


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The header-like blocks of a delivery-status or feedback-report part, each as
    {lower-case name: first value, decoded and clean}. Python parses a delivery-status
    part into one Message per block, but a message/global-delivery-status (RFC 6533) or a
    feedback report into one Message whose body holds the rest: that is split here."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _split_blocks(_payload_text(part))
    blocks = []
    for block in payload[: MAX_RECIPIENTS + 1]:
        if isinstance(block, Message):
            blocks.append(
                {k.lower(): _decoded(str(v)) for k, v in reversed(list(block.raw_items()))}
            )
            rest = block.get_payload()
            if isinstance(rest, str) and rest.strip():
                blocks += _split_blocks(rest[:MAX_TEXT_CHARS])
    return [b for b in blocks if b]


def _split_blocks(text: str) -> list[dict[str, str]]:
    """`Name: value` lines (folded ones joined) in blocks parted by blank lines."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines()[:2000]:
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] = (current[last] + " " + line.strip())[:MAX_HEADER_CHARS]
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            current.setdefault(last, value.strip()[:MAX_HEADER_CHARS])
    if current:
        blocks.append(current)
    return [{name: _decoded(value) for name, value in block.items()} for block in blocks]


def _original(parts: list[Message]) -> Message | None:
    """The headers of the original message a report returns (message/rfc822 or
    text/rfc822-headers), or None."""
    for part in parts:
        kind = part.get_content_type()
        payload = part.get_payload()
        if (
            kind == "message/rfc822"
            and isinstance(payload, list)
            and payload
            and isinstance(payload[0], Message)
        ):
            return payload[0]
        if kind in ("text/rfc822-headers", "text/rfc822-header", "message/rfc822-headers"):
            return HeaderParser(policy=compat32).parsestr(_payload_text(part)[:MAX_TEXT_CHARS])
    return None


def _notification_text(parts: list[Message]) -> str:
    """The human-readable report: the text/plain parts that are not the returned message."""
    texts = []
    for part in parts:
        if part.get_content_type() == "text/plain":
            texts.append(_payload_text(part))
        if sum(map(len, texts)) >= MAX_TEXT_CHARS:
            break
    return "\n".join(texts)[:MAX_TEXT_CHARS]


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw[: MAX_TEXT_CHARS * 2] if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[: MAX_TEXT_CHARS * 4].decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return payload[: MAX_TEXT_CHARS * 4].decode("latin-1")


def _header(message: Message | None, name: str) -> str:
    """A header's first value, RFC 2047 decoded from at most MAX_HEADER_CHARS, one clean line."""
    if message is None:
        return ""
    raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), "")
    return _decoded(str(raw))


def _names(message: Message) -> set[str]:
    """The lower-case names of a message's headers (some flags, like Exchange's, are empty)."""
    return {k.lower() for k in message.keys()}


def _decoded(raw: str) -> str:
    raw = raw[:MAX_HEADER_CHARS]
    try:
        raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        text = str(make_header(decode_header(raw)))
    except Exception:  # a broken encoded word or an unknown charset: the text as written
        text = raw
    return one_line(text)[:MAX_HEADER_CHARS]


# Addresses and identifiers


def _sent_to(message: Message) -> str:
    """The address the report was delivered to: the envelope headers first, then To."""
    candidates = []
    for name in _ENVELOPE_HEADERS:
        values = [v for k, v in message.raw_items() if k.lower() == name.lower()][:10]
        for value in values:
            candidates += _addresses(_decoded(str(value)), checked=False)
    return _prefer_verp("", candidates)


def _prefer_verp(sent_to: str, candidates: tuple[str, ...] | list[str]) -> str:
    """The first VERP form (`local+token@domain`) among `sent_to` and `candidates`, else
    `sent_to`, else the first candidate. The token's signature is checked by the caller."""
    every = [a for a in (sent_to, *candidates) if a]
    return next((a for a in every if "+" in a.partition("@")[0]), every[0] if every else "")


def _quoted_senders(field: str, original: Message | None) -> tuple[str, str]:
    """The envelope senders a report quotes (a DSN's or ARF's field, the returned
    message's Return-Path): our VERP address when the report came to another one."""
    return (
        _address(_strip_type(field), checked=False),
        _address(_header(original, "Return-Path"), checked=False),
    )


def _addresses(text: str, *, checked: bool = True) -> tuple[str, ...]:
    """The addresses a header value lists, lower-cased; subscribers' ones `checked` as
    `addresses.validate_email` does (our own bounce domain may be a local test name)."""
    found = [_address(a, checked=checked) for _, a in getaddresses([_strip_type(text)])]
    return tuple(dict.fromkeys(a for a in found if a))[:MAX_RECIPIENTS]


def _address(raw: str, *, checked: bool = True) -> str:
    """One address, without display name or brackets, lower-cased; "" when it is not one."""
    candidate = (parseaddr(raw)[1] if "<" in raw else raw).strip().strip("<>").strip().lower()
    if not candidate or len(candidate) > 254 or not _ADDR_SPEC.match(candidate):
        return ""
    if checked:
        try:
            return validate_email(candidate).lower()
        except InputError:
            return ""
    return candidate


def _strip_type(value: str) -> str:
    """`rfc822; a@b` or `smtp; 550 ...` (RFC 3464's type prefix) without the prefix."""
    return _TYPE_PREFIX.sub("", value.strip(), count=1)


def _message_id_of(original: Message | None) -> str:
    return _message_id(_header(original, "Message-ID")) if original is not None else ""


def _message_id(value: str | re.Match[str] | None) -> str:
    if isinstance(value, re.Match):
        value = value.group(1)
    match = re.search(r"<[^<>\s]{3,250}>", value or "")
    return one_line(match.group(0)) if match else ""


def _auto_reply(sent_to: str, detail: str) -> BounceReport:
    return BounceReport(
        BounceKind.AUTO_REPLY, sent_to=sent_to, reporter="auto-reply", detail=detail
    )


def _unknown(detail: str, *, sent_to: str = "", reporter: str = "") -> BounceReport:
    return BounceReport(
        BounceKind.UNKNOWN, sent_to=sent_to, reporter=reporter, detail=detail[:MAX_DETAIL]
    )
