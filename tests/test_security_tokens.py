"""Attacks on the links in emails, replayed over HTTP (issue 11, "Keys with one purpose each").

Real parts: editions really sent through the pipeline to the in-process aiosmtpd
server, and the real web app (Starlette's TestClient) answering the links found
in the received bytes.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
from email import message_from_bytes, policy

import pytest
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr
from starlette.testclient import TestClient

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.models import SubscriberStatus
from newsletter.store import subscribers as subscriber_store
from newsletter.web import create_app

DAY = dt.date(2026, 11, 25)
ADDRESS = "ann.reader@example.com"
NEW_SECRET = "a-brand-new-secret-after-rotation-0123456789"
URL = re.compile(r"https?://[^\s\"'<>]+|mailto:[^\s\"'<>]+")


def received_message(engine, settings, smtp_server) -> bytes:
    prepared = prepare_edition(engine, settings, DAY)
    assert prepared is not None
    asyncio.run(send_edition(engine, settings, prepared.stored))
    [message] = [m for m in smtp_server.received if ADDRESS in m.rcpt_tos]
    return message.data


def urls_in(data: bytes) -> list[str]:
    """Every URL a reader (or an access log) sees: headers and the decoded text and HTML."""
    message = message_from_bytes(data, policy=policy.default)
    text = "\n".join(f"{name}: {value}" for name, value in message.items())
    for part in message.walk():
        if part.get_content_maintype() == "text":
            text += "\n" + part.get_content()
    return URL.findall(text)


def readable(fragment: str) -> list[bytes]:
    """What a passer-by can decode from a URL: the text itself and base64 at any alignment."""
    out = [fragment.encode()]
    for piece in re.split(r"[./?=&%]", fragment):
        for start in range(4):
            chunk = piece[start:]
            try:
                out.append(base64.urlsafe_b64decode(chunk + "=" * (-len(chunk) % 4)))
            except (ValueError, TypeError):
                continue
    return out


def test_no_url_in_a_sent_edition_reveals_the_subscriber(engine, settings, smtp_server):
    """Attack: "unsubscribe and confirmation URLs carry the subscriber's address in
    readable base64 (in every access log)"."""
    subscriber_ops.add_subscriber(engine, ADDRESS, "Ann")
    data = received_message(engine, settings, smtp_server)
    links = [u for u in urls_in(data) if "unsubscribe" in u]
    assert len(links) >= 2  # the header's https and mailto, and the footer's link
    for link in links:
        for decoded in readable(link):
            assert b"ann.reader" not in decoded.lower(), link


def test_no_url_in_a_confirmation_email_reveals_the_address(settings, smtp_server):
    """The same attack on the confirmation link of a sign-up."""
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        form = client.get("/subscribe")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        answer = client.post(
            "/subscribe", data={"email": ADDRESS, "name": "", "csrf_token": token.group(1)}
        )
        assert answer.status_code == 200, answer.text
    [message] = [m for m in smtp_server.received if ADDRESS in m.rcpt_tos]
    links = [u for u in urls_in(message.data) if "/confirm/" in u]
    assert links
    for link in links:
        for decoded in readable(link):
            assert b"ann.reader" not in decoded.lower(), link


def one_click(settings, data: bytes) -> int:
    """The RFC 8058 POST a mail provider makes to the List-Unsubscribe URL of `data`."""
    header = message_from_bytes(data, policy=policy.default)["List-Unsubscribe"]
    [url] = re.findall(r"<(https://[^>]+)>", str(header))
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        path = re.sub(r"^https://[^/]+", "", url)
        return client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code


def status_of(engine) -> SubscriberStatus:
    found = subscriber_store.get_subscriber(engine, ADDRESS)
    assert found is not None
    return found.status


def test_a_rotated_secret_keeps_the_links_already_sent_working(engine, settings, smtp_server):
    """Attack (on the operator): "the only way out, rotating SECRET_KEY, also breaks every
    unsubscribe link ever sent". With the old key in PREVIOUS_SECRET_KEYS it does not."""
    subscriber_ops.add_subscriber(engine, ADDRESS)
    data = received_message(engine, settings, smtp_server)
    old = settings.secret_key.get_secret_value()

    rotated_alone = settings.model_copy(update={"secret_key": SecretStr(NEW_SECRET)})
    assert one_click(rotated_alone, data) == 400  # a key nobody kept: refused, nothing changed
    assert status_of(engine) is SubscriberStatus.ACTIVE

    rotated = rotated_alone.model_copy(update={"previous_secret_keys": SecretStr(old)})
    assert rotated.previous_secrets == (old,)
    assert one_click(rotated, data) == 200
    assert status_of(engine) is SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("rotated", [False, True])
def test_a_link_in_the_old_readable_format_still_unsubscribes(engine, settings, rotated):
    """Links mailed before tokens were sealed must keep working (RFC 8058: for a long time)."""
    subscriber_ops.add_subscriber(engine, ADDRESS)
    old = settings.secret_key.get_secret_value()
    token = URLSafeTimedSerializer(old, salt="newsletter.unsubscribe").dumps(ADDRESS)
    if rotated:
        settings = settings.model_copy(
            update={"secret_key": SecretStr(NEW_SECRET), "previous_secret_keys": SecretStr(old)}
        )
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        page = client.get(f"/unsubscribe/{token}")
        done = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert page.status_code == 200 and done.status_code == 200
    assert status_of(engine) is SubscriberStatus.UNSUBSCRIBED
