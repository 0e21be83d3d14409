"""Signed tokens for links that act on a subscriber without a login.

An unsubscribe link must work for years, from any mail client, with no cookie;
it must also be impossible to forge for someone else's address. The token
carries the subscriber's address, signed with SECRET_KEY and a purpose-specific
salt (so a confirmation token can never be replayed as an unsubscribe one),
plus the time it was issued so old tokens can be refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from newsletter.errors import InputError


class Purpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    CONFIRM = "confirm"


UNSUBSCRIBE_MAX_AGE = 400 * 24 * 3600  # a year of archived emails, and some


@dataclass(frozen=True)
class Signer:
    secret_key: str

    def _serializer(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret_key, salt=f"newsletter.{purpose}")

    def sign(self, purpose: Purpose, email: str, *, issued: datetime | None = None) -> str:
        """A token for `email`, stamped `issued` (naive is UTC) or now.

        A message's links are stamped with its Date, so a message built twice with the
        same Date (a golden test, a rebuilt preview) has the same bytes.
        """
        if issued is None:
            serializer = self._serializer(purpose)
        else:
            stamp = int((issued if issued.tzinfo else issued.replace(tzinfo=UTC)).timestamp())
            serializer = URLSafeTimedSerializer(
                self.secret_key,
                salt=f"newsletter.{purpose}",
                signer=_StampedSigner,
                signer_kwargs={"stamp": stamp},
            )
        return serializer.dumps(email.strip().lower())

    def read(self, purpose: Purpose, token: str, *, max_age: int) -> str:
        """The address a token was issued for; InputError when forged, altered or expired."""
        try:
            value = self._serializer(purpose).loads(token, max_age=max_age)
        except SignatureExpired:
            raise InputError(
                "this link has expired", where="token", hint="use the link in a newer email"
            ) from None
        except BadSignature:
            raise InputError(
                "this link is not valid (it may be incomplete or altered)",
                where="token",
                hint="copy the whole link from the email",
            ) from None
        if not isinstance(value, str):
            raise InputError("this link is not valid", where="token")
        return value


class _StampedSigner(TimestampSigner):
    """itsdangerous' timestamp signer with a given time instead of the clock's."""

    def __init__(self, *args: Any, stamp: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamp = stamp

    def get_timestamp(self) -> int:
        return self._stamp


def unsubscribe_links(
    signer: Signer, *, base_url: str, mailto: str, email: str, issued: datetime | None = None
) -> tuple[str, str]:
    """The https and mailto unsubscribe URIs of one recipient (RFC 2369 / RFC 8058)."""
    token = signer.sign(Purpose.UNSUBSCRIBE, email, issued=issued)
    return f"{base_url}/unsubscribe/{token}", f"mailto:{mailto}?subject=unsubscribe%20{token}"
