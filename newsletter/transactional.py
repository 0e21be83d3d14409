"""One-off messages someone asked for (a sign-up's confirmation): headers and body bytes.

Not `message.build_message`: that builder is the bulk edition's and always adds
List-Id, List-Unsubscribe and `Precedence: bulk`, which do not belong on a
message a person just asked for. But the header lines come from the same
injection-proof code (`headers.py`: every value cleaned, names and subjects
encoded, addresses and Message-IDs checked against strict patterns), never from
`email.message`'s folding, which once dropped the quotes of a long display name
and turned its tail into a second recipient.

The message, in order:

    DKIM-Signature (when a key is set: `dkim.py`),
    From, To (the address alone), Subject, Date, Message-ID,
    Feedback-ID: <kind>:<list-id>:transactional:<sender> (a stream of its own, so
        complaints about one-off mail are counted apart from the editions'),
    Auto-Submitted: auto-generated (RFC 3834: vacation responders stay quiet),
    MIME-Version,
    Content-Type: multipart/alternative  ─┬─ text/plain; charset="utf-8", quoted-printable
                                           └─ text/html;  charset="utf-8", quoted-printable

`To` carries no display name on purpose: whoever fills a form may type anything
as a name, and a message sent on a stranger's word must carry no text of theirs.
"""

from __future__ import annotations

from datetime import datetime

from newsletter.config import Settings
from newsletter.dkim import Dkim, dkim_for
from newsletter.headers import (
    ADDRESS_RE,
    MAX_ADDRESS,
    address_header,
    checked,
    from_header,
    subject_header,
)
from newsletter.message import (
    checked_boundary,
    checked_message_id,
    date_header,
    feedback_id_header,
)
from newsletter.quoted_printable import encode_text

_PART = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'


def transactional_message(
    settings: Settings,
    *,
    to: str,
    subject: str,
    text: str,
    html: str,
    kind: str,
    date: datetime | None = None,
    message_id: str | None = None,
    boundary: str | None = None,
    dkim: Dkim | None = None,
    timestamp: int | None = None,
) -> bytes:
    """The message to the address `to`, ready for SMTP DATA (CRLF line ends, ASCII).

    `kind` names the one-off mail ("confirmation") in its Feedback-ID. The message is
    signed by `dkim` (default: the settings' keys, `dkim.dkim_for`; none set, none
    signs). `date` (naive is UTC), `message_id` (angle brackets optional), `boundary`
    and the signature's `timestamp` default to now and fresh random ones; golden tests
    give them. Raises
    InputError when the address, the Message-ID or the boundary cannot be written
    safely; ConfigError (from `headers.from_header`) for an unusable FROM_ADDRESS.
    """
    where = f"recipient {to!r}"
    address = checked(to, "email address", ADDRESS_RE, MAX_ADDRESS, where)
    message_id = checked_message_id(message_id, settings.sender_domain, where)
    boundary = checked_boundary(boundary, where)
    head = "\r\n".join(
        (
            from_header(settings.from_name, settings.from_address),
            address_header("To", "", address),
            subject_header(subject),
            date_header(date),
            f"Message-ID: {message_id}",
            feedback_id_header(settings, kind, "transactional"),
            "Auto-Submitted: auto-generated",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"',
            "",
            f"--{boundary}",
            _PART.format("plain"),
            "",
        )
    )
    data = b"".join(
        (
            head.encode("ascii"),
            encode_text(text),
            f"\r\n--{boundary}\r\n{_PART.format('html')}\r\n".encode("ascii"),
            encode_text(html),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )
    return (dkim if dkim is not None else dkim_for(settings)).sign(data, timestamp=timestamp)
