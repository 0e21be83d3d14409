"""Keys with one purpose each, and sealed tokens for links that act without a login.

An unsubscribe link must work for years, from any mail client, with no cookie;
it must be impossible to forge for someone else's address, and it must not
show the address to whoever reads an access log or a forwarded email. So a
token is the address *encrypted* (AES-SIV, authenticated), with the time it was
issued, under a key that serves that one purpose:

* Every purpose (`Purpose`) gets its own key, derived from SECRET_KEY with
  HKDF-SHA256 and the purpose's name. A confirmation token cannot be replayed
  as an unsubscribe one, a session key says nothing about link keys, and a key
  used for one thing can never be made to sign another.
* PREVIOUS_SECRET_KEYS keeps old links working after SECRET_KEY is rotated:
  tokens are read under the current key first, then each previous one, and are
  always issued under the current one. (RFC 8058 links are clicked months later.)
* AES-SIV is deterministic: the same address and issue time give the same
  token, so a message built twice with the same Date has the same bytes (the
  golden .eml tests, a rebuilt preview). It reveals only that two tokens are
  equal, never what they hold.
* A confirmation token also holds a nonce that the sign-up row stores
  (`signup.py`): only the latest link of a sign-up confirms it, and only once.

Links sent before tokens were sealed (itsdangerous, the address readable in
base64) are still read for unsubscribing, so no unsubscribe link ever sent
stops working; nothing issues them any more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, URLSafeTimedSerializer

from newsletter.config import Settings, require_secret_key
from newsletter.errors import InputError


class Purpose(StrEnum):
    """What a key is for; each has a key of its own (`Signer.key`)."""

    UNSUBSCRIBE = "unsubscribe"  # unsubscribe links and the mailto subject
    CONFIRM = "confirm"  # the link of a sign-up's confirmation email
    SESSION = "session"  # editor sessions (the mark of the password they were opened with)
    FORM = "form"  # CSRF tokens of forms shown before any login
    DEVICE = "device"  # the cookie of a browser an editor logged in from (login throttle)
    METRICS = "metrics"  # reserved: comparing the /metrics token
    BOUNCE = "bounce"  # the VERP token of an envelope sender (`newsletter/bounces/verp.py`)


UNSUBSCRIBE_MAX_AGE = 400 * 24 * 3600  # a year of archived emails, and some
VERSION = "s"  # the first character of every sealed token; a new format gets a new one
NONCE_BYTES = 16
_CLOCK_SKEW = 300  # seconds a token may seem issued in the future (another machine's clock)
_HEADER = struct.Struct(">I")  # the issue time, seconds since 1970, in the sealed plaintext


def derive_key(secret: str, purpose: Purpose | str, length: int = 64) -> bytes:
    """The key of `purpose` from `secret` (HKDF-SHA256; 64 bytes is AES-256-SIV's size)."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=b"newsletter.keys",
        info=f"newsletter/{purpose}".encode(),
    )
    return hkdf.derive(secret.encode())


@dataclass(frozen=True)
class Signer:
    """The keys of SECRET_KEY (and PREVIOUS_SECRET_KEYS, for reading) and the tokens they make."""

    secret_key: str
    previous: Sequence[str] = field(default=())

    @cached_property
    def _secrets(self) -> tuple[str, ...]:
        return (self.secret_key, *(s for s in self.previous if s and s != self.secret_key))

    @cached_property
    def _sivs(self) -> dict[Purpose, tuple[AESSIV, ...]]:
        return {
            purpose: tuple(AESSIV(derive_key(secret, purpose)) for secret in self._secrets)
            for purpose in (Purpose.UNSUBSCRIBE, Purpose.CONFIRM)
        }

    def key(self, purpose: Purpose) -> bytes:
        """The current key of `purpose`, for an HMAC (sessions, forms, device cookies)."""
        return derive_key(self.secret_key, purpose, 32)

    def keys(self, purpose: Purpose) -> tuple[bytes, ...]:
        """The HMAC keys of `purpose` under SECRET_KEY and then each previous one, for
        checking a mac made before a rotation (a bounce arrives days after its message)."""
        return tuple(derive_key(secret, purpose, 32) for secret in self._secrets)

    def mac(self, purpose: Purpose, value: str) -> str:
        """HMAC-SHA256 of `value` under the current key of `purpose`, as hex."""
        return hmac.new(self.key(purpose), value.encode(), hashlib.sha256).hexdigest()

    # Unsubscribe tokens

    def sign(self, purpose: Purpose, email: str, *, issued: datetime | None = None) -> str:
        """A sealed token for `email` (lower-cased), stamped `issued` (naive is UTC) or now.

        A message's links are stamped with its Date, so a message built twice with the
        same Date (a golden test, a rebuilt preview) has the same bytes.
        """
        return self._seal(purpose, email.strip().lower().encode(), issued)

    def read(self, purpose: Purpose, token: str, *, max_age: int) -> str:
        """The address a token was issued for; InputError when forged, altered or expired."""
        if purpose is Purpose.UNSUBSCRIBE and not token.startswith(VERSION) and "." in token:
            return self._read_legacy(token, max_age=max_age)
        return self.read_issued(purpose, token, max_age=max_age)[0]

    def read_issued(self, purpose: Purpose, token: str, *, max_age: int) -> tuple[str, datetime]:
        """(address, time of issue) of a sealed token; InputError when not valid."""
        if not token.startswith(VERSION):
            raise _invalid()
        payload, stamp = self._open(purpose, token, max_age=max_age)
        return _text(payload), datetime.fromtimestamp(stamp, UTC)

    # Confirmation tokens: the address and the nonce its sign-up row holds

    def sign_confirmation(self, email: str, nonce: str, *, issued: datetime | None = None) -> str:
        raw = bytes.fromhex(nonce)
        if len(raw) != NONCE_BYTES:
            raise ValueError(f"a confirmation nonce is {NONCE_BYTES} bytes as hex")
        return self._seal(Purpose.CONFIRM, raw + email.strip().lower().encode(), issued)

    def read_confirmation(self, token: str, *, max_age: int) -> tuple[str, str]:
        """(address, nonce) of a confirmation token; InputError when forged, altered or expired."""
        if not token.startswith(VERSION):
            raise _invalid()
        payload, _ = self._open(Purpose.CONFIRM, token, max_age=max_age)
        if len(payload) <= NONCE_BYTES:
            raise _invalid()
        return _text(payload[NONCE_BYTES:]), payload[:NONCE_BYTES].hex()

    # The sealing

    def _seal(self, purpose: Purpose, payload: bytes, issued: datetime | None) -> str:
        stamp = int(time.time()) if issued is None else _seconds(issued)
        sealed = self._sivs[purpose][0].encrypt(_HEADER.pack(stamp) + payload, [purpose.encode()])
        return VERSION + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def _open(self, purpose: Purpose, token: str, *, max_age: int) -> tuple[bytes, int]:
        body = token[len(VERSION) :]
        if len(body) > 2000:  # no address is this long; refuse before any work
            raise _invalid()
        try:
            padded = body + "=" * (-len(body) % 4)
            sealed = base64.b64decode(padded, altchars=b"-_", validate=True)
        except (ValueError, TypeError):
            raise _invalid() from None
        for siv in self._sivs[purpose]:
            try:
                plain = siv.decrypt(sealed, [purpose.encode()])
            except (InvalidTag, ValueError):
                continue
            if len(plain) < _HEADER.size:
                break
            (stamp,) = _HEADER.unpack_from(plain)
            age = time.time() - stamp
            if age > max_age:
                raise InputError(
                    "this link has expired", where="token", hint="use the link in a newer email"
                )
            if age < -_CLOCK_SKEW:
                break
            return plain[_HEADER.size :], stamp
        raise _invalid()

    def _read_legacy(self, token: str, *, max_age: int) -> str:
        """An unsubscribe link from before sealed tokens (itsdangerous, SECRET_KEY itself)."""
        for secret in self._secrets:
            serializer = URLSafeTimedSerializer(secret, salt="newsletter.unsubscribe")
            try:
                value = serializer.loads(token, max_age=max_age)
            except BadSignature:  # SignatureExpired is one: an expired link is as good as none
                continue
            if isinstance(value, str):
                return value
        raise _invalid()


def signer_for(settings: Settings) -> Signer:
    """The keys of SECRET_KEY (refused when weak) and of PREVIOUS_SECRET_KEYS."""
    return Signer(require_secret_key(settings), settings.previous_secrets)


def _seconds(issued: datetime) -> int:
    return int((issued if issued.tzinfo else issued.replace(tzinfo=UTC)).timestamp())


def _text(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise _invalid() from None


def _invalid() -> InputError:
    return InputError(
        "this link is not valid (it may be incomplete or altered)",
        where="token",
        hint="copy the whole link from the email",
    )


def unsubscribe_links(
    signer: Signer, *, base_url: str, mailto: str, email: str, issued: datetime | None = None
) -> tuple[str, str]:
    """The https and mailto unsubscribe URIs of one recipient (RFC 2369 / RFC 8058)."""
    token = signer.sign(Purpose.UNSUBSCRIBE, email, issued=issued)
    return f"{base_url}/unsubscribe/{token}", f"mailto:{mailto}?subject=unsubscribe%20{token}"
