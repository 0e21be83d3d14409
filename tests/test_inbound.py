"""Unsubscribes by email (the mailto: of List-Unsubscribe): one message, stdin, a Maildir.

The requests are built from what a real edition carries: the test sends one to
the aiosmtpd server and answers its List-Unsubscribe mailto, as a mail client would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy import text

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


# Hostile mail: anyone can write to the unsubscribe address.


def nested(levels: int, text: str = "unsubscribe nothing-here") -> bytes:
    """A message whose body is `levels` multiparts deep (2,000 levels: ~140 KB)."""
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(levels)
    )
    closing = "".join(f"\r\n--b{i}--" for i in reversed(range(levels)))
    head = "From: deep@example.com\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
    return (head + opening + f"Content-Type: text/plain\r\n\r\n{text}\r\n" + closing).encode()


@pytest.mark.timeout(30)
def test_a_deeply_nested_message_is_unreadable_not_a_crash(engine, signer):
    data = nested(2_000)  # the parser recursed once per level: RecursionError
    assert len(data) > 100_000
    result = process_message(engine, signer, data)
    assert result.status is InboundStatus.UNREADABLE and not result.honoured
    assert result.detail == "it declares 2000 MIME boundaries (nested parts); a request has a few"


def test_a_token_in_a_modestly_nested_body_is_found(engine, signer):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    token = signer.sign(Purpose.UNSUBSCRIBE, "ann@example.com")
    result = process_message(engine, signer, nested(5, f"unsubscribe {token}"))
    assert result.status is InboundStatus.UNSUBSCRIBED


@pytest.mark.timeout(60)
def test_hostile_messages_are_set_aside_and_the_rest_are_processed(engine, signer, tmp_path):
    """Each message in isolation: the poison ones go to .poison/cur with their reason and are
    never tried again; the others, before and after them, are handled as usual."""
    for email in ("ann@example.com", "bob@example.com", "cat@example.com"):
        subscriber_ops.add_subscriber(engine, email)
    maildir = tmp_path / "Maildir"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    new = maildir / "new"

    def token(email: str) -> str:
        return signer.sign(Purpose.UNSUBSCRIBE, email)

    (new / "1.deep").write_bytes(nested(2_000))
    (new / "2.garbage").write_bytes(bytes(range(256)) * 400)
    huge = "=?utf-8?q?a?= " * 60_000  # 840 KB of encoded words: minutes for the email package
    (new / "3.huge-subject").write_bytes(
        f"From: bob@example.com\r\nSubject: unsubscribe {token('bob@example.com')} {huge}\r\n"
        "\r\nbye\r\n".encode()
    )
    latin1 = (
        b"From: Andr\xe9 <cat@example.com>\r\nSubject: d\xe9sabonner\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
        b"Merci, unsubscribe " + token("cat@example.com").encode() + b" \xe9t\xe9\r\n"
    )
    (new / "4.latin1").write_bytes(latin1)
    os.mkfifo(new / "5.fifo")  # reading it would wait for a writer for ever
    (new / "6.zero").symlink_to("/dev/zero")  # reading it would never end
    (new / "7.big").write_bytes(b"Subject: x\r\n\r\n" + b"x" * 2_000_000)
    (new / "8.ann").write_bytes(request(f"unsubscribe {token('ann@example.com')}"))
    for order, entry in enumerate(sorted(new.iterdir())):  # oldest first, in name order
        os.utime(entry, (1_700_000_000 + order,) * 2, follow_symlinks=False)

    results = process_maildir(engine, signer, maildir)

    by_name = {r.path.name.split(":")[0]: r for r in results if r.path}
    assert [r.path.name.split(":")[0] for r in results if r.path] == [
        "1.deep",
        "2.garbage",
        "3.huge-subject",
        "4.latin1",
        "5.fifo",
        "6.zero",
        "7.big",
        "8.ann",
    ]
    assert {name: r.status for name, r in by_name.items()} == {
        "1.deep": InboundStatus.UNREADABLE,
        "2.garbage": InboundStatus.NO_TOKEN,
        "3.huge-subject": InboundStatus.UNSUBSCRIBED,
        "4.latin1": InboundStatus.UNSUBSCRIBED,
        "5.fifo": InboundStatus.UNREADABLE,
        "6.zero": InboundStatus.UNREADABLE,
        "7.big": InboundStatus.UNREADABLE,
        "8.ann": InboundStatus.UNSUBSCRIBED,
    }
    assert by_name["5.fifo"].detail == "is a named pipe (FIFO), not a regular file"
    assert by_name["6.zero"].detail == "is a symbolic link, not a regular file"
    assert by_name["7.big"].detail == "is too large (2,000,014 bytes; a message is at most 1 MB)"
    assert by_name["4.latin1"].sender == "cat@example.com"
    assert list(new.iterdir()) == []
    poison = maildir / ".poison"
    assert sorted(p.name for p in (poison / "cur").iterdir()) == [
        "1.deep:2,",
        "5.fifo:2,",
        "6.zero:2,",
        "7.big:2,",
    ]
    assert (poison / "new").is_dir() and (poison / "tmp").is_dir()  # a Maildir++ folder
    assert sorted(p.name for p in (maildir / "cur").iterdir()) == [
        "2.garbage:2,FS",
        "3.huge-subject:2,S",
        "4.latin1:2,S",
        "8.ann:2,S",
    ]
    for email in ("ann@example.com", "bob@example.com", "cat@example.com"):
        assert status_of(engine, email) is SubscriberStatus.UNSUBSCRIBED
    assert process_maildir(engine, signer, maildir) == []  # set aside: never retried


def test_a_database_error_stops_the_run_and_keeps_the_message_for_the_next(
    engine, signer, tmp_path
):
    """The poison handling is for the message's faults only: a store that fails (injected:
    its table is gone) is not the message's fault, so it stays in new/ to be tried again."""
    maildir = tmp_path / "Maildir"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    message = maildir / "new" / "1.ann"
    message.write_bytes(request(f"unsubscribe {signer.sign(Purpose.UNSUBSCRIBE, 'a@b.org')}"))
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE bounce_events"))  # it refers to both (PostgreSQL)
        connection.execute(text("DROP TABLE deliveries"))
        connection.execute(text("DROP TABLE subscribers"))
    with pytest.raises(Exception):  # noqa: B017 - whichever error the store raises for it
        process_maildir(engine, signer, maildir)
    assert message.exists() and not (maildir / ".poison").exists()
