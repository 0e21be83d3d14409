"""The names the DNS checks ask about, from the settings: From's domain, the bounce
(envelope sender) domain, and the DKIM key, selector and domain.

NEWSLETTER_BOUNCE_ADDRESS and the NEWSLETTER_DKIM_* settings are read with getattr:
they come with the bounce and signing work of the same issue, and until then the
envelope sender is FROM_ADDRESS and nothing is signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.config import Settings


@dataclass(frozen=True)
class MailDomains:
    """The names the checks ask about, from the settings."""

    from_address: str
    from_domain: str
    bounce_address: str  # the envelope sender: BOUNCE_ADDRESS, or FROM_ADDRESS without it
    bounce_domain: str
    bounce_set: bool
    dkim_key: Path | None
    dkim_selector: str
    dkim_domain: str

    @classmethod
    def of(cls, settings: Settings) -> MailDomains:
        bounce = _setting(settings, "bounce_address")
        key = _setting(settings, "dkim_private_key")
        return cls(
            from_address=settings.from_address,
            from_domain=settings.sender_domain.lower(),
            bounce_address=bounce or settings.from_address,
            bounce_domain=(bounce or settings.from_address).rsplit("@", 1)[-1].lower(),
            bounce_set=bool(bounce),
            dkim_key=Path(key).expanduser() if key else None,
            dkim_selector=_setting(settings, "dkim_selector"),
            dkim_domain=(_setting(settings, "dkim_domain") or settings.sender_domain).lower(),
        )


def _setting(settings: Settings, name: str) -> str:
    """A setting that may not exist yet in this version, as text ("" when unset)."""
    value = getattr(settings, name, None)
    if value is None:
        return ""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return str(value).strip()
