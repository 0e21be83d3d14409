"""What an address and a name must be to go on the list; pure, no database.

Shared by every way onto the list: a CSV import, `subscribers add`, a web
sign-up, a test send.
"""

from __future__ import annotations

from email_validator import EmailNotValidError
from email_validator import validate_email as _validate

from newsletter.errors import InputError
from newsletter.hygiene import one_line


def validate_email(address: str) -> str:
    """The normalized form of an address (domain lower-cased), or InputError saying why not.

    Syntax only: no DNS lookups, so imports are fast and work offline; bad
    mailboxes are caught later as bounces. A non-ASCII domain is kept in its
    ASCII (IDNA) form, which every relay accepts; a non-ASCII mailbox name
    needs SMTPUTF8 end to end, which few relays offer, so it is refused here
    rather than failing at send time.
    """
    try:
        result = _validate(address.strip(), check_deliverability=False, allow_smtputf8=False)
        return result.ascii_email or result.normalized
    except EmailNotValidError as exc:
        raise InputError(
            f"{address.strip()!r} is not a valid email address: {exc}",
            hint="check for typos, spaces or a missing part after the @",
        ) from None


def clean_name(raw: str) -> str:
    """A name safe for greetings and headers: control characters gone, spaces collapsed."""
    return one_line(raw)[:200]
