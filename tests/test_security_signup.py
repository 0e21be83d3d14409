"""The sign-up attacks of issue 11, replayed over HTTP; each test fails if the attack gets through.

The web app runs in-process (Starlette's TestClient) on a real database with the
recording aiosmtpd server as its relay, so "an email was sent" means the relay
received one. A client's address is the TestClient's peer (`client=`), or the
X-Forwarded-For a trusted proxy vouches for.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import update
from starlette.testclient import TestClient

from newsletter import subscribers as subscriber_ops
from newsletter.models import SubscriberStatus
from newsletter.store import subscribers as subscriber_store
from newsletter.store.engine import utcnow
from newsletter.store.schema import subscribers
from newsletter.tokens import Purpose, signer_for
from newsletter.web import create_app

PROXY = "127.0.0.1"
LURE = "PAYPAL SECURITY: your account is locked, log in at https://paypal.evil.example/login"
SUBJECT = "Confirm your subscription to The Daily Brief"


@contextmanager
def site(settings, peer: str = "198.51.100.7", **changes) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update=changes))
    with TestClient(app, base_url="https://testserver", client=(peer, 50000)) as client:
        yield client


def form_token(client: TestClient, headers: dict | None = None) -> str:
    page = client.get("/subscribe", headers=headers or {})
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def post_sign_up(client: TestClient, token: str, email: str, name: str = "", **headers: str):
    data = {"csrf_token": token, "email": email, "name": name, "website": ""}
    return client.post("/subscribe", data=data, headers=headers)


def sign_up(client: TestClient, email: str, name: str = ""):
    return post_sign_up(client, form_token(client), email, name)


def confirmations(smtp_server) -> list:
    return [item for item in smtp_server.received if item.message["Subject"] == SUBJECT]


def link_path(item) -> str:
    text = item.message.get_body(("plain",)).get_content()
    return re.search(r"https?://[^/\s]+(/confirm/\S+)", text).group(1)


def test_one_client_cannot_aim_the_form_at_a_mailbox(settings, engine, smtp_server, caplog):
    """Issue 11: "One client, one CSRF token, 200 POSTs for `victim+N@example.net`: 200
    confirmation emails in 1.5 s to one mailbox, each opening with the attacker's text as
    the greeting and the To name ("Hello PAYPAL SECURITY: your account is locked, log in at
    https://…"). The only limit is one confirmation per exact address per hour."

    30 POSTs show it as well as 200: the client's first SIGNUP_LIMIT_PER_CLIENT (5) are
    sent, without a word of the attacker's; every later one is a 429 that sends nothing."""
    with site(settings) as client, caplog.at_level(logging.WARNING, "newsletter.signup"):
        token = form_token(client)
        answers = [post_sign_up(client, token, f"victim+{n}@example.net", LURE) for n in range(30)]

    assert [a.status_code for a in answers] == [200] * 5 + [429] * 25
    refused = answers[-1]
    assert "try again" in refused.text and "nothing was sent" in refused.text
    assert 3500 <= int(refused.headers["retry-after"]) <= 3600
    sent = confirmations(smtp_server)
    assert len(sent) == 5
    for item in sent:
        assert item.message["To"].addresses[0].display_name == ""
        assert "PAYPAL" not in item.data.decode() and "evil.example" not in item.data.decode()
        assert item.message.get_body(("plain",)).get_content().startswith("Hello,")
    assert subscriber_store.get_subscriber(engine, "victim+5@example.net") is None  # not stored
    logged = [r for r in caplog.records if r.getMessage() == "signup_refused"]
    assert len(logged) == 25 and logged[0]._fields["limit"] == "per_client"


def test_rotating_forwarded_addresses_still_meet_the_domain_limit(settings, smtp_server):
    """The same attack from many clients (X-Forwarded-For rotated behind a trusted proxy,
    every address a new client): the recipient domain's limit stops it; a client that
    hammers uses up only its own share, so others still sign up."""
    with site(settings, PROXY, trusted_proxies=PROXY, signup_limit_per_domain=8) as client:
        token = form_token(client)
        answers = [
            post_sign_up(client, token, f"victim+{n}@example.net", **{"X-Forwarded-For": ip})
            for n, ip in enumerate(f"203.0.113.{n}" for n in range(1, 13))
        ]
        hammered = [
            post_sign_up(client, token, f"x{n}@example.org", **{"X-Forwarded-For": "192.0.2.9"})
            for n in range(20)
        ]
        other = post_sign_up(client, token, "ann@example.com", **{"X-Forwarded-For": "192.0.2.10"})

    assert [a.status_code for a in answers] == [200] * 8 + [429] * 4
    assert [a.status_code for a in hammered] == [200] * 5 + [429] * 15
    assert other.status_code == 200  # the 15 refused took nothing from the overall limit
    assert len(confirmations(smtp_server)) == 8 + 5 + 1


def test_a_used_confirmation_link_does_not_reactivate_someone_who_left(
    settings, engine, smtp_server
):
    """Issue 11: "a used confirmation link works again once a stranger re-submits the
    address, re-activating someone who unsubscribed"."""
    with site(settings) as owner:
        sign_up(owner, "ann@example.com")
        used = link_path(confirmations(smtp_server)[0])
        assert owner.post(used).status_code == 200
        token = signer_for(settings).sign(Purpose.UNSUBSCRIBE, "ann@example.com")
        assert owner.post(f"/unsubscribe/{token}").status_code == 200
    with site(settings, "203.0.113.66") as stranger:
        assert sign_up(stranger, "ann@example.com").status_code == 200  # Ann gets a new link
        replay = stranger.post(used)

    assert replay.status_code == 400 and "already used" in replay.text
    assert "sign up again for a new link" in replay.text
    assert status(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED
    assert len(confirmations(smtp_server)) == 2


def test_a_stranger_cannot_rename_a_pending_sign_up(settings, engine, smtp_server):
    """Issue 11: "a stranger can rename a pending sign-up"."""
    with site(settings) as owner:
        sign_up(owner, "ann@example.com", "Ann Lee")
    backdate(engine, "ann@example.com", hours=2)  # so the stranger's sign-up sends again
    with site(settings, "203.0.113.66") as stranger:
        assert sign_up(stranger, "ann@example.com", "Mallory").status_code == 200
        page = stranger.get(link_path(confirmations(smtp_server)[-1]))

    assert subscriber_store.get_subscriber(engine, "ann@example.com").name == "Ann Lee"
    assert len(confirmations(smtp_server)) == 2
    assert "Mallory" not in confirmations(smtp_server)[-1].data.decode()
    assert 'value="Ann Lee"' in page.text and "Mallory" not in page.text  # the link holder's


def test_a_long_name_cannot_add_a_recipient_to_the_confirmation(settings, smtp_server):
    """Issue 11: "the confirmation email's `To:` loses its quotes when a long name is folded
    (`…at once, compliance@evil.example` becomes a second recipient in the header)"."""
    name = "Security team, we need you to confirm all accounts at once, compliance@evil.example"
    with site(settings) as client:
        assert sign_up(client, "ann@example.com", name).status_code == 200

    [item] = confirmations(smtp_server)
    assert [a.addr_spec for a in item.message["To"].addresses] == ["ann@example.com"]
    assert re.search(rb"^To: <ann@example.com>\r\n", item.data, re.M)
    assert b"evil.example" not in item.data and item.rcpt_tos == ["ann@example.com"]


def test_someone_who_left_gets_at_most_one_confirmation_a_day(settings, engine, smtp_server):
    """The mail cannon aimed at people who unsubscribed: each may get one link a day."""
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    subscriber_ops.unsubscribe(engine, "ann@example.com")
    with site(settings, "203.0.113.66") as stranger:
        assert sign_up(stranger, "ann@example.com").status_code == 200
        backdate(engine, "ann@example.com", hours=23)
        assert sign_up(stranger, "ann@example.com").status_code == 200
        assert len(confirmations(smtp_server)) == 1
        backdate(engine, "ann@example.com", hours=25)
        assert sign_up(stranger, "ann@example.com").status_code == 200
    assert len(confirmations(smtp_server)) == 2
    assert status(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED


def status(engine, email: str) -> SubscriberStatus:
    return subscriber_store.get_subscriber(engine, email).status


def backdate(engine, email: str, *, hours: float) -> None:
    """The last confirmation went out `hours` ago."""
    with engine.begin() as conn:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.email_key == email.lower())
            .values(confirmation_sent_at=utcnow() - dt.timedelta(hours=hours))
        )
