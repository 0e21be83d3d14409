"""`newsletter bounces --imap` against a real Dovecot on loopback (issue 12, point 3).

The reports are put in the mailbox with IMAP APPEND; the deliveries they name
come from a real send to aiosmtpd. One Dovecot for the module.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from dovecotserver import dovecot_server
from sqlalchemy import select

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.bounces.mailbox import process_imap
from newsletter.bounces.record import BounceOutcome
from newsletter.errors import MailboxError
from newsletter.store.schema import bounce_events, subscribers

DAY = dt.date(2026, 11, 25)


@pytest.fixture(scope="module")
def imap():
    with dovecot_server() as server:
        yield server


def dsn(sent_to: str, recipient: str, message_id: str) -> bytes:
    """A delivery status notification as Postfix writes one (RFC 3464)."""
    return f"""\
Return-Path: <>
Delivered-To: {sent_to}
From: MAILER-DAEMON@relay.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {sent_to}
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.test

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B--
""".replace("\n", "\r\n").encode()


def folder_counts(imap, names):
    with imap.client() as client:
        counts = {}
        for name in names:
            status, data = client.select(f'"{name}"', readonly=True)
            counts[name] = int(data[0]) if status == "OK" else None
        return counts


def test_each_message_of_the_mailbox_is_recorded_once_and_moved_to_its_outcome(
    imap, engine, settings, smtp_server
):
    settings = settings.model_copy(update={"bounce_address": "bounces@news.example.org"})
    subscriber_ops.add_subscriber(engine, "ann@example.com", source="test")
    prepared = prepare_edition(engine, settings, DAY)
    asyncio.run(send_edition(engine, settings, prepared.stored))
    (sent,) = smtp_server.received
    report = dsn(sent.mail_from, "ann@example.com", "<dsn-1@relay.test>")
    with imap.client() as client:
        ooo = b"Subject: Out of the office\r\nAuto-Submitted: auto-replied\r\n\r\nback monday\r\n"
        stray = b"Subject: hello\r\n\r\nwhat is this list?\r\n"
        for message in (report, ooo, stray, report):
            assert client.append("INBOX", None, None, message)[0] == "OK"

    results = process_imap(engine, settings, imap.url())

    outcomes = [r.outcome for r in results]
    assert outcomes == [
        BounceOutcome.RECORDED,
        BounceOutcome.IGNORED,
        BounceOutcome.UNKNOWN,
        BounceOutcome.DUPLICATE,
    ]
    assert results[0].email == "ann@example.com"
    with engine.connect() as conn:
        assert conn.execute(select(subscribers.c.bounce_count)).scalar_one() == 1
        assert len(conn.execute(select(bounce_events)).all()) == 1
    assert folder_counts(imap, ["INBOX", "INBOX.processed", "INBOX.ignored", "INBOX.unknown"]) == {
        "INBOX": 0,
        "INBOX.processed": 2,
        "INBOX.ignored": 1,
        "INBOX.unknown": 1,
    }
    # A second poll finds nothing left to do.
    assert process_imap(engine, settings, imap.url()) == []


def test_a_refused_login_is_one_clear_error(imap, engine, settings):
    with pytest.raises(MailboxError, match="refused the login"):
        process_imap(engine, settings, imap.url(password="wrong"))


def test_an_unreachable_server_is_one_clear_error(engine, settings):
    from newsletter.capture import free_port

    with pytest.raises(MailboxError, match="cannot reach the IMAP server"):
        process_imap(engine, settings, f"imap://u:p@127.0.0.1:{free_port()}/INBOX")
