"""Delivering an edition: the send loop, its retry policy, and the SMTP side.

session.py     the SMTP connection (connect, TLS, login, reply classification);
               the only aiosmtplib user; `send_one` for single messages
probe.py       what the relay offers and whether TLS and login work (`newsletter doctor`);
               with session.py, the only aiosmtplib users
pipelining.py  ESMTP PIPELINING for the message loop, after aiosmtplib's handshake
retry.py       backoff, the relay and store watches, the rate limit; all take a clock
protocols.py   the Ledger and MailerFactory the loop receives
recorder.py    group commit of results
loop.py        claim → build → send → record, and its supervision
send.py        `run_send`: the loop over the SQL ledger and SMTP
"""

from newsletter.delivery.loop import ProgressCallback, SendLoop, SendSummary
from newsletter.delivery.protocols import HealthGuard, Ledger, Mailer, MailerFactory
from newsletter.delivery.retry import (
    SYSTEM_CLOCK,
    Clock,
    RateLimiter,
    RelayWatch,
    StoreWatch,
    backoff,
)
from newsletter.delivery.send import run_send
from newsletter.delivery.session import (
    RelayUnavailable,
    SendResult,
    SmtpConnection,
    SmtpMailers,
    classify_code,
    send_one,
)
from newsletter.models import Outcome

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "HealthGuard",
    "Ledger",
    "Mailer",
    "MailerFactory",
    "Outcome",
    "ProgressCallback",
    "RateLimiter",
    "RelayUnavailable",
    "RelayWatch",
    "SendLoop",
    "SendResult",
    "SendSummary",
    "SmtpConnection",
    "SmtpMailers",
    "StoreWatch",
    "backoff",
    "classify_code",
    "run_send",
    "send_one",
]
