"""`newsletter bounces --imap` against a real Dovecot on loopback (issue 12, point 3).

The reports are put in the mailbox with IMAP APPEND; the deliveries they name
come from a real send to aiosmtpd. One Dovecot for the module.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from dovecotserver import PASSWORD, dovecot_server
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


def _wait_for(path, text, *, count=1, seconds=60.0):
    """Until `text` shows `count` times in the file `path` (a running command's output)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} x{count} not in {path} after {seconds}s: {path.read_text()}")


def test_every_keeps_polling_with_the_password_from_settings_and_stops_on_sigterm(
    imap, cli_env, smtp_server, tmp_path
):
    import signal
    import subprocess

    env = dict(
        cli_env,
        NEWSLETTER_BOUNCE_ADDRESS="bounces@news.example.org",
        NEWSLETTER_BOUNCE_IMAP_PASSWORD=PASSWORD,
    )
    cli = [*cli_env.command]
    for email in ("ann@example.com", "bob@example.com"):
        subprocess.run([*cli, "subscribers", "add", email], env=env, check=True, timeout=120)
    subprocess.run([*cli, "send", "--date", DAY.isoformat()], env=env, check=True, timeout=120)
    senders = {item.rcpt_tos[0]: item.mail_from for item in smtp_server.received}
    url = imap.url("INBOX.every").replace(f":{PASSWORD}@", "@")  # the password: from settings
    with imap.client() as client:
        client.create("INBOX.every")
        client.append("INBOX.every", None, None, dsn(senders["ann@example.com"],
                      "ann@example.com", "<every-1@relay.test>"))  # fmt: skip
    out, errors = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("wb") as stdout, errors.open("wb") as stderr:
        poller = subprocess.Popen(
            [*cli, "bounces", "--imap", url, "--every", "1"],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            _wait_for(out, "ann@example.com: recorded hard 5.1.1")
            with imap.client() as client:  # arrives while it waits: the next poll takes it
                client.append("INBOX.every", None, None, dsn(senders["bob@example.com"],
                              "bob@example.com", "<every-2@relay.test>"))  # fmt: skip
            _wait_for(out, "bob@example.com: recorded hard 5.1.1")
            poller.send_signal(signal.SIGTERM)
            assert poller.wait(timeout=30) == 0, errors.read_text()
        finally:
            if poller.poll() is None:
                poller.kill()
                poller.wait()
    assert out.read_text().rstrip().endswith("stopped")


def test_every_goes_on_past_a_poll_that_fails(cli_env, tmp_path):
    import signal
    import subprocess

    from newsletter.capture import free_port

    out, errors = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("wb") as stdout, errors.open("wb") as stderr:
        poller = subprocess.Popen(
            [*cli_env.command, "bounces", "--imap", f"imap://u:p@127.0.0.1:{free_port()}/INBOX",
             "--every", "1"],
            env=dict(cli_env),
            stdout=stdout,
            stderr=stderr,
        )  # fmt: skip
        try:
            _wait_for(errors, "cannot reach the IMAP server", count=2)  # two polls, still up
            assert poller.poll() is None
            poller.send_signal(signal.SIGINT)
            assert poller.wait(timeout=30) == 0
        finally:
            if poller.poll() is None:
                poller.kill()
                poller.wait()
    lines = [line for line in errors.read_text().splitlines() if line.strip()]
    assert all(line.startswith("error: imap 127.0.0.1:") for line in lines), lines
