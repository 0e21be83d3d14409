"""Typed settings, read once from the environment and `.env`, then passed down.

Every key is `NEWSLETTER_<NAME>` and is documented in `.env.example`. A bad
value stops the program with one line naming the key and what is allowed,
rather than a pydantic traceback.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsletter.errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"

#: The shipped postal address: a placeholder no real newsletter may send with.
PLACEHOLDER_POSTAL_ADDRESS = "The Daily Brief, 1 Example Street, Springfield"


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    TEXT = "text"  # one `key=value` line per event
    JSON = "json"  # one JSON object per line


# A VERP local part is `local+<token>`, the token at most 40 characters (bounces/verp.py),
# and a local part is at most 64 octets (RFC 5321 §4.5.3.1.1).
MAX_BOUNCE_LOCAL_PART = 64 - 1 - 40


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,  # `KEY=` in .env means "use the default"
    )

    # Where things are
    database_url: str = "sqlite:///var/newsletter.db"
    articles_source: str = "articles/"
    # None: the templates built into the package; a folder overrides them file by file.
    templates_dir: Path | None = None

    # The relay
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    smtp_timeout: float = Field(30.0, gt=0)
    smtp_pipelining: bool = True  # use ESMTP PIPELINING when the relay offers it
    smtp_chunking: bool = True  # send messages as BDAT when the relay offers CHUNKING too
    # messages in hand per connection, from the claim to the record: with CHUNKING up to
    # this many are on the wire at once. The crash bound is CONCURRENCY x PIPELINE_WINDOW.
    pipeline_window: int = Field(8, ge=1, le=64)
    smtp_ca_file: Path | None = None  # trust this CA (a private relay's); default: the system's

    # Who it is from and what it is called
    from_address: str = "newsletter@example.com"
    from_name: str = "The Daily Brief"
    name: str = "The Daily Brief"
    postal_address: str = PLACEHOLDER_POSTAL_ADDRESS
    language: str = "en"
    subject_template: str = "{name} — {date:%A %-d %B %Y}: {lead}"
    base_url: str = "http://127.0.0.1:8000"
    # No default: a built-in secret would be public, and anyone could sign an editor session
    # or an unsubscribe link with it. `require_secret_key` refuses a missing or weak one.
    secret_key: SecretStr | None = None
    # After rotating SECRET_KEY: the old ones (comma- or space-separated), so links in
    # emails already sent (unsubscribe above all) keep working. Nothing is signed with them.
    previous_secret_keys: SecretStr = SecretStr("")
    unsubscribe_mailto: str = ""  # default: unsubscribe@<domain of FROM_ADDRESS>
    editor_password: SecretStr = SecretStr("")  # empty: the editor pages refuse every login
    signup_expiry_hours: int = Field(48, ge=1)  # unconfirmed sign-ups are forgotten after this

    # Editor sessions and the login throttle (web/sessions.py, web/editor_auth.py)
    editor_session_hours: float = Field(12.0, gt=0, le=24 * 31)  # from login; never slides
    login_attempts_per_client: int = Field(10, ge=1)  # per address (or device) per window
    login_attempts_overall: int = Field(30, ge=1)  # all clients without a device cookie
    login_window_minutes: float = Field(10.0, gt=0)

    # Sign-up limits (`newsletter/signup.py`, counted in `store/signup_limits.py`): sign-ups
    # let through per SIGNUP_LIMIT_WINDOW seconds from one client address (an IPv6 /64
    # counts as one), to one recipient domain, and overall. Past one, the form answers 429.
    signup_limit_per_client: int = Field(5, ge=1)
    signup_limit_per_domain: int = Field(20, ge=1)
    signup_limit_total: int = Field(100, ge=1)
    signup_limit_window: int = Field(3600, ge=60, le=86400)

    # When and how fast
    send_time: str = "07:00"
    timezone: str = "UTC"
    concurrency: int = Field(4, ge=1, le=200)
    rate_limit: float = Field(0.0, ge=0)
    misfire_grace_time: int = Field(6 * 3600, ge=1)
    fail_on_empty: bool = False
    max_attempts: int = Field(5, ge=1, le=50)
    retry_delay: float = Field(30.0, ge=0)  # first backoff; doubles each attempt
    retry_window: float = Field(3600.0, gt=0)  # give up on a message (or a down relay) after this
    lease_seconds: int = Field(300, ge=1)
    # A send waits this long for a database that is locked or restarting, then stops.
    store_retry_window: float = Field(120.0, gt=0)
    bounce_limit: int = Field(3, ge=1)  # hard bounces, across editions, before `bounced`

    # Bounces that arrive later (`newsletter/bounces/`, `newsletter bounces`). BOUNCE_ADDRESS
    # is the envelope sender (MAIL FROM): each edition message goes out from its VERP form
    # `local+<token>@domain`, the token naming the delivery; empty: FROM_ADDRESS, no VERP.
    # Soft bounces (mailbox full, 4.x.x given up on) make a subscriber `bounced` at
    # SOFT_BOUNCE_LIMIT of them within SOFT_BOUNCE_WINDOW_DAYS; hard ones count to BOUNCE_LIMIT.
    bounce_address: str = ""
    soft_bounce_limit: int = Field(5, ge=1)
    soft_bounce_window_days: int = Field(30, ge=1, le=3650)
    # The password of `newsletter bounces --imap URL` when the URL has none, so it stays out
    # of the command line (which every user of the machine can read in `ps`).
    bounce_imap_password: SecretStr = SecretStr("")
    log_level: LogLevel = LogLevel.WARNING
    log_format: LogFormat = LogFormat.TEXT
    max_articles: int = Field(20, ge=1)

    # Behind a reverse proxy: the addresses or networks (comma-separated) whose
    # X-Forwarded-For and X-Forwarded-Proto are believed; empty: nobody's are.
    trusted_proxies: str = ""

    # The web server (`newsletter serve`, newsletter/web/server.py): a client gets this long
    # to send a request's headers (from connecting, or from the end of the last response)
    # and then its body, an idle keep-alive connection is closed after its timeout, and
    # connections beyond the maximum are answered 503 and closed at once.
    http_header_timeout: float = Field(10.0, gt=0, le=300)
    http_body_timeout: float = Field(10.0, gt=0, le=300)
    http_keepalive_timeout: float = Field(5.0, gt=0, le=300)
    # 1000: each connection is a file descriptor and a few KB; two cores serve a few
    # hundred of these pages a second, so more open at once only queue; the proxy in front
    # keeps far fewer. Lowered at start when the open-files limit allows less.
    http_max_connections: int = Field(1000, ge=1, le=100_000)
    # When set, /metrics answers only `Authorization: Bearer <token>`; empty: anyone
    # who reaches it (then keep it behind the proxy's access rules).
    metrics_token: SecretStr = SecretStr("")

    # DKIM signing and the feedback headers (newsletter/dkim.py; message.py, transactional.py).
    # A key set: every message is signed with it (relaxed/relaxed), published at
    # <selector>._domainkey.<DKIM_DOMAIN>. The keys are read once, when settings load.
    dkim_private_key: Path | None = None  # PEM, RSA (2048 bits advised); empty: no signing
    dkim_selector: str = ""
    dkim_ed25519_key: Path | None = None  # PEM, Ed25519 (RFC 8463): a second signature
    dkim_ed25519_selector: str = ""
    dkim_domain: str = ""  # the d= domain; empty: the From domain (DMARC alignment)
    # Complaint feedback loop address (RFC 9477) on editions; needs a DKIM key.
    cfbl_address: str = ""
    # The right-most Feedback-ID field (Gmail's SenderId, 5 to 15 characters); empty:
    # made from the From domain.
    feedback_sender_id: str = ""

    # The DNS checks of `newsletter doctor` (newsletter/doctor/dns_*.py): the resolver
    # asked, as an IP address with an optional port (`127.0.0.1:5353`, `[::1]:53`);
    # empty: the system's (/etc/resolv.conf). Each lookup gets DNS_TIMEOUT seconds; one
    # that goes unanswered is a warning naming the resolver, and the rest are not asked.
    dns_resolver: str = ""
    dns_timeout: float = Field(5.0, gt=0, le=60)

    # A sender's health (store/health.py, app/health.py). A send pauses itself (the rest
    # stays queued; `newsletter send` resumes) when, once PAUSE_AFTER of an edition's
    # messages have a final answer, more than PAUSE_HARD_BOUNCE_RATE of them hard-bounced.
    # The scheduler starts no new edition while the 30-day complaint rate is above
    # MAX_COMPLAINT_RATE. A rate of 1 turns its check off.
    pause_hard_bounce_rate: float = Field(0.05, ge=0, le=1)
    pause_after: int = Field(1000, ge=1)
    max_complaint_rate: float = Field(0.001, ge=0, le=1)

    # Provider webhooks (newsletter/web/webhooks.py: POST /webhooks/<provider>). A provider
    # whose settings are empty is off (its URL answers 404). SES: the SNS topic ARNs we
    # subscribed (comma-separated; any AWS account can point a topic at our URL, so none
    # set means SES is off). Mailgun: the webhook signing key. Postmark: the basic-auth
    # user and password put in the webhook URL. SendGrid: the signed event webhook's
    # verification key (base64, as its settings page shows it).
    ses_topic_arns: str = ""
    mailgun_signing_key: SecretStr = SecretStr("")
    postmark_webhook_user: str = ""
    postmark_webhook_password: SecretStr = Field(SecretStr(""), validate_default=True)
    sendgrid_public_key: str = ""

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("send_time")
    @classmethod
    def _send_time(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?", value):
            raise ValueError("must be HH:MM on a 24-hour clock, e.g. 07:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name, e.g. Europe/Paris or UTC") from None
        return value

    @field_validator("from_address")
    @classmethod
    def _from_address(cls, value: str) -> str:
        if not re.fullmatch(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+", value):
            raise ValueError("must be a plain address like news@example.com")
        return value

    @field_validator("bounce_address")
    @classmethod
    def _bounce_address(cls, value: str) -> str:
        value = value.strip().lower()  # some MTAs lower-case local parts: so do we
        if not value:
            return value
        local = value.rsplit("@", 1)[0]
        if not re.fullmatch(r"[a-z0-9._-]+@[a-z0-9-]+(\.[a-z0-9-]+)+", value):
            raise ValueError(
                "must be a plain lower-case address like bounces@news.example.com "
                "(no '+': the VERP token goes after one)"
            )
        if len(local) > MAX_BOUNCE_LOCAL_PART:
            raise ValueError(
                f"its local part {local!r} is over {MAX_BOUNCE_LOCAL_PART} characters: with "
                "the VERP token it would pass the 64 an address's local part may have"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not re.match(r"https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://news.example.com")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        for item in _split(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network; list them comma-separated, "
                    "e.g. 127.0.0.1 or 10.0.0.0/8,::1"
                ) from None
        return value

    @field_validator("dns_resolver")
    @classmethod
    def _dns_resolver(cls, value: str) -> str:
        if value.strip():
            dns_resolver_address(value)  # ValueError names the form
        return value.strip()

    @field_validator("ses_topic_arns")
    @classmethod
    def _ses_topic_arns(cls, value: str) -> str:
        for item in _split(value):
            if not _SNS_TOPIC_ARN.fullmatch(item):
                raise ValueError(
                    f"{item[:80]!r} is not an SNS topic ARN; list them comma-separated, e.g. "
                    "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"
                )
        return value.strip()

    @field_validator("mailgun_signing_key")
    @classmethod
    def _mailgun_signing_key(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value().strip()
        if key and not re.fullmatch(r"[A-Za-z0-9_-]{16,200}", key):
            raise ValueError(
                "must be the HTTP webhook signing key Mailgun shows (letters, digits, '-', "
                "at least 16 characters), not the API key's name or a URL"
            )
        return SecretStr(key)

    @field_validator("postmark_webhook_password")
    @classmethod
    def _postmark_webhook(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        user = str(info.data.get("postmark_webhook_user") or "")
        password = value.get_secret_value()
        if bool(user) != bool(password):
            raise ValueError(
                "must be set together with NEWSLETTER_POSTMARK_WEBHOOK_USER (both, or neither)"
            )
        if ":" in user or not re.fullmatch(r"[!-~]*", user + password):
            raise ValueError(
                "the Postmark webhook user may not hold ':', and neither it nor the password "
                "spaces or non-ASCII characters (they go into https://user:password@… URLs)"
            )
        if password and len(password) < 16:
            raise ValueError("must be at least 16 characters: anyone may try it against the URL")
        return value

    @field_validator("sendgrid_public_key")
    @classmethod
    def _sendgrid_public_key(cls, value: str) -> str:
        key = "".join(value.split())
        if not key:
            return key
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            loaded = serialization.load_der_public_key(base64.b64decode(key, validate=True))
        except (ValueError, binascii.Error):
            loaded = None
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise ValueError(
                "must be the signed event webhook's verification key as SendGrid shows it "
                "(base64 of an ECDSA public key, starting MFkw…)"
            )
        return key

    @field_validator("subject_template")
    @classmethod
    def _subject_template(cls, value: str) -> str:
        try:
            value.format(name="n", date=dt.date(2026, 1, 1), lead="l", count=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"cannot be formatted ({exc}); use the fields {{name}}, {{date:%Y-%m-%d}}, "
                "{lead} and {count}"
            ) from None
        return value

    @field_validator("dkim_private_key", "dkim_ed25519_key", mode="before")
    @classmethod
    def _dkim_key_blank(cls, value: object) -> object:
        # `NEWSLETTER_DKIM_PRIVATE_KEY=` (as .env.example has it) means no key, not Path(".")
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dkim_private_key", "dkim_ed25519_key")
    @classmethod
    def _dkim_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None or not str(value).strip():
            return None
        from newsletter.dkim import read_private_key  # the key is read once, here

        kind = "rsa" if info.field_name == "dkim_private_key" else "ed25519"
        if kind == "ed25519" and info.data.get("dkim_private_key") is None:
            raise ValueError(
                f"Ed25519 is a second signature: set {ENV_PREFIX}DKIM_PRIVATE_KEY (RSA) too, "
                "since most receivers do not check Ed25519 yet and would see the mail unsigned"
            )
        setting = ENV_PREFIX + str(info.field_name).upper()
        try:
            read_private_key(Path(value), kind, setting)
        except ConfigError as exc:
            raise ValueError(f"{exc.message}; {exc.hint}") from None
        return Path(value)

    @field_validator("dkim_selector", "dkim_ed25519_selector")
    @classmethod
    def _dkim_selector(cls, value: str, info: ValidationInfo) -> str:
        key = "dkim_private_key" if info.field_name == "dkim_selector" else "dkim_ed25519_key"
        if info.data.get(key) is None:
            return value
        if not value:
            raise ValueError(
                f"must be set when {ENV_PREFIX}{key.upper()} is: the name the public key is "
                "published under (<selector>._domainkey.<domain>), e.g. news2026"
            )
        if not _DNS_NAME_RE.fullmatch(value):
            raise ValueError("must be a DNS label (letters, digits, '-', '.'), e.g. news2026")
        if info.field_name == "dkim_ed25519_selector" and value == info.data.get("dkim_selector"):
            raise ValueError(
                f"must differ from {ENV_PREFIX}DKIM_SELECTOR: one TXT record holds one key"
            )
        return value

    @field_validator("dkim_domain")
    @classmethod
    def _dkim_domain(cls, value: str) -> str:
        if value and not _DNS_NAME_RE.fullmatch(value):
            raise ValueError("must be a plain ASCII domain (the From domain, or a parent of it)")
        return value.lower()

    @field_validator("cfbl_address")
    @classmethod
    def _cfbl_address(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return value
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+", value):
            raise ValueError("must be a plain address like fbl@news.example.com")
        if info.data.get("dkim_private_key") is None and info.data.get("dkim_ed25519_key") is None:
            raise ValueError(
                f"needs {ENV_PREFIX}DKIM_PRIVATE_KEY: RFC 9477 asks that CFBL-Address be "
                "covered by a DKIM signature of its domain"
            )
        domain = value.rsplit("@", 1)[1].lower()
        from_domain = str(info.data.get("from_address", "@")).rsplit("@", 1)[1].lower()
        signing = info.data.get("dkim_domain") or from_domain
        if not _aligned(domain, signing):
            raise ValueError(
                f"is at {domain}, which the DKIM signature (d={signing}) does not cover: use "
                "an address at that domain or a subdomain of it (RFC 9477 §3.1)"
            )
        return value

    @field_validator("feedback_sender_id")
    @classmethod
    def _feedback_sender_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9._-]{5,15}", value):
            raise ValueError(
                "must be 5 to 15 letters, digits, '.', '_' or '-' (Gmail's SenderId), "
                "e.g. dailybrief"
            )
        return value

    # Derived values, so the rest of the code never re-parses settings

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sender_domain(self) -> str:
        return self.from_address.rsplit("@", 1)[1]

    @property
    def unsubscribe_address(self) -> str:
        return self.unsubscribe_mailto or f"unsubscribe@{self.sender_domain}"

    @property
    def list_id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "newsletter"
        return f"{slug}.{self.sender_domain}"

    @property
    def dkim_signing_domain(self) -> str:
        """DKIM_DOMAIN, or the From domain: the d= of every signature."""
        return self.dkim_domain or self.sender_domain.lower()

    @property
    def feedback_sender(self) -> str:
        """FEEDBACK_SENDER_ID, or one made from the From domain: its letters and digits,
        at most 15 (Gmail wants 5 to 15 characters, the same for the whole stream)."""
        if self.feedback_sender_id:
            return self.feedback_sender_id
        made = re.sub(r"[^a-z0-9]", "", self.sender_domain.lower())
        return (made if len(made) >= 5 else made + "-mail")[:15]

    @property
    def ses_topics(self) -> tuple[str, ...]:
        """SES_TOPIC_ARNS as a list: the SNS topics whose messages the SES webhook takes."""
        return tuple(_split(self.ses_topic_arns))

    @property
    def previous_secrets(self) -> tuple[str, ...]:
        """PREVIOUS_SECRET_KEYS as a list, for reading tokens issued before a rotation."""
        return tuple(_split(self.previous_secret_keys.get_secret_value().replace(" ", ",")))

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """TRUSTED_PROXIES parsed: a bare address is a network of one."""
        items = _split(self.trusted_proxies)
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)

    @property
    def send_clock(self) -> tuple[int, int, int]:
        """SEND_TIME as (hour, minute, second); seconds are optional in the setting."""
        hour, minute, second = (self.send_time + ":00").split(":")[:3]
        return int(hour), int(minute), int(second)

    def today(self) -> dt.date:
        """Today in the newsletter's time zone, the default date of every command."""
        return dt.datetime.now(self.zone).date()


_SNS_TOPIC_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}")
_DNS_NAME_RE = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _aligned(domain: str, signing: str) -> bool:
    """`domain` is the DKIM d= domain or under it, or d= is under `domain` (the relaxed
    alignment of RFC 9477 §3.1, short of a Public Suffix List)."""
    return domain == signing or domain.endswith("." + signing) or signing.endswith("." + domain)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def dns_resolver_address(value: str) -> tuple[str, int]:
    """DNS_RESOLVER as (address, port): `host`, `host:port`, `[v6]` or `[v6]:port`.

    An IP address, not a name: the resolver is what turns names into addresses.
    """
    text = value.strip()
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if bracketed:
        host, port = bracketed[1], bracketed[2] or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "53"  # an IPv4 address, or a bare IPv6 one
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(_DNS_RESOLVER_FORM) from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(_DNS_RESOLVER_FORM)
    return address, int(port)


_DNS_RESOLVER_FORM = (
    "must be an IP address with an optional port, e.g. 127.0.0.1, 127.0.0.1:5353 or [::1]:53"
)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning the first invalid value into a one-line ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    key = ENV_PREFIX + str(error["loc"][0]).upper() if error["loc"] else ENV_PREFIX
    message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
    return ConfigError(f"{message}{shown}", where=key, hint="fix it in .env or the environment")


# --- the secret, and the placeholders no real send may carry -------------------------------
#
# Checked where they matter, not when settings load: `newsletter articles` or `preview` need
# no secret and may run on the shipped placeholders. `serve`, `send`, `run` and `inbound`
# refuse to start without a usable secret (`require_secret_key`); every send and
# `newsletter doctor` apply `check_settings`, the one rule for placeholders and https.

#: Secrets that were ever shipped as examples: public, so never accepted, however long.
PLACEHOLDER_SECRETS = frozenset({"change-me-to-a-long-random-string"})
#: `newsletter init` writes 43 random characters (`secrets.token_urlsafe(32)`).
MIN_SECRET_LENGTH = 32
#: Fewer distinct characters than this is a typed pattern ("aaaa…", "0123…0123"), not random.
MIN_SECRET_DISTINCT = 10

#: Names reserved for documentation and testing (RFC 2606, RFC 6761): no mail is ever
#: delivered to or accepted from them, and no one outside can reach a link to them.
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_TOP_LEVEL = ("example", "test", "invalid", "localhost")
TEST_NAMES = RESERVED_DOMAINS + RESERVED_TOP_LEVEL  # each a name, or the end of one after "."

_SECRET_FIX = "run `newsletter init`, which writes a fresh one to .env"


class Severity(StrEnum):
    OK = "ok"  # a check passed (doctor's lines)
    INFO = "info"  # worth knowing, nothing to fix
    WARNING = "warning"  # works, but should be fixed before it matters
    ERROR = "error"  # a real send is refused until it is fixed


@dataclass(frozen=True)
class Finding:
    """One result of a check: how bad, what it is about (a setting or a check), and the fix."""

    severity: Severity
    subject: str  # NEWSLETTER_FROM_ADDRESS, or a check's name: relay, database, site
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}" + (f" ({self.fix})" if self.fix else "")


def secret_key_problem(secret: SecretStr | None) -> str | None:
    """Why SECRET_KEY cannot sign anything, or None when it can."""
    if secret is None or not secret.get_secret_value():
        return "is not set"
    value = secret.get_secret_value()
    if value in PLACEHOLDER_SECRETS:
        return "is the placeholder from .env.example, which anyone can read"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is {len(value)} characters long; it must be at least {MIN_SECRET_LENGTH}"
    if len(set(value)) < MIN_SECRET_DISTINCT:
        return f"has only {len(set(value))} different characters; it must be random"
    return None


def require_secret_key(settings: Settings) -> str:
    """SECRET_KEY for signing, or ConfigError naming the key and `newsletter init`.

    Everything that signs or checks a token (editor sessions, unsubscribe and
    confirmation links) gets its key here, so a weak key can sign nothing.
    """
    problem = secret_key_problem(settings.secret_key)
    if problem is not None:
        raise ConfigError(problem, where=f"{ENV_PREFIX}SECRET_KEY", hint=_SECRET_FIX)
    assert settings.secret_key is not None
    return settings.secret_key.get_secret_value()


def is_loopback_host(host: str) -> bool:
    """This machine: `localhost` (and `*.localhost`) or a loopback address, by name only."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_test_host(host: str) -> bool:
    """A loopback host or a name reserved for testing (RFC 2606, RFC 6761)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if is_loopback_host(name):
        return True
    return any(name == d or name.endswith("." + d) for d in RESERVED_DOMAINS) or any(
        name == t or name.endswith("." + t) for t in RESERVED_TOP_LEVEL
    )


def url_host(url: str) -> str:
    """The host of an http(s) URL ("[::1]" as "::1"), without port or credentials."""
    authority = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.split(":", 1)[0]


def is_trial(settings: Settings, *, real_recipient: str | None = None) -> bool:
    """Whether a send stays a trial: the relay on this machine and every name a test one.

    A trial is the demo, the tests, a local preview against `newsletter capture`:
    the relay is loopback, and BASE_URL, the sender and every recipient are
    loopback or reserved names, so nobody outside could receive the mail or
    follow its links. A site left as `init` wrote it, relaying through the
    Postfix on this machine (`localhost` is the default relay) to a list of real
    people is not a trial: `real_recipient` is one address of the list outside
    the reserved names (`app.check_sending` looks it up), or None when there is
    none. Anything else is a send in earnest, and there every placeholder is an
    error.
    """
    return (
        real_recipient is None
        and is_loopback_host(settings.smtp_host)
        and is_test_host(url_host(settings.base_url))
        and is_test_host(settings.sender_domain)
    )


def check_settings(settings: Settings, *, real_recipient: str | None = None) -> tuple[Finding, ...]:
    """The one rule for what a send may go out with: the secret, placeholders, https.

    `real_recipient`: an address of the list outside the reserved names, if any
    (see `is_trial`); the caller looks it up, so the rule itself reads no store.

    A weak or missing secret is always an error. The placeholders (a sender in a
    reserved domain, the shipped postal address, a BASE_URL nobody outside can
    reach or one without https) are errors in earnest and warnings in a trial
    (`is_trial`). `prepare_send` refuses on any error; `newsletter doctor` lists
    them all; dry runs and test sends only warn.
    """
    findings: list[Finding] = []
    secret = secret_key_problem(settings.secret_key)
    if secret is not None:
        findings.append(Finding(Severity.ERROR, f"{ENV_PREFIX}SECRET_KEY", secret, _SECRET_FIX))
    trial = is_trial(settings, real_recipient=real_recipient)
    level = Severity.WARNING if trial else Severity.ERROR
    if not trial and is_trial(settings):
        findings.append(
            Finding(
                Severity.INFO,
                "subscribers",
                f"the list holds real addresses (such as {real_recipient}): this is a real "
                "send through the relay on this machine, not a trial",
            )
        )

    def placeholder(key: str, message: str, fix: str) -> None:
        findings.append(Finding(level, ENV_PREFIX + key, message, fix))

    if is_test_host(settings.sender_domain):
        placeholder(
            "FROM_ADDRESS",
            f"{settings.from_address} is in a domain reserved for examples "
            f"({settings.sender_domain}): mail from it is rejected or lost",
            "set it to an address at your own domain",
        )
    if settings.unsubscribe_mailto and is_test_host(settings.unsubscribe_address.rsplit("@")[-1]):
        placeholder(
            "UNSUBSCRIBE_MAILTO",
            f"{settings.unsubscribe_address} is in a domain reserved for examples: "
            "mailto: unsubscribes would never arrive",
            "set it to an address that delivers to `newsletter inbound`, or leave it empty",
        )
    if settings.postal_address == PLACEHOLDER_POSTAL_ADDRESS:
        placeholder(
            "POSTAL_ADDRESS",
            "is the shipped placeholder; the law (CAN-SPAM, CASL) asks for your real "
            "postal address in every email",
            "set it to your postal address",
        )
    host = url_host(settings.base_url)
    if is_test_host(host):
        placeholder(
            "BASE_URL",
            f"{settings.base_url} cannot be reached by recipients ({host} is "
            f"{'this machine' if is_loopback_host(host) else 'a reserved name'}): the "
            "unsubscribe and view-online links in every email would not work",
            "set it to the public URL `newsletter serve` is reached at",
        )
    if settings.base_url.startswith("http://"):
        placeholder(
            "BASE_URL",
            f"{settings.base_url} is not https: one-click unsubscribe (RFC 8058) needs an "
            "https link, and mail providers ignore an http one",
            "serve the site over https behind a proxy and set BASE_URL to https://…",
        )
    return tuple(findings)
