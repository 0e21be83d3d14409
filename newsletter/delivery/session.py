"""Talking to the SMTP relay: the one place a connection is made, and what replies mean.

This is the only module that sends with aiosmtplib (probe.py only asks the relay
what it offers); its exceptions are translated here into a `SendResult` (for one
message) or a `DeliveryError` (for the session as a whole: wrong credentials, a
relay that refuses us, our sender address refused), so nothing else sees a
library exception.

    SmtpConnection   one reused session (the send loop's mailer; one per worker)
    SmtpMailers      the mailer factory the send loop receives: new connections, a relay check
    send_one         one message on its own connection (test sends, sign-up confirmations)

    reply to end of DATA 2xx  -> SENT       (recorded as sent at once)
    4xx, dropped, timed out   -> TRANSIENT  (retried later on a fresh connection)
    5xx for the recipient     -> PERMANENT  (recorded as failed with the reply)
    5xx for the sender/session-> DeliveryError (stop; unsent rows stay queued)
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aiosmtplib

from newsletter.bounces.verp import plain_sender
from newsletter.config import Settings, SmtpSecurity
from newsletter.delivery.pipelining import (
    ConnectionClosed,
    Replies,
    ReplyReader,
    Stream,
    Wanted,
)
from newsletter.errors import DeliveryError
from newsletter.models import Outcome

# A 5xx at the end of DATA says something about the address only for these codes
# (552 is "too big", 554 often content or policy: not the address's fault).
HARD_BOUNCE_DATA_CODES = frozenset({550, 551, 553})


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    reply: str  # "250 2.0.0 Ok: queued as …", or what went wrong
    hard_bounce: bool = False  # the address itself was refused (counts toward BOUNCE_LIMIT)


class RelayUnavailable(Exception):
    """No session could be opened right now (refused, dropped, 4xx greeting, timeout).

    Not a NewsletterError: the pipeline waits and tries again within RETRY_WINDOW,
    and only then turns it into a DeliveryError.
    """


def classify_code(code: int) -> Outcome:
    """An SMTP reply code's meaning for this message (RFC 5321 §4.2.1)."""
    if 200 <= code < 400:
        return Outcome.SENT
    if 400 <= code < 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


def format_reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}".strip()


class SmtpConnection:
    """One reused connection to the relay; reconnects after a drop.

    Each connection of the send loop owns one, so `CONCURRENCY` of them make exactly
    that many sessions, each carrying many messages. The loop's lanes of a connection
    call `send` concurrently: with PIPELINING the messages stream (`pipelining.Stream`),
    without it they take turns.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: aiosmtplib.SMTP | None = None
        self.stream: Stream | None = None  # set when the relay offers PIPELINING
        self.messages_sent = 0
        self._opening = asyncio.Lock()  # one session opened at a time; no-PIPELINING sends too
        self._opens = 0  # sessions tried, so a lane that waited sees a failure it waited on
        self._open_error: RelayUnavailable | None = None

    @property
    def where(self) -> str:
        return f"{self.settings.smtp_host}:{self.settings.smtp_port}"

    @property
    def chunking(self) -> bool:
        """Whether messages go as BDAT (the relay offers CHUNKING and the settings allow it)."""
        return self.stream is not None and self.stream.chunking

    async def _connect(self) -> aiosmtplib.SMTP:
        """A logged-in session. RelayUnavailable when it may work later; DeliveryError when
        only a change of settings can fix it (credentials, TLS, a 5xx greeting)."""
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout,
            use_tls=s.smtp_security == SmtpSecurity.TLS,
            start_tls=True if s.smtp_security == SmtpSecurity.STARTTLS else False,
            tls_context=tls_context(s) if s.smtp_security != SmtpSecurity.NONE else None,
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
        except (aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError) as exc:
            await _close(client)
            reply = format_reply(exc.code, exc.message)
            if classify_code(exc.code) == Outcome.PERMANENT:
                raise DeliveryError(
                    f"the relay refused the session: {reply}",
                    where=self.where,
                    hint="check the relay accepts mail from this host",
                ) from None
            raise RelayUnavailable(reply) from None
        except aiosmtplib.SMTPNotSupported as exc:
            await _close(client)
            raise DeliveryError(
                f"the relay does not offer what the settings ask: {exc}",
                where=self.where,
                hint="match NEWSLETTER_SMTP_SECURITY (none, starttls, tls) and the login "
                "settings to what the relay offers",
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await _close(client)
            if is_certificate_error(exc):
                raise DeliveryError(
                    f"the relay's TLS certificate is not trusted: {exc}",
                    where=self.where,
                    hint="set NEWSLETTER_SMTP_CA_FILE to the CA that signed it, "
                    "or fix the relay's certificate",
                ) from None
            raise RelayUnavailable(str(exc) or type(exc).__name__) from None
        return client

    async def send(
        self, sender: str, recipient: str, data: bytes, wanted: Wanted | None = None
    ) -> SendResult | None:
        """Send one message on this connection, connecting first if needed.

        `wanted` is asked once the message's turn has come, just before it is written
        (the subscriber may have left while it waited); None means it was not sent.

        Raises RelayUnavailable when no session can be opened (the message was not
        tried and is not charged an attempt) and DeliveryError when the session as a
        whole is refused. A connection that broke or went silent is closed, so the
        retry goes over a fresh one; a reply (even a 4xx) leaves it in step and open.
        """
        tried = self._opens
        async with self._opening:
            if not self.connected:
                if self._opens != tried and self._open_error is not None:
                    raise self._open_error  # the session this lane waited for failed
                await self._open()
            if self.stream is None:  # no PIPELINING: one transaction at a time, aiosmtplib's
                if wanted is not None and not await wanted():
                    return None
                result = await self._transaction(sender, recipient, data)
                if result.outcome == Outcome.TRANSIENT:
                    await self.close()
                return self._counted(result)
            stream = self.stream
        return self._counted(await self._streamed(stream, sender, recipient, data, wanted))

    def _counted(self, result: SendResult | None) -> SendResult | None:
        if result is not None and result.outcome == Outcome.SENT:
            self.messages_sent += 1
        return result

    @property
    def connected(self) -> bool:
        if self.stream is not None:
            return self.stream.reader.alive
        return self.client is not None and self.client.is_connected

    async def _open(self) -> None:
        """Open a session; with PIPELINING offered, take the transport over for the messages."""
        await self.close()
        self._opens += 1
        try:
            client = await self._connect()
            if client.last_ehlo_response is None:  # no TLS or login: aiosmtplib has not said EHLO
                try:
                    await client.ehlo()
                except (aiosmtplib.SMTPException, OSError) as exc:
                    await _close(client)
                    raise RelayUnavailable(f"EHLO failed: {exc}") from None
        except RelayUnavailable as exc:
            self._open_error = exc
            raise
        self._open_error = None
        transport = client.transport
        s = self.settings
        if (
            s.smtp_pipelining
            and client.supports_extension("pipelining")
            and isinstance(transport, asyncio.Transport)
        ):
            reader = ReplyReader(transport)
            transport.set_protocol(reader)
            self.stream = Stream(
                reader,
                chunking=s.smtp_chunking and client.supports_extension("chunking"),
                window=s.pipeline_window,
                timeout=s.smtp_timeout,
                smtputf8=client.supports_extension("smtputf8"),
            )
            self.client = None
        else:
            self.client = client

    async def _streamed(
        self, stream: Stream, sender: str, recipient: str, data: bytes, wanted: Wanted | None
    ) -> SendResult | None:
        if not (sender.isascii() and recipient.isascii()) and not stream.smtputf8:
            return SendResult(Outcome.PERMANENT, "the relay does not accept non-ASCII addresses")
        try:
            replies = await stream.transact(sender, recipient, data, wanted)
        except TimeoutError as exc:
            await self._drop(stream)
            return SendResult(Outcome.TRANSIENT, f"timed out: {exc}")
        except (ConnectionClosed, OSError) as exc:
            await self._drop(stream)
            return SendResult(Outcome.TRANSIENT, str(exc) or "connection lost")
        if replies is None:
            return None
        said = (replies.mail, replies.rcpt, replies.data, replies.final)
        if any(reply is not None and reply.code == 0 for reply in said):
            await self._drop(stream)  # a reply we could not read: we may be out of step
        return self._judge(sender, replies)

    def _judge(self, sender: str, replies: Replies) -> SendResult:
        """What one message's replies mean, in the order the relay gave them."""
        mail, rcpt, final = replies.mail, replies.rcpt, replies.final
        if mail.code >= 400:
            # 503: out of sequence (a stricter relay still in the last, refused transaction)
            if classify_code(mail.code) == Outcome.PERMANENT and mail.code != 503:
                raise DeliveryError(
                    f"the relay refused our sender address {sender}: {mail}",
                    where=self.where,
                    hint="check NEWSLETTER_FROM_ADDRESS is allowed on this relay",
                )
            return SendResult(Outcome.TRANSIENT, str(mail))
        if rcpt.code >= 400:
            outcome = classify_code(rcpt.code) if rcpt.code != 503 else Outcome.TRANSIENT
            return SendResult(outcome, str(rcpt), hard_bounce=outcome == Outcome.PERMANENT)
        if final is None:
            start = replies.data
            assert start is not None
            return SendResult(
                classify_code(start.code) if start.code else Outcome.TRANSIENT, str(start)
            )
        outcome = classify_code(final.code) if final.code else Outcome.TRANSIENT
        hard = outcome == Outcome.PERMANENT and final.code in HARD_BOUNCE_DATA_CODES
        return SendResult(outcome, str(final), hard_bounce=hard)

    async def _drop(self, stream: Stream) -> None:
        """A broken stream is closed at once; a lane that comes next opens a new one."""
        stream.reader.abort(ConnectionClosed("connection dropped after a failure"))
        if self.stream is stream:
            self.stream = None

    async def _transaction(self, sender: str, recipient: str, data: bytes) -> SendResult:
        assert self.client is not None
        try:
            options = [] if recipient.isascii() else ["SMTPUTF8"]
            errors, reply = await self.client.sendmail(
                sender, [recipient], data, mail_options=options
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            outcome = classify_code(refused.code)
            reply_ = format_reply(refused.code, refused.message)
            return SendResult(outcome, reply_, hard_bounce=outcome == Outcome.PERMANENT)
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
                return SendResult(Outcome.TRANSIENT, f"unreadable reply: {exc.message}")
            outcome = classify_code(exc.code)
            hard = outcome == Outcome.PERMANENT and exc.code in HARD_BOUNCE_DATA_CODES
            return SendResult(outcome, format_reply(exc.code, exc.message), hard_bounce=hard)
        except aiosmtplib.SMTPNotSupported as exc:
            return SendResult(Outcome.PERMANENT, f"not supported by the relay: {exc}")
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            return SendResult(Outcome.TRANSIENT, f"timed out after {self.settings.smtp_timeout}s")
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError) as exc:
            return SendResult(Outcome.TRANSIENT, f"connection lost: {exc}")
        except aiosmtplib.SMTPException as exc:
            return SendResult(Outcome.TRANSIENT, f"SMTP error: {exc}")
        except ValueError as exc:  # an address aiosmtplib refuses to put in an envelope
            return SendResult(Outcome.PERMANENT, f"invalid address: {exc}")
        if recipient in errors:
            code, message = errors[recipient]
            outcome = classify_code(code)
            return SendResult(
                outcome, format_reply(code, message), hard_bounce=outcome == Outcome.PERMANENT
            )
        return SendResult(Outcome.SENT, reply_text(reply))

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await _close(client, polite=True)
        stream, self.stream = self.stream, None
        if stream is not None:
            await stream.quit()


def reply_text(reply: str) -> str:
    """aiosmtplib hands back the text of the 250 reply without its code; keep both."""
    return format_reply(250, reply)


def tls_context(settings: Settings) -> ssl.SSLContext:
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


def is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class SmtpMailers:
    """The send loop's mailer factory: a new `SmtpConnection` per worker, and a relay check.

    The loop depends only on the `Mailer`/`MailerFactory` protocols (delivery/loop.py); this
    is their SMTP side, so a fault test can hand the loop something else instead.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self) -> SmtpConnection:
        return SmtpConnection(self.settings)

    async def check(self) -> str:
        """Connect, log in and quit: proves the relay settings before a send claims anything.

        Raises RelayUnavailable (try again later) or DeliveryError (fix the settings).
        """
        connection = SmtpConnection(self.settings)
        client = await connection._connect()
        await _close(client, polite=True)
        return connection.where


async def send_one(settings: Settings, recipient: str, data: bytes) -> SendResult:
    """One message on a connection of its own (a test send, a sign-up confirmation).

    The result says what the relay answered; a relay that cannot be reached, or that
    refuses the session, raises DeliveryError naming it and what to check.
    """
    connection = SmtpConnection(settings)
    try:
        result = await connection.send(plain_sender(settings), recipient, data)
        assert result is not None  # nothing asked whether it is still wanted
        return result
    except RelayUnavailable as exc:
        raise DeliveryError(
            f"cannot reach the SMTP relay: {exc}",
            where=connection.where,
            hint="check NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT, and that the relay is up",
        ) from None
    finally:
        await connection.close()
