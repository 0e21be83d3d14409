"""Sign-up's limits and single-use links, on the real database (SQLite, or PostgreSQL with
--db=postgresql): concurrent requests racing for the last slot, pruning, which client is
which, and what a relay failure leaves behind. The attacks themselves, over HTTP, are
in test_security_signup.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator

import httpx
import livesite
import pytest
from faultsmtp import Fault, FaultPlan, FaultServer
from sqlalchemy import event, insert, select
from starlette.testclient import TestClient

from newsletter import signup
from newsletter.models import SignupOutcome, SubscriberStatus
from newsletter.store import consent
from newsletter.store import subscribers as subscriber_store
from newsletter.store.engine import utcnow
from newsletter.store.schema import signup_requests, subscribers
from newsletter.store.signup_limits import (
    Limit,
    Limits,
    count_signup_requests,
    take_signup_slot,
)
from newsletter.tokens import signer_for
from newsletter.web import create_app

HOUR = dt.timedelta(hours=1)
SUBJECT = "Confirm your subscription to The Daily Brief"


def limits(per_client: int = 3, per_domain: int = 100, total: int = 100) -> Limits:
    return Limits(per_client=per_client, per_domain=per_domain, total=total, window=HOUR)


def race(count: int, work) -> list:  # noqa: ANN001
    """Run `work(i)` in `count` threads released at once; their results in order."""
    barrier = threading.Barrier(count, timeout=30)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:  # noqa: BLE001 (re-raised below, in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request never finished"
    if errors:
        raise errors[0]
    return results


# The limits in the store


@pytest.fixture
def slow_count(engine) -> Iterator[None]:
    """Each count of the limits takes 20 ms longer: a window wide enough that two requests
    racing for the last slot would both get it, were the count not serialized with the insert."""

    def linger(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "signup_requests" in statement:
            time.sleep(0.02)

    event.listen(engine, "after_cursor_execute", linger)
    yield
    event.remove(engine, "after_cursor_execute", linger)


@pytest.mark.usefixtures("slow_count")
def test_concurrent_requests_never_both_take_the_last_slot(engine):
    """Twelve requests from one client at once, three slots: exactly three get one."""
    results = race(
        12, lambda i: take_signup_slot(engine, client="192.0.2.1", domain=f"d{i}", limits=limits())
    )

    assert sum(result is None for result in results) == 3
    assert {r.limit for r in results if r is not None} == {Limit.PER_CLIENT}
    assert count_signup_requests(engine) == 3  # the refused left no row


@pytest.mark.usefixtures("slow_count")
def test_concurrent_requests_meet_the_total_limit_too(engine):
    results = race(
        12,
        lambda i: take_signup_slot(
            engine, client=f"192.0.2.{i}", domain=f"d{i}", limits=limits(total=5)
        ),
    )
    assert sum(result is None for result in results) == 5
    assert count_signup_requests(engine) == 5


def test_a_refused_request_uses_up_no_other_limit(engine):
    take = lambda client, domain: take_signup_slot(  # noqa: E731
        engine, client=client, domain=domain, limits=limits(per_client=2, per_domain=2, total=4)
    )
    assert take("a", "x.example") is None and take("a", "x.example") is None
    for _ in range(5):
        assert take("a", "y.example").limit is Limit.PER_CLIENT
    assert take("b", "y.example") is None  # y.example's count is 1, not 6
    assert take("c", "x.example").limit is Limit.PER_DOMAIN  # x.example: 2, and this one
    assert take("c", "z.example") is None
    assert take("d", "w.example").limit is Limit.TOTAL


def test_the_window_slides_and_retry_after_says_when_a_slot_frees(engine):
    now = utcnow()
    for minutes in (50, 20):
        assert (
            take_signup_slot(
                engine,
                client="a",
                domain="x",
                limits=limits(per_client=2),
                now=now - dt.timedelta(minutes=minutes),
            )
            is None
        )
    refused = take_signup_slot(engine, client="a", domain="x", limits=limits(per_client=2), now=now)
    assert refused.limit is Limit.PER_CLIENT
    assert refused.retry_after == dt.timedelta(minutes=10)  # the one from 50 minutes ago
    later = now + dt.timedelta(minutes=11)
    assert (
        take_signup_slot(engine, client="a", domain="x", limits=limits(per_client=2), now=later)
        is None
    )


def test_rows_older_than_a_day_are_pruned(engine):
    with engine.begin() as conn:
        conn.execute(
            insert(signup_requests),
            [
                {"at": utcnow() - dt.timedelta(hours=hours), "client": "a", "domain": "x"}
                for hours in (30, 25, 23)
            ],
        )
    assert take_signup_slot(engine, client="b", domain="y", limits=limits()) is None
    with engine.connect() as conn:
        kept = conn.execute(select(signup_requests.c.client)).scalars().all()
    assert sorted(kept) == ["a", "b"]


@pytest.mark.parametrize(
    ("client", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),  # the same /64: one client
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("testclient", "testclient"),
    ],
)
def test_an_ipv6_client_is_its_slash_64(client, key):
    assert signup.client_key(client) == key


# Concurrent sign-ups over HTTP, on the real server


def test_concurrent_sign_ups_over_http_meet_the_client_limit(settings, engine, smtp_server):
    """Twelve POSTs at once from one client with one form token: three are sent, nine 429."""

    async def attack(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            page = await client.get("/subscribe")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/subscribe",
                        data={"csrf_token": token, "email": f"v{n}@example.net", "website": ""},
                    )
                    for n in range(12)
                )
            )
        return sorted(answer.status_code for answer in answers)

    strict = settings.model_copy(update={"signup_limit_per_client": 3})
    with livesite.serve(strict, own_url=True) as url:
        codes = asyncio.run(attack(url))

    assert codes == [200] * 3 + [429] * 9
    assert len(smtp_server.received) == 3
    assert count_signup_requests(engine) == 3


# Single-use links and the relay


def nonce_of(engine, email: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(subscribers.c.confirm_nonce).where(subscribers.c.email_key == email)
        ).scalar_one()


def link_of(data: bytes) -> str:
    text = email.message_from_bytes(data, policy=email.policy.default).get_body(("plain",))
    return re.search(r"https?://[^/\s]+(/confirm/\S+)", text.get_content()).group(1)


def test_each_email_gets_a_new_nonce_and_only_its_link_confirms(settings, engine, smtp_server):
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        page = client.get("/subscribe")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        form = {"csrf_token": token, "email": "ann@example.com", "name": "Ann", "website": ""}
        assert client.post("/subscribe", data=form).status_code == 200
        first = nonce_of(engine, "ann@example.com")
        with engine.begin() as conn:  # an hour later, she asks again
            conn.execute(subscribers.update().values(confirmation_sent_at=utcnow() - 2 * HOUR))
        assert client.post("/subscribe", data=form).status_code == 200
        second = nonce_of(engine, "ann@example.com")
        old, new = (link_of(item.data) for item in smtp_server.received)

        assert first != second and len(second) == 32
        assert client.get(old).status_code == 400  # the earlier email's link: replaced
        assert client.post(old).status_code == 400
        shown = client.get(new)
        assert shown.status_code == 200 and 'value="Ann"' in shown.text
        done = client.post(new, data={"name": "  Ann\tLee\u202e "})
        assert done.status_code == 200

    subscriber = subscriber_store.get_subscriber(engine, "ann@example.com")
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.name == "Ann Lee"  # the owner's correction, through clean_name
    assert nonce_of(engine, "ann@example.com") is None  # used up


def test_a_relay_that_took_the_message_but_lost_the_reply(settings, engine):
    """The relay records the message and drops the connection before its 250: the sign-up
    is FAILED and released, yet the email may arrive. Its link confirms until a newer email
    replaces it; the retry's email gets a new nonce whose link confirms; a stale release
    never touches a newer claim."""
    plan = FaultPlan(per_address={"ann@example.com": Fault("data", "drop_after")})
    signer = signer_for(settings)
    with FaultServer(plan) as relay:
        flaky = settings.model_copy(update={"smtp_host": relay.host, "smtp_port": relay.port})
        result = asyncio.run(signup.sign_up(engine, flaky, signer, "ann@example.com", client="a"))
        assert result.outcome is SignupOutcome.FAILED
        [delivered] = relay.delivered
        assert consent.get_consent(engine, "ann@example.com").confirmation_sent_at is None
        lost = link_of(delivered.data).rsplit("/", 1)[1]
        email, nonce = signup.read_link(settings, signer, lost)
        assert nonce == nonce_of(engine, "ann@example.com")  # the arrived link still works
        assert signup.pending_name(engine, email, nonce) == ""

        plan.per_address.clear()  # the relay is well again: the retry sends at once
        retry = asyncio.run(signup.sign_up(engine, flaky, signer, "ann@example.com", client="a"))
        assert retry.outcome is SignupOutcome.SENT
        newer = link_of(relay.delivered[-1].data).rsplit("/", 1)[1]

    stale = consent.Claim(utcnow() - HOUR, nonce)
    consent.release_confirmation(engine, "ann@example.com", stale)  # a late release: no effect
    assert consent.get_consent(engine, "ann@example.com").confirmation_sent_at is not None
    _, newer_nonce = signup.read_link(settings, signer, newer)
    assert signup.pending_name(engine, email, nonce) is None  # replaced by the newer email
    assert signup.confirm(engine, email, nonce, name=None, ip="x", user_agent="") is (
        signup.ConfirmOutcome.NOT_PENDING
    )
    assert signup.confirm(engine, email, newer_nonce, name=None, ip="x", user_agent="") is (
        signup.ConfirmOutcome.CONFIRMED
    )


def test_an_unknown_or_expired_sign_up_and_a_used_link_all_say_sign_up_again(
    settings, engine, smtp_server
):
    signer = signer_for(settings)
    gone = signer.sign_confirmation("nobody@example.com", "00" * 16)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        page = client.get(f"/confirm/{gone}")
    assert page.status_code == 400
    assert "sign up again for a new link" in page.text and "Nothing was changed" in page.text
    assert subscriber_store.get_subscriber(engine, "nobody@example.com") is None


def test_a_link_sent_before_an_unsubscribe_cannot_undo_it(settings, engine, smtp_server):
    """A pending sign-up made active by someone else (an import, the editor) keeps its
    nonce; when the person then unsubscribes, the link from before must not bring them back."""
    signer = signer_for(settings)
    asyncio.run(signup.sign_up(engine, settings, signer, "ann@example.com", client="a"))
    token = link_of(smtp_server.received[0].data).rsplit("/", 1)[1]
    email, nonce = signup.read_link(settings, signer, token)
    subscriber_store.set_status(engine, "ann@example.com", SubscriberStatus.ACTIVE)
    with engine.begin() as conn:  # she unsubscribes a little later
        conn.execute(subscribers.update().values(confirmation_sent_at=utcnow() - HOUR))
    subscriber_store.set_status(engine, "ann@example.com", SubscriberStatus.UNSUBSCRIBED)

    assert signup.pending_name(engine, email, nonce) is None
    outcome = signup.confirm(engine, email, nonce, name=None, ip="x", user_agent="")
    assert outcome is signup.ConfirmOutcome.NOT_PENDING
    assert subscriber_store.get_subscriber(engine, email).status is SubscriberStatus.UNSUBSCRIBED
