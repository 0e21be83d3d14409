"""The names the DNS checks ask about, from the settings: From's domain, the bounce
(envelope sender) domain, and each DKIM key with its selector and domain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.config import ENV_PREFIX, Settings


@dataclass(frozen=True)
class SigningKey:
    """One configured DKIM key: where it is published and which setting names it."""

    path: Path
    kind: str  # "rsa" or "ed25519", as dkim.read_private_key takes it
    selector: str
    setting: str  # e.g. NEWSLETTER_DKIM_PRIVATE_KEY, for the findings' fixes


@dataclass(frozen=True)
class MailDomains:
    """The names the checks ask about, from the settings."""

    from_address: str
    from_domain: str
    bounce_address: str  # the envelope sender: BOUNCE_ADDRESS, or FROM_ADDRESS without it
    bounce_domain: str
    bounce_set: bool
    dkim_keys: tuple[SigningKey, ...]  # RSA first, then the optional Ed25519 one
    dkim_domain: str

    @property
    def signed(self) -> bool:
        return bool(self.dkim_keys)

    @classmethod
    def of(cls, settings: Settings) -> MailDomains:
        bounce = settings.bounce_address.strip()
        keys = []
        if settings.dkim_private_key is not None:
            keys.append(SigningKey(settings.dkim_private_key, "rsa", settings.dkim_selector,
                                   f"{ENV_PREFIX}DKIM_PRIVATE_KEY"))  # fmt: skip
        if settings.dkim_ed25519_key is not None:
            keys.append(SigningKey(settings.dkim_ed25519_key, "ed25519",
                                   settings.dkim_ed25519_selector,
                                   f"{ENV_PREFIX}DKIM_ED25519_KEY"))  # fmt: skip
        envelope = bounce or settings.from_address
        return cls(
            from_address=settings.from_address,
            from_domain=settings.sender_domain.lower(),
            bounce_address=envelope,
            bounce_domain=envelope.rsplit("@", 1)[-1].lower(),
            bounce_set=bool(bounce),
            dkim_keys=tuple(keys),
            dkim_domain=settings.dkim_signing_domain,
        )
