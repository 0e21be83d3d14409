"""Unsubscribes by email (the mailto: of List-Unsubscribe): one message, stdin, a Maildir.

The requests are built from what a real edition carries: the test sends one to
the aiosmtpd server and answers its List-Unsubscribe mailto, as a mail client would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.errors import InputError
from newsletter.inbound import InboundStatus, process_maildir, process_message, process_stream
from newsletter.models import SubscriberStatus
from newsletter.store import subscribers as subscriber_store
from newsletter.tokens import Purpose, Signer

DAY = dt.date(2026, 11, 25)


@pytest.fixture
def signer(settings) -> Signer:
    return Signer(settings.secret_key.get_secret_value())


def status_of(engine, email: str) -> SubscriberStatus:
    return subscriber_store.get_subscriber(engine, email).status


def request(subject: str, body: str = "", sender: str = "ann@example.com", **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "unsubscribe@daily.example.org"
    message["Subject"] = subject
    message["Message-ID"] = "<req-1@example.com>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body or "\n")
    return bytes(message)


def test_answering_the_mailto_of_a_real_edition_unsubscribes(engine, settings, signer, smtp_server):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    subscriber_ops.add_subscriber(engine, "bob@example.com")
    prepared = prepare_edition(engine, settings, DAY)
    asyncio.run(send_edition(engine, settings, prepared.stored))
    received = next(i for i in smtp_server.received if i.rcpt_tos == ["ann@example.com"])
    mailto = re.findall(r"<(mailto:[^>]+)>", received.message["List-Unsubscribe"])[0]
    parts = urlsplit(mailto)
    subject = unquote(parts.query.removeprefix("subject="))  # what the mail client puts there

    result = process_message(engine, signer, request(subject))

    assert parts.path == settings.unsubscribe_address
    assert result.status is InboundStatus.UNSUBSCRIBED and result.honoured
    assert result.email == "ann@example.com" and result.sender == "ann@example.com"
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED
    assert status_of(engine, "bob@example.com") is SubscriberStatus.ACTIVE
    again = process_message(engine, signer, request(subject))
    assert again.status is InboundStatus.NOT_SUBSCRIBED and again.honoured


@pytest.mark.parametrize(
    "make",
    [
        lambda token: request(f"unsubscribe%20{token}"),  # a client that left it encoded
        lambda token: request(f"Re: UNSUBSCRIBE {token}"),
        lambda token: request("Please remove me", f"unsubscribe {token}\n\nThanks"),
    ],
    ids=["percent-encoded", "reply-prefix", "in-the-body"],
)
def test_the_token_is_found_where_clients_put_it(engine, signer, make):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    token = signer.sign(Purpose.UNSUBSCRIBE, "ann@example.com")
    result = process_message(engine, signer, make(token))
    assert result.status is InboundStatus.UNSUBSCRIBED
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("kind", ["forged", "wrong purpose", "altered"])
def test_a_bad_token_does_nothing(engine, signer, kind):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    token = {
        "forged": Signer("another-secret").sign(Purpose.UNSUBSCRIBE, "ann@example.com"),
        "wrong purpose": signer.sign(Purpose.CONFIRM, "ann@example.com"),
        "altered": signer.sign(Purpose.UNSUBSCRIBE, "ann@example.com")[:-3] + "xyz",
    }[kind]
    result = process_message(engine, signer, request(f"unsubscribe {token}"))
    assert result.status is InboundStatus.INVALID_TOKEN and not result.honoured
    assert result.detail
    assert status_of(engine, "ann@example.com") is SubscriberStatus.ACTIVE


def test_a_bare_unsubscribe_from_a_subscribers_address_is_reported_not_honoured(engine, signer):
    """From can be forged by anyone: only the signed token counts."""
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    result = process_message(engine, signer, request("unsubscribe", sender="Ann <ann@example.com>"))
    assert result.status is InboundStatus.NO_TOKEN and result.sender == "ann@example.com"
    assert status_of(engine, "ann@example.com") is SubscriberStatus.ACTIVE


def test_automatic_mail_quoting_a_token_is_ignored(engine, signer):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    token = signer.sign(Purpose.UNSUBSCRIBE, "ann@example.com")
    vacation = request(f"Out of office: unsubscribe {token}", Auto_Submitted="auto-replied")
    assert process_message(engine, signer, vacation).status is InboundStatus.AUTOMATIC
    assert process_message(engine, signer, b"").status is InboundStatus.UNREADABLE
    assert status_of(engine, "ann@example.com") is SubscriberStatus.ACTIVE


def test_one_message_from_a_stream(engine, signer):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    token = signer.sign(Purpose.UNSUBSCRIBE, "ann@example.com")
    result = process_stream(engine, signer, io.BytesIO(request(f"unsubscribe {token}")))
    assert result.status is InboundStatus.UNSUBSCRIBED


def test_a_maildir_is_processed_once_and_messages_move_to_cur(engine, signer, tmp_path):
    for email in ("ann@example.com", "bob@example.com"):
        subscriber_ops.add_subscriber(engine, email)
    maildir = tmp_path / "Maildir"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    messages = {
        "1.ann": request(f"unsubscribe {signer.sign(Purpose.UNSUBSCRIBE, 'ann@example.com')}"),
        "2.bob": request("unsubscribe", sender="bob@example.com"),
        "3.forged": request(f"unsubscribe {Signer('x').sign(Purpose.UNSUBSCRIBE, 'b@x.org')}"),
    }
    for name, data in messages.items():
        (maildir / "new" / name).write_bytes(data)

    results = process_maildir(engine, signer, maildir)

    assert [r.status for r in results] == [
        InboundStatus.UNSUBSCRIBED,
        InboundStatus.NO_TOKEN,
        InboundStatus.INVALID_TOKEN,
    ]
    assert list((maildir / "new").iterdir()) == []
    assert sorted(p.name for p in (maildir / "cur").iterdir()) == [
        "1.ann:2,S",  # done: seen
        "2.bob:2,FS",  # for a person to read: flagged
        "3.forged:2,FS",
    ]
    assert [r.path for r in results] == sorted((maildir / "cur").iterdir())
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED
    assert status_of(engine, "bob@example.com") is SubscriberStatus.ACTIVE
    assert process_maildir(engine, signer, maildir) == []  # nothing processed twice


def test_a_folder_that_is_not_a_maildir_is_refused(engine, signer, tmp_path: Path):
    with pytest.raises(InputError, match="not a Maildir"):
        process_maildir(engine, signer, tmp_path)
