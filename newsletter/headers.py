"""Header lines for a message: values checked, names and subjects encoded, lines folded.

Every header value from input passes `clean_header_text` (no control character, line
or paragraph separator survives), so no value can start a header of its own. Names and
subjects are written as a quoted-string or RFC 2047 encoded-words, pure ASCII either
way; addresses, URLs and Message-IDs must match a strict pattern (`checked`) or the
message is refused with an `InputError`. The headers that are the same for the whole
edition (From, Subject, List-Id) are encoded once and cached: `message.assemble_message`
asks for them once per recipient.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache

from newsletter.errors import ConfigError, InputError
from newsletter.hygiene import one_line

MAX_LINE = 78  # RFC 5322 §2.1.1: header lines SHOULD stay within 78 characters
EW_LINE = 76  # RFC 2047 §2: a line holding an encoded-word stays within 76
EW_MAX = 75  # RFC 2047 §2: one encoded-word is at most 75 characters
MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3 (path of 256 minus the brackets)
MAX_URL = 900  # a <url> cannot be folded; this keeps its line far under 998 octets

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"  # RFC 5322 atext, as a character-class body
DOMAIN_RE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_DOT_ATOM = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
ADDRESS_RE = re.compile(rf"{_DOT_ATOM}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
MESSAGE_ID_RE = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}")  # inside the angle brackets
# printable ASCII except space, '"', '<' and '>': what may sit between the angle brackets
_URI_CHARS = r"[!#-;=?-~]+"
HTTP_RE = re.compile(rf"(?i:https?)://{_URI_CHARS}")
MAILTO_RE = re.compile(rf"(?i:mailto):{_URI_CHARS}")
# A word of a display name that can stay unencoded: atext without '=' and '?', so it can
# never look like the start of an encoded-word.
_PLAIN_WORD_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]{1,60}")

_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_EW_OVERHEAD = len("=?utf-8?q??=")
_MIN_FIRST_WORD = 24  # an encoded-word shorter than this is not worth starting a line with


def clean_header_text(value: str) -> str:
    """Make `value` safe for one header line: `hygiene.one_line` (no control character, line
    break or bidi mark; single spaces; stripped). Used on every name, subject and URL before it
    reaches a header."""
    return one_line(value)


def checked(value: str, field: str, pattern: re.Pattern[str], limit: int, where: str) -> str:
    """`value` cleaned, if it is safe inside angle brackets in a header; else InputError."""
    cleaned = clean_header_text(value)
    if cleaned != value.strip():
        reason = "contains a control, line-break or invisible formatting character"
    elif not cleaned:
        reason = "is empty"
    elif not cleaned.isascii():
        reason = "contains non-ASCII characters (store the ASCII/IDNA or %-encoded form)"
    elif " " in cleaned or "<" in cleaned or ">" in cleaned:
        reason = "contains a space, '<' or '>'"
    elif len(cleaned) > limit:
        reason = f"is longer than {limit} characters"
    elif not pattern.fullmatch(cleaned):
        reason = "is not well formed"
    else:
        return cleaned
    raise InputError(
        f"{field} {value!r} {reason}; the message was not built",
        where=where,
        hint=f"fix the {field}",
    )


@lru_cache(maxsize=16)
def from_header(from_name: str, from_address: str) -> str:
    """From: is the same for the whole edition, so it is encoded once."""
    if not ADDRESS_RE.fullmatch(from_address) or len(from_address) > MAX_ADDRESS:
        raise ConfigError(
            f"{from_address!r} cannot be written into a From: header",
            where="NEWSLETTER_FROM_ADDRESS",
            hint="use a plain ASCII address like news@example.com",
        )
    return address_header("From", clean_header_text(from_name), from_address)


@lru_cache(maxsize=16)
def list_id_header(name: str, list_id: str) -> str:
    """List-Id (RFC 2919): the list's name as a phrase, then <slug.domain>."""
    if not DOMAIN_RE.fullmatch(list_id):
        raise ConfigError(
            f"the List-Id {list_id!r} is not a dot-atom",
            where="NEWSLETTER_FROM_ADDRESS",
            hint="use a plain ASCII domain in the from address",
        )
    return address_header("List-Id", clean_header_text(name), list_id)


@lru_cache(maxsize=64)
def subject_header(subject: str) -> str:
    """Subject: plain and folded at spaces when it can be, else UTF-8 encoded-words.

    Plain text that contains "=?" is encoded too, so no reader mistakes it for an
    encoded-word and shows something other than what the editor wrote.
    """
    text = clean_header_text(subject)
    if not text:
        return "Subject:"
    if text.isascii() and "=?" not in text:
        folded = _fold_plain("Subject:", text)
        if folded is not None:
            return folded
    words = _encoded_words(text, EW_LINE - len("Subject: "), EW_MAX)
    return "Subject: " + "\r\n ".join(words)


def _fold_plain(head: str, text: str) -> str | None:
    """`head text` folded at spaces into lines of at most 78, or None if a word is too long."""
    words = text.split(" ")
    lines = [f"{head} {words[0]}"]
    if len(lines[0]) > MAX_LINE:
        return None
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) <= MAX_LINE:
            lines[-1] += " " + word
        elif 1 + len(word) <= MAX_LINE:
            lines.append(" " + word)
        else:
            return None
    return "\r\n".join(lines)


def address_header(field: str, name: str, address: str) -> str:
    """`field: "name" <address>` (or `field: <address>`), folded; `name` already cleaned.

    An ASCII name becomes a quoted-string (so commas, quotes and colons are just text).
    Anything else, or a name too long for one line, becomes atoms and UTF-8 encoded-words
    (RFC 2047 §5(3)); runs of non-ASCII words are encoded together with their spaces, since
    readers drop the whitespace between two adjacent encoded-words.
    """
    angle = f"<{address}>"
    if not name:
        return f"{field}: {angle}"
    if name.isascii() and "=?" not in name:
        line = f'{field}: "' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(line) <= MAX_LINE:
            joiner = " " if len(line) + 1 + len(angle) <= MAX_LINE else "\r\n "
            return line + joiner + angle
    lines = [f"{field}:"]
    for segment, plain in _phrase_segments(name):
        if plain:
            tokens = [segment]
        else:
            # One encoded-word, on a new line if need be; split only what cannot fit in one
            # (filling the current line first), since readers differ on the space between.
            tokens = _encoded_words(segment, EW_MAX, EW_MAX)
            room = EW_LINE - len(lines[-1]) - 1
            if len(tokens) > 1 and room >= _MIN_FIRST_WORD:
                tokens = _encoded_words(segment, room, EW_MAX)
        for token in tokens:
            if len(lines[-1]) + 1 + len(token) <= EW_LINE:
                lines[-1] += " " + token
            else:
                lines.append(" " + token)
    if len(lines[-1]) + 1 + len(angle) <= EW_LINE:
        lines[-1] += " " + angle
    else:
        lines.append(" " + angle)
    return "\r\n".join(lines)


def _phrase_segments(name: str) -> list[tuple[str, bool]]:
    """Split a display name into (text, plain) runs: plain atoms, and runs to encode."""
    segments: list[tuple[str, bool]] = []
    run: list[str] = []
    for word in name.split(" "):
        if _PLAIN_WORD_RE.fullmatch(word):
            if run:
                segments.append((" ".join(run), False))
                run = []
            segments.append((word, True))
        else:
            run.append(word)
    if run:
        segments.append((" ".join(run), False))
    return segments


@lru_cache(maxsize=4096)
def _q_char(char: str) -> str:
    """One character in RFC 2047 "Q" encoding, with the phrase-safe alphabet of §5(3)."""
    return "".join(
        chr(byte) if byte in _Q_SAFE else "_" if byte == 0x20 else f"={byte:02X}"
        for byte in char.encode("utf-8")
    )


def _encoded_words(text: str, first: int, rest: int) -> list[str]:
    """`text` as UTF-8 encoded-words of at most `first`, then `rest`, characters each.

    Q unless B is much shorter: Q keeps mostly-Latin text readable in the raw message, B
    is far shorter for Cyrillic, Greek, CJK or emoji. Words are cut between characters,
    never inside a character's UTF-8 bytes.
    """
    size = len(text.encode("utf-8"))
    if 2 * sum(len(_q_char(char)) for char in text) <= 3 * 4 * -(-size // 3):
        return _q_words(text, first, rest)
    return _b_words(text, first, rest)


def _q_words(text: str, first: int, rest: int) -> list[str]:
    words: list[str] = []
    pieces: list[str] = []
    used, limit = 0, first - _EW_OVERHEAD
    for char in text:
        piece = _q_char(char)
        if pieces and used + len(piece) > limit:
            words.append("=?utf-8?q?" + "".join(pieces) + "?=")
            pieces, used, limit = [], 0, rest - _EW_OVERHEAD
        pieces.append(piece)
        used += len(piece)
    words.append("=?utf-8?q?" + "".join(pieces) + "?=")
    return words


def _b_words(text: str, first: int, rest: int) -> list[str]:
    words: list[str] = []
    chunk = bytearray()
    limit = first - _EW_OVERHEAD
    for char in text:
        raw = char.encode("utf-8")
        if chunk and 4 * -(-(len(chunk) + len(raw)) // 3) > limit:
            words.append("=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=")
            chunk, limit = bytearray(), rest - _EW_OVERHEAD
        chunk += raw
    words.append("=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=")
    return words
