"""Bounces that arrive later, from the real thing (issue 12, points 2 and 3).

A private Postfix on loopback takes the edition with 250, hands it on to a
next hop (Postfix's smtp-sink) that refuses the recipient with 550, and mails
its own DSN to the envelope sender, our VERP address: virtual(8) delivers it
to a Maildir. `newsletter bounces --maildir` then records it against the
delivery. One Postfix for the module.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import Cli
from postfixserver import postfix_server, smtp_sink, virtual_maildir, wait_for_messages
from sqlalchemy import select

from newsletter.store.engine import open_engine
from newsletter.store.schema import bounce_events, deliveries, subscribers

DAY = "2026-11-25"
GONE = "gone@example.net"
REPLY = "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown"


@pytest.fixture(scope="module")
def mta():
    with (
        smtp_sink("-f", "RCPT", "-B", REPLY) as sink_port,
        virtual_maildir("news.test") as (params, maildir),
        postfix_server(
            transport_maps=f"inline:{{example.net=smtp:[127.0.0.1]:{sink_port}}}",
            smtp_tls_security_level="none",
            **params,
        ) as relay,
    ):
        yield relay, maildir


def state(url: str) -> tuple:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            delivery = conn.execute(select(deliveries.c.status, deliveries.c.last_reply)).one()
            subscriber = conn.execute(
                select(subscribers.c.status, subscribers.c.bounce_count)
            ).one()
            events = conn.execute(
                select(bounce_events.c.kind, bounce_events.c.status, bounce_events.c.reporter)
            ).all()
    finally:
        engine.dispose()
    return tuple(delivery), tuple(subscriber), [tuple(e) for e in events]


def test_a_dsn_postfix_mails_back_marks_the_delivery_hard_bounced_once(mta, cli_env):
    relay, maildir = mta
    env = Cli(
        cli_env,
        NEWSLETTER_SMTP_HOST=relay.host,
        NEWSLETTER_SMTP_PORT=str(relay.port),
        NEWSLETTER_BOUNCE_ADDRESS="bounces@news.test",
        NEWSLETTER_BOUNCE_LIMIT="1",
    )
    env.run("subscribers", "add", GONE)
    env.run("send", "--date", DAY)  # Postfix says 250: the send sees a success
    url = env["NEWSLETTER_DATABASE_URL"]
    assert state(url)[0][0] == "sent"

    (dsn,) = wait_for_messages(maildir)
    text = dsn.read_text(errors="replace")
    assert "Delivered-To: bounces+d" in text and "multipart/report" in text

    first = env.run("bounces", "--maildir", str(maildir))
    assert f"{GONE}: recorded hard 5.1.1" in first.stdout, first.stdout
    delivery, subscriber, events = state(url)
    assert delivery[0] == "failed" and "5.1.1" in delivery[1]
    assert subscriber == ("bounced", 1)  # BOUNCE_LIMIT=1: this one hard bounce is enough
    assert events == [("hard", "5.1.1", "postfix")]
    (processed,) = (maildir / ".processed" / "cur").iterdir()
    assert not list((maildir / "new").iterdir())

    # The same report again (a replayed Maildir): nothing counts twice.
    shutil.copy(processed, maildir / "new" / "replayed")
    again = env.run("bounces", "--maildir", str(maildir))
    assert "duplicate" in again.stdout, again.stdout
    assert state(url) == (delivery, subscriber, events)
    assert len(list((maildir / ".processed" / "cur").iterdir())) == 2
