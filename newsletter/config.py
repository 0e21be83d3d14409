"""Typed settings, read once from the environment and `.env`, then passed down.

Every key is `NEWSLETTER_<NAME>` and is documented in `.env.example`. A bad
value stops the program with one line naming the key and what is allowed,
rather than a pydantic traceback.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsletter.errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"


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
    templates_dir: Path = Path("templates")

    # The relay
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    smtp_timeout: float = Field(30.0, gt=0)
    smtp_pipelining: bool = True  # use ESMTP PIPELINING when the relay offers it
    smtp_ca_file: Path | None = None  # trust this CA (a private relay's); default: the system's

    # Who it is from and what it is called
    from_address: str = "newsletter@example.com"
    from_name: str = "The Daily Brief"
    name: str = "The Daily Brief"
    postal_address: str = "The Daily Brief, 1 Example Street, Springfield"
    language: str = "en"
    subject_template: str = "{name} — {date:%A %-d %B %Y}: {lead}"
    base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr = SecretStr("change-me-to-a-long-random-string")
    unsubscribe_mailto: str = ""  # default: unsubscribe@<domain of FROM_ADDRESS>
    editor_password: SecretStr = SecretStr("")  # empty: the editor pages refuse every login
    signup_expiry_hours: int = Field(48, ge=1)  # unconfirmed sign-ups are forgotten after this

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
    log_level: LogLevel = LogLevel.WARNING
    log_format: LogFormat = LogFormat.TEXT
    max_articles: int = Field(20, ge=1)

    # Behind a reverse proxy: the addresses or networks (comma-separated) whose
    # X-Forwarded-For and X-Forwarded-Proto are believed; empty: nobody's are.
    trusted_proxies: str = ""

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


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


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
