"""The envelope sender that names its delivery: VERP (`bounces+<token>@domain`).

A delivery status notification goes to the envelope sender (MAIL FROM), and many
do not say whom the failed message was for, or say it after an alias expanded
it. So each edition message is sent from its own address: BOUNCE_ADDRESS with a
token after a `+` that names the delivery row, signed so that nobody can mail us
a "bounce" for a delivery of their choosing.

The token is `d<delivery id><mac>`: the letter says what it names (`d`: a row
of `deliveries`; a new kind gets a new letter), the id is decimal, and the mac
is the first MAC_CHARS hex digits (80 bits) of HMAC-SHA256 over `d<id>` under
the BOUNCE key (`tokens.Purpose.BOUNCE`). Only lower-case letters and digits:
some MTAs lower-case local parts, others drop or rewrite punctuation, so the
token is read the same whatever case comes back. At most 1 + 19 + 20 = 40
characters, so with a local part of MAX_BOUNCE_LOCAL_PART the whole stays
within the 64 octets RFC 5321 allows.

Test sends and sign-up confirmations use the plain BOUNCE_ADDRESS: neither has a
delivery row, and neither should count against anyone (a confirmation to a
mistyped address bounces and its sign-up simply expires; a test send goes to an
editor, who sees it fail). Their bounces are set aside as unmatched.

The mac is made with the key derived once per send (no HKDF per message), and
the id is known when the message is made: no database query per message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import cached_property

from newsletter.config import Settings
from newsletter.tokens import Purpose, Signer

MAC_CHARS = 20  # hex digits of the HMAC kept: 80 bits
TOKEN_MAX = 1 + 19 + MAC_CHARS  # the letter, a 63-bit id, the mac (config.MAX_BOUNCE_LOCAL_PART)
_TOKEN = re.compile(rf"d([0-9]{{1,19}})([0-9a-f]{{{MAC_CHARS}}})")


@dataclass(frozen=True)
class BounceAddresses:
    """The VERP envelope senders of one BOUNCE_ADDRESS, and the reading of them back."""

    address: str  # BOUNCE_ADDRESS, lower-case, no '+'
    signer: Signer

    @cached_property
    def _local_domain(self) -> tuple[str, str]:
        local, _, domain = self.address.rpartition("@")
        return local, domain

    @cached_property
    def _keys(self) -> tuple[bytes, ...]:
        return self.signer.keys(Purpose.BOUNCE)

    def for_delivery(self, delivery_id: int) -> str:
        """`local+d<id><mac>@domain`: the envelope sender of this delivery's message."""
        local, domain = self._local_domain
        return f"{local}+{self._token(delivery_id, self._keys[0])}@{domain}"

    def delivery_of(self, address: str) -> int | None:
        """The delivery id a VERP address names, when its token is ours and intact.

        Any case, with or without angle brackets; an address without a token, or
        with one that was altered or is not ours, gives None.
        """
        local, _, domain = address.strip().strip("<>").lower().rpartition("@")
        base, plus, token = local.partition("+")
        if not plus or base != self._local_domain[0] or domain != self._local_domain[1]:
            return None
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        delivery_id = int(match.group(1))
        for key in self._keys:  # the current key, then each previous SECRET_KEY's
            if hmac.compare_digest(self._token(delivery_id, key), token):
                return delivery_id
        return None

    @staticmethod
    def _token(delivery_id: int, key: bytes) -> str:
        value = f"d{delivery_id}"
        return value + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:MAC_CHARS]


def bounce_addresses(settings: Settings, signer: Signer) -> BounceAddresses | None:
    """The VERP addresses of BOUNCE_ADDRESS; None when it is not set (FROM_ADDRESS is sent)."""
    return BounceAddresses(settings.bounce_address, signer) if settings.bounce_address else None


def plain_sender(settings: Settings) -> str:
    """The envelope sender of one-off mail (test sends, confirmations): see the module doc."""
    return settings.bounce_address or settings.from_address
