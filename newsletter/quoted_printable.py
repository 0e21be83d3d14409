"""Quoted-printable bodies: a whole text part, or an edition's pre-encoded pieces.

The wire rules every encoded body line keeps (RFC 2045 §6.7, plus what relays and
mailboxes do to text): at most 76 characters, soft break included; "=" only as a whole
"=XX" escape or as the final soft break, so no escape is ever split; no space or tab at
the end of a line, nor right before a soft break (RFC 2045 allows the latter, but it is
the blank a line-trimming gateway or decoder loses; escaped, nothing can lose it); no
line starts with "." (a relay that forgets SMTP dot-stuffing ends the message there) or
"From " (an mbox writer turns it into ">From ", changing the text and breaking DKIM).

`binascii.b2a_qp` (C) does the encoding and keeps most of them; the few lines it gets
wrong for us are found line by line and re-wrapped (`_rewrap`). A send encodes each
literal piece of an edition once and per recipient only its short slot values
(`fill_encoded`); `message.build_message` encodes whole parts (`encode_text`).
"""

from __future__ import annotations

import binascii
import re
from functools import lru_cache

QP_LINE = 76  # RFC 2045 §6.7: quoted-printable lines, soft break included

_BLANKS = (b" ", b"\t")
_BLANK_BYTES = b" \t"
_HARD_BREAK_RE = re.compile(rb"(?<!=)\n")  # a line end that is not a soft break
_BAD_STARTS = (b".", b"From ")
_BAD_ENDS = (b" ", b"\t", b" =", b"\t=")  # a blank at the end, or before a soft break
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def fill_encoded(parts: tuple[str, ...], values: dict[str, str]) -> bytes:
    """Quoted-printable bytes of `parts` (literal text at even indexes, slot names at odd
    ones) with each slot replaced by its value from `values`.

    The literal pieces are encoded once per edition and cached; per recipient only
    the short slot values are encoded. Each piece starts a line and ends with its own
    line break, or with a soft line break when the text goes on in the next piece, so
    pieces join without breaking a wire rule (see the module docstring) and a reader decodes
    exactly the joined text. A body that would end with a soft break ends without one.

    Each piece's line breaks are its own: a CR ending one piece and an LF starting the
    next are two line breaks, not one CRLF. Rendered editions hold no lone CR (Jinja
    normalizes line ends) and `personalize` removes every line break from slot values.
    """
    return b"".join(encoded_pieces(parts, values))


def encoded_pieces(
    parts: tuple[str, ...], values: dict[str, str], encoded: dict[str, bytes] | None = None
) -> list[bytes]:
    """`fill_encoded` before its join: the pieces, for a caller that joins them with more.

    A send joins a message's headers and both parts' pieces in one `bytes.join`, so 66 KB
    are copied once per message, not three times. `encoded` maps a value to its encoded
    piece, shared by the calls for one message (a value fills several slots, in both
    parts) and seeded with the edition's constant values, so each is encoded once.
    """
    literals, ends_literal = _encoded_literals(parts)
    pieces = list(literals)
    if encoded is None:
        encoded = {}
    for index in range(1, len(pieces), 2):
        value = values[parts[index]]
        piece = encoded.get(value)
        if piece is None:
            piece = encoded[value] = encode_piece(value)
        pieces[index] = piece
    if not ends_literal:  # the last piece is a slot or empty: its soft break goes here
        for index in range(len(pieces) - 1, -1, -1):  # the last piece that is not empty
            if pieces[index]:
                if pieces[index].endswith(b"=\r\n"):
                    pieces[index] = pieces[index][:-3]
                break
    return pieces


@lru_cache(maxsize=16)
def _encoded_literals(parts: tuple[str, ...]) -> tuple[tuple[bytes, ...], bool]:
    """The literal pieces encoded (empty at the slots), and whether the last one is not
    empty: then it ends the body, and its final soft break is taken off here, once."""
    pieces = [encode_piece(part) if i % 2 == 0 else b"" for i, part in enumerate(parts)]
    ends_literal = bool(pieces[-1])
    if ends_literal and pieces[-1].endswith(b"=\r\n"):
        pieces[-1] = pieces[-1][:-3]
    return tuple(pieces), ends_literal


def encode_piece(piece: str) -> bytes:
    """`piece` encoded to start a line and end with a line break, soft if it had none."""
    if not piece:
        return b""
    encoded = _encode_lines(piece)
    if not encoded.endswith(b"\n"):
        head, newline, last = encoded.rpartition(b"\n")
        if len(last) < QP_LINE and not last.endswith(_BLANKS):  # room for the soft break
            last += b"="
        else:
            last = _rewrap(last, soft_end=True)
        encoded = head + newline + last + b"\n"
    return encoded.replace(b"\n", b"\r\n")


def encode_text(body: str) -> bytes:
    """`body` as UTF-8 quoted-printable with CRLF line ends, keeping the wire rules.

    Any CR, LF or CRLF in the input is a line break (written CRLF, the canonical form), so
    a reader decodes the same lines whatever the template's line endings were. Lone
    surrogates, which UTF-8 cannot carry, become U+FFFD (as in `hygiene`).
    """
    return _encode_lines(body).replace(b"\n", b"\r\n")


def _encode_lines(body: str) -> bytes:
    """`encode_text` with LF line ends: b2a_qp, then the lines it leaves wrong re-wrapped."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = _SURROGATE_RE.sub("\ufffd", text).encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if not _wrong_lines(encoded):
        return encoded  # the common case for a slot value, and for many a literal
    lines = _HARD_BREAK_RE.split(encoded)
    for index, line in enumerate(lines):
        if _wrong_lines(line):
            lines[index] = _rewrap(line.replace(b"=\n", b""), soft_end=False)
    return b"\n".join(lines)


def _wrong_lines(encoded: bytes) -> bool:
    """Whether a line of b2a_qp's output breaks a wire rule (looked at line by line, which is
    faster than searching the whole text once per mark).

    b2a_qp leaves a "." or "From " at a line start and a blank before its soft breaks, and
    writes 77 or 78 characters when it escapes a blank ending a line at column 74 or 75.
    """
    for line in encoded.split(b"\n"):
        if len(line) > QP_LINE or line.startswith(_BAD_STARTS) or line.endswith(_BAD_ENDS):
            return True
    return False


def _rewrap(content: bytes, *, soft_end: bool) -> bytes:
    """One line's encoded `content` (no line break in it) as lines that keep the wire rules.

    Greedy, a line at a time: a line never ends inside an "=XX" escape; a "." or the "F" of
    a "From " that would start a line is escaped; a blank that would end one is escaped if
    there is room, else it starts the next line. `soft_end`: the last line ends with a soft
    break too (the text goes on in the next piece).
    """
    lines: list[bytes] = []
    start, size = 0, len(content)
    while start < size:
        head = b""
        if content.startswith(_BAD_STARTS, start):
            head = b"=%02X" % content[start]
        body = start + 1 if head else start
        room = QP_LINE - len(head)  # for the rest of the line, soft break included
        if not soft_end and size - body <= room:  # the last line, ending the text's line
            tail = content[body:]
            if not tail.endswith(_BLANKS):
                lines.append(head + tail)
                break
            if size - body + 2 <= room:
                lines.append(head + tail[:-1] + b"=%02X" % tail[-1])
                break
        cut = min(body + room - 1, size)  # room for the soft break
        if cut - 1 >= body and content[cut - 1] == 0x3D:  # never split an escape
            cut -= 1
        elif cut - 2 >= body and content[cut - 2] == 0x3D:
            cut -= 2
        while content[cut - 1] in _BLANK_BYTES:
            if cut - body + 2 <= room - 1:
                break  # room to escape it
            cut -= 1  # no room: the blank starts the next line
        if content[cut - 1] in _BLANK_BYTES:
            lines.append(head + content[body : cut - 1] + b"=%02X=" % content[cut - 1])
        else:
            lines.append(head + content[body:cut] + b"=")
        start = cut
    return b"\n".join(lines)
