"""Talking to the SMTP relay: reused connections, a rate limit, reply classification.

This is the only module that imports aiosmtplib; its exceptions are translated
here into a `SendResult` (for one message) or a `DeliveryError` (for the
session as a whole: wrong credentials, a relay that refuses us, our sender
address refused), so the pipeline never sees a library exception.

    reply to end of DATA 2xx  -> SENT       (recorded as sent at once)
    4xx, dropped, timed out   -> TRANSIENT  (retried later on a fresh connection)
    5xx for the recipient     -> PERMANENT  (recorded as failed with the reply)
    5xx for the sender/session-> DeliveryError (stop; unsent rows stay queued)
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from enum import StrEnum

import aiosmtplib

from newsletter.config import Settings, SmtpSecurity
from newsletter.errors import DeliveryError


class Outcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    reply: str  # "250 2.0.0 Ok: queued as …", or what went wrong


def classify_code(code: int) -> Outcome:
    """An SMTP reply code's meaning for this message (RFC 5321 §4.2.1)."""
    if 200 <= code < 400:
        return Outcome.SENT
    if 400 <= code < 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


def format_reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}".strip()


class RateLimiter:
    """A token bucket shared by every connection: at most `rate` messages a second.

    The bucket holds one second's worth, so a send starts at full speed but
    never exceeds the rate over any second. A rate of 0 means no limit.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class SmtpConnection:
    """One reused connection to the relay; reconnects after a drop.

    Each sending task owns one, so `CONCURRENCY` tasks make exactly that many
    sessions, each carrying many messages.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: aiosmtplib.SMTP | None = None
        self.messages_sent = 0

    @property
    def where(self) -> str:
        return f"{self.settings.smtp_host}:{self.settings.smtp_port}"

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout,
            use_tls=s.smtp_security == SmtpSecurity.TLS,
            start_tls=True if s.smtp_security == SmtpSecurity.STARTTLS else False,
            tls_context=_tls_context(s) if s.smtp_security != SmtpSecurity.NONE else None,
            local_hostname=s.sender_domain,
        )
        try:
            await client.connect()
            if s.smtp_username:
                await client.login(s.smtp_username, s.smtp_password.get_secret_value())
        except aiosmtplib.SMTPAuthenticationError as exc:
            await _close(client)
            raise DeliveryError(
                f"the relay refused our credentials: {format_reply(exc.code, exc.message)}",
                where=self.where,
                hint="check NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD",
            ) from None
        except aiosmtplib.SMTPConnectResponseError as exc:
            await _close(client)
            outcome = classify_code(exc.code)
            if outcome == Outcome.PERMANENT:
                raise DeliveryError(
                    f"the relay refused the session: {format_reply(exc.code, exc.message)}",
                    where=self.where,
                    hint="check the relay accepts mail from this host",
                ) from None
            raise
        except aiosmtplib.SMTPNotSupported as exc:
            await _close(client)
            raise DeliveryError(
                f"the relay does not offer what the settings ask: {exc}",
                where=self.where,
                hint="match NEWSLETTER_SMTP_SECURITY (none, starttls, tls) and the login "
                "settings to what the relay offers",
            ) from None
        return client

    async def send(self, sender: str, recipient: str, data: bytes) -> SendResult:
        """Send one message; only a DeliveryError escapes (the session is unusable)."""
        try:
            if self.client is None or not self.client.is_connected:
                self.client = await self._connect()
            options = [] if recipient.isascii() else ["SMTPUTF8"]
            errors, reply = await self.client.sendmail(
                sender, [recipient], data, mail_options=options
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return SendResult(
                classify_code(refused.code), format_reply(refused.code, refused.message)
            )
        except aiosmtplib.SMTPSenderRefused as exc:
            if classify_code(exc.code) == Outcome.PERMANENT:
                raise DeliveryError(
                    f"the relay refused our sender address {sender}: "
                    f"{format_reply(exc.code, exc.message)}",
                    where=self.where,
                    hint="check NEWSLETTER_FROM_ADDRESS is allowed on this relay",
                ) from None
            return SendResult(Outcome.TRANSIENT, format_reply(exc.code, exc.message))
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code < 0:  # aiosmtplib's marker for a reply it could not read
                await self.close()
                return SendResult(Outcome.TRANSIENT, f"unreadable reply: {exc.message}")
            return SendResult(classify_code(exc.code), format_reply(exc.code, exc.message))
        except aiosmtplib.SMTPNotSupported as exc:
            return SendResult(Outcome.PERMANENT, f"not supported by the relay: {exc}")
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            await self.close()
            return SendResult(Outcome.TRANSIENT, f"timed out after {self.settings.smtp_timeout}s")
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
            await self.close()
            return SendResult(Outcome.TRANSIENT, f"connection lost: {exc}")
        except aiosmtplib.SMTPException as exc:
            await self.close()
            return SendResult(Outcome.TRANSIENT, f"SMTP error: {exc}")
        except ValueError as exc:  # an address aiosmtplib refuses to put in an envelope
            return SendResult(Outcome.PERMANENT, f"invalid address: {exc}")
        if recipient in errors:
            code, message = errors[recipient]
            return SendResult(classify_code(code), format_reply(code, message))
        self.messages_sent += 1
        return SendResult(Outcome.SENT, reply_text(reply))

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await _close(client, polite=True)


def reply_text(reply: str) -> str:
    """aiosmtplib hands back the text of the 250 reply without its code; keep both."""
    return format_reply(250, reply)


def _tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificates are always verified; a private relay's CA can be named in SMTP_CA_FILE."""
    cafile = settings.smtp_ca_file
    if cafile is not None and not cafile.is_file():
        raise DeliveryError(
            "the CA file does not exist",
            where=f"NEWSLETTER_SMTP_CA_FILE={cafile}",
            hint="give the path of the PEM file of the CA that signed the relay's certificate",
        )
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


async def _close(client: aiosmtplib.SMTP, *, polite: bool = False) -> None:
    try:
        if polite and client.is_connected:
            await asyncio.wait_for(client.quit(), timeout=5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()


async def check_relay(settings: Settings) -> str:
    """Connect, say EHLO, log in and quit: proves the relay settings before a send starts."""
    connection = SmtpConnection(settings)
    try:
        client = await connection._connect()
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryError(
            f"cannot reach the SMTP relay: {exc}",
            where=connection.where,
            hint="check NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT, and that the relay is up",
        ) from None
    await _close(client, polite=True)
    return connection.where
