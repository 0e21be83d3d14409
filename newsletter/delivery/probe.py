"""Ask the relay what it offers, step by step: `newsletter doctor`'s relay check.

A send's session (session.py) connects the way the settings say and stops at
the first thing wrong. Before the first real send an operator wants more: what
the relay offers (STARTTLS, AUTH mechanisms, PIPELINING, CHUNKING, SIZE),
whether its certificate is trusted, whether the login works. `probe_relay`
goes connect → EHLO → STARTTLS → EHLO → AUTH → QUIT and returns what it saw,
with the step that failed as one DeliveryError (what happened, how to fix it).

aiosmtplib's and ssl's exceptions are translated here, in `_translated`, once.
Every network step is bounded by SMTP_TIMEOUT (aiosmtplib's per-command
timeout), and the whole probe by a few of them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiosmtplib

from newsletter.config import Settings, SmtpSecurity
from newsletter.delivery.session import format_reply, is_certificate_error, tls_context
from newsletter.errors import DeliveryError
from newsletter.hygiene import one_line

#: connect, EHLO, STARTTLS, EHLO, AUTH, QUIT: the probe never takes longer than this many
#: SMTP_TIMEOUTs, even if each step answered just in time.
STEPS = 6

_CA_HINT = (
    "set NEWSLETTER_SMTP_CA_FILE to the PEM file of the CA that signed it (for a "
    "self-signed certificate, the certificate itself), or give the relay a trusted one"
)


@dataclass
class RelayReport:
    """What the relay said, as far as the probe got; `problem` is the step that failed."""

    where: str
    security: SmtpSecurity
    greeting: str = ""
    #: ESMTP keywords (upper case) and their parameters, from the last EHLO (after TLS).
    extensions: dict[str, str] = field(default_factory=dict)
    auth_methods: tuple[str, ...] = ()
    tls_version: str | None = None  # "TLSv1.3" when the session was encrypted
    certificate: str | None = None  # "CN=relay.example, expires 2027-01-31": it was trusted
    certificate_expires: dt.datetime | None = None
    starttls_unused: bool = False  # SMTP_SECURITY=none, yet the relay offers STARTTLS
    login: bool | None = None  # None: no credentials set; True: the relay accepted them
    problem: DeliveryError | None = None

    @property
    def size_limit(self) -> int | None:
        """SIZE's limit in bytes (RFC 1870); None when not announced or 0 (no limit)."""
        value = self.extensions.get("SIZE", "").strip()
        return int(value) if value.isdigit() and int(value) > 0 else None


async def probe_relay(settings: Settings) -> RelayReport:
    """Connect as the settings say and report what the relay offers and what failed."""
    report = RelayReport(f"{settings.smtp_host}:{settings.smtp_port}", settings.smtp_security)
    try:
        context = tls_context(settings) if settings.smtp_security != SmtpSecurity.NONE else None
    except DeliveryError as exc:  # SMTP_CA_FILE names no file
        report.problem = exc
        return report
    client = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        timeout=settings.smtp_timeout,
        use_tls=settings.smtp_security == SmtpSecurity.TLS,
        start_tls=False,  # done below as its own step, so a failure says which step
        tls_context=context,
        local_hostname=settings.sender_domain,
    )
    try:
        await asyncio.wait_for(
            _steps(client, settings, context, report), timeout=settings.smtp_timeout * STEPS
        )
    except DeliveryError as exc:
        report.problem = exc
    except TimeoutError:
        report.problem = _no_answer(settings, report.where, "the probe")
    finally:
        await _quit(client)
    return report


async def _steps(
    client: aiosmtplib.SMTP,
    settings: Settings,
    context: ssl.SSLContext | None,
    report: RelayReport,
) -> None:
    with _translated(settings, report.where, "connect"):
        greeting = await client.connect()
    report.greeting = format_reply(greeting.code, greeting.message)
    if settings.smtp_security == SmtpSecurity.TLS:
        _note_tls(client, report)
    await _ehlo(client, settings, report)
    if settings.smtp_security == SmtpSecurity.STARTTLS:
        if not client.supports_extension("starttls"):
            raise DeliveryError(
                "the relay does not offer STARTTLS, and NEWSLETTER_SMTP_SECURITY is starttls",
                where=report.where,
                hint="use the relay's submission port, usually 587; or NEWSLETTER_SMTP_SECURITY"
                "=tls with its implicit-TLS port, usually 465",
            )
        with _translated(settings, report.where, "STARTTLS"):
            await client.starttls(tls_context=context)
        _note_tls(client, report)
        await _ehlo(client, settings, report)  # RFC 3207: what was offered before TLS is void
    elif settings.smtp_security == SmtpSecurity.NONE:
        report.starttls_unused = client.supports_extension("starttls")
    if settings.smtp_username:
        if not client.supports_extension("auth"):
            raise DeliveryError(
                "the relay offers no AUTH, yet NEWSLETTER_SMTP_USERNAME is set",
                where=report.where,
                hint="many relays offer AUTH only after TLS: set NEWSLETTER_SMTP_SECURITY; "
                "or leave the username empty if the relay accepts this host without a login",
            )
        with _translated(settings, report.where, "AUTH"):
            await client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        report.login = True


async def _ehlo(client: aiosmtplib.SMTP, settings: Settings, report: RelayReport) -> None:
    with _translated(settings, report.where, "EHLO"):
        await client.ehlo()
    report.extensions = {name.upper(): value for name, value in client.esmtp_extensions.items()}
    report.auth_methods = tuple(method.upper() for method in client.server_auth_methods)


def _note_tls(client: aiosmtplib.SMTP, report: RelayReport) -> None:
    """The TLS version and the certificate that was verified (the handshake checked it)."""
    tls = client.get_transport_info("ssl_object")
    if tls is None:
        return
    report.tls_version = tls.version()
    cert = tls.getpeercert() or {}
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    subject = f"CN={names[0]}" if names else "a certificate"
    if "notAfter" in cert:
        expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), dt.UTC)
        report.certificate_expires = expires
        report.certificate = f"{subject}, expires {expires:%Y-%m-%d}"
    else:
        report.certificate = subject


@contextmanager
def _translated(settings: Settings, where: str, step: str) -> Iterator[None]:
    """aiosmtplib's and ssl's exceptions for one step, as a DeliveryError with the fix."""
    try:
        yield
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(
            f"the relay refused our credentials: {format_reply(exc.code, exc.message)}",
            where=where,
            hint="check NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD",
        ) from None
    except aiosmtplib.SMTPResponseException as exc:  # a 4xx/5xx greeting or EHLO reply
        if exc.code < 0:
            raise _unreadable(where, step, exc.message) from None
        raise DeliveryError(
            f"the relay refused the session at {step}: {format_reply(exc.code, exc.message)}",
            where=where,
            hint="check the relay accepts mail from this host (its access list, or AUTH)",
        ) from None
    except (aiosmtplib.SMTPTimeoutError, TimeoutError):
        raise _no_answer(settings, where, step) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        reason = _os_reason(exc) or one_line(str(exc)) or type(exc).__name__
        if is_certificate_error(exc):
            raise DeliveryError(
                f"the relay's TLS certificate is not trusted: {_verify_reason(exc, reason)}",
                where=where,
                hint=_CA_HINT,
            ) from None
        tls_error = _ssl_error(exc)
        if tls_error is not None:
            raise DeliveryError(
                f"the TLS handshake failed at {step}: {tls_error}",
                where=where,
                hint="match NEWSLETTER_SMTP_SECURITY to the port: tls for 465, where TLS "
                "starts at the first byte; starttls for 587 or 25",
            ) from None
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected) and step != "connect":
            raise DeliveryError(
                f"the relay closed the connection at {step}: {reason}",
                where=where,
                hint="see the relay's log for why it hung up",
            ) from None
        raise DeliveryError(
            f"cannot connect to the relay: {reason}",
            where=where,
            hint="check NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT, and that the relay is up",
        ) from None


def _no_answer(settings: Settings, where: str, step: str) -> DeliveryError:
    return DeliveryError(
        f"no answer at {step} within NEWSLETTER_SMTP_TIMEOUT ({settings.smtp_timeout:g} s)",
        where=where,
        hint="check NEWSLETTER_SMTP_HOST, NEWSLETTER_SMTP_PORT and the firewall; with "
        "NEWSLETTER_SMTP_SECURITY=tls on a plain port, both sides wait for the other",
    )


def _unreadable(where: str, step: str, message: str) -> DeliveryError:
    return DeliveryError(
        f"the relay's reply at {step} is not SMTP: {one_line(message)}",
        where=where,
        hint="check NEWSLETTER_SMTP_PORT is the relay's SMTP port",
    )


def _verify_reason(exc: BaseException, fallback: str) -> str:
    """OpenSSL's own words ("self-signed certificate"), not aiosmtplib's wrapping of them."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) and seen.verify_message:
            return seen.verify_message
        seen = seen.__cause__ or seen.__context__
    return fallback


def _os_reason(exc: BaseException) -> str | None:
    """ "Connection refused", "No route to host": the system's words for a socket error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):  # an OSError whose errno is not one
            return f"cannot resolve the host name ({one_line(str(seen))})"
        if isinstance(seen, OSError) and seen.errno and not isinstance(seen, ssl.SSLError):
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return None


def _ssl_error(exc: BaseException) -> str | None:
    """OpenSSL's reason ("WRONG_VERSION_NUMBER") when a TLS handshake is behind `exc`."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen.reason or one_line(str(seen))
        seen = seen.__cause__ or seen.__context__
    return None


async def _quit(client: aiosmtplib.SMTP) -> None:
    """QUIT politely when the session is up (bounded), then close the socket in any case."""
    try:
        if client.is_connected:
            await asyncio.wait_for(client.quit(), timeout=client.timeout or 5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()
