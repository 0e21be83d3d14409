"""The subscriber and operator side of the web app over HTTP (Starlette's TestClient):
one-click unsubscribe, double opt-in sign-up, the archive and its feed, /healthz, /metrics.

Real parts throughout: a SQLite file, the aiosmtpd server that records every
message (confirmation emails and editions), and real sends through the pipeline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from olddb import OLDEST, make_old_database
from sqlalchemy import create_engine, select, update
from starlette.testclient import TestClient

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.capture import free_port
from newsletter.models import SubscriberStatus
from newsletter.scheduler import LOCK_NAME, STALE_AFTER
from newsletter.signup import expire_pending
from newsletter.store import consent as consent_store
from newsletter.store import editions as edition_store
from newsletter.store import subscribers as subscriber_store
from newsletter.store.engine import open_engine, utcnow
from newsletter.store.locks import acquire_lock
from newsletter.store.migrate import upgrade
from newsletter.store.schema import locks, subscribers
from newsletter.tokens import Purpose, Signer
from newsletter.web import create_app

DAY = dt.date(2026, 11, 25)
ATOM = "{http://www.w3.org/2005/Atom}"
CONFIRM_SUBJECT = "Confirm your subscription to The Daily Brief"


# Fixtures and helpers


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    # https: the session cookie is Secure because BASE_URL is https
    with TestClient(create_app(settings), base_url="https://testserver") as test_client:
        yield test_client


@pytest.fixture
def signer(settings) -> Signer:
    return Signer(settings.secret_key.get_secret_value())


def status_of(engine, email: str) -> SubscriberStatus | None:
    found = subscriber_store.get_subscriber(engine, email)
    return found.status if found else None


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def old_token(signer: Signer, purpose: Purpose, email: str, age: dt.timedelta) -> str:
    """A genuine token issued `age` ago."""
    return signer.sign(purpose, email, issued=dt.datetime.now(dt.UTC) - age)


def altered(token: str) -> str:
    """The token with one character of its signature changed."""
    last = token[-2]
    return token[:-2] + ("A" if last != "A" else "B") + token[-1]


def csrf_of(client: TestClient, path: str = "/subscribe") -> str:
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def sign_up(client: TestClient, email: str, name: str = "", **extra: str):
    data = {"csrf_token": csrf_of(client), "email": email, "name": name, "website": "", **extra}
    return client.post("/subscribe", data=data)


def confirmations(smtp_server, email: str | None = None) -> list:
    return [
        item.message
        for item in smtp_server.received
        if item.message["Subject"] == CONFIRM_SUBJECT and (email is None or email in item.rcpt_tos)
    ]


def confirm_text(message) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def confirm_link(message) -> str:
    text = message.get_body(("plain",)).get_content()
    found = re.search(r"https?://\S+/confirm/\S+", text)
    assert found, text
    return found.group(0)


def stored_nonce(engine, email: str) -> str:
    with engine.connect() as conn:
        return conn.execute(
            select(subscribers.c.confirm_nonce).where(subscribers.c.email_key == email.lower())
        ).scalar_one()


def send(engine, settings, date=DAY):
    prepared = prepare_edition(engine, settings, date)
    assert prepared is not None
    return asyncio.run(send_edition(engine, settings, prepared.stored))


def backdate(engine, email: str, hours: float, *columns: str) -> None:
    moment = utcnow() - dt.timedelta(hours=hours)
    with engine.begin() as conn:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.email_key == email.lower())
            .values(**dict.fromkeys(columns, moment))
        )


# One-click unsubscribe (RFC 8058)


def test_get_shows_a_button_and_never_unsubscribes(client, engine, signer):
    subscriber_ops.add_subscriber(engine, "ann@example.com", "Ann")
    token = signer.sign(Purpose.UNSUBSCRIBE, "ann@example.com")

    for _ in range(3):  # a link scanner, a preview, the person
        page = client.get(f"/unsubscribe/{token}")
        assert page.status_code == 200
    assert client.head(f"/unsubscribe/{token}").status_code == 200

    assert status_of(engine, "ann@example.com") is SubscriberStatus.ACTIVE
    assert "a•••@example.com" in page.text and "ann@example.com" not in page.text
    assert f'<form method="post" action="/unsubscribe/{token}">' in page.text
    assert 'name="csrf_token"' not in page.text  # the token is the proof, no session needed
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_one_click_post_unsubscribes_at_once_and_the_next_send_skips_them(
    client, engine, settings, signer, smtp_server, caplog
):
    for email in ("ann@example.com", "bob@example.com", "cat@example.com"):
        subscriber_ops.add_subscriber(engine, email)
    ann = signer.sign(Purpose.UNSUBSCRIBE, "ann@example.com")
    bob = signer.sign(Purpose.UNSUBSCRIBE, "bob@example.com")

    # What a mail provider sends: no cookie, no CSRF token; urlencoded or multipart bodies.
    fresh = TestClient(client.app, base_url="https://testserver")
    with caplog.at_level(logging.INFO, logger="newsletter.web"):
        first = fresh.post(f"/unsubscribe/{ann}", data={"List-Unsubscribe": "One-Click"})
    second = fresh.post(f"/unsubscribe/{bob}", files={"List-Unsubscribe": (None, "One-Click")})

    assert first.status_code == 200 and second.status_code == 200
    assert "You're unsubscribed" in first.text or "You&#39;re unsubscribed" in first.text
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED
    assert status_of(engine, "bob@example.com") is SubscriberStatus.UNSUBSCRIBED
    logged = [r for r in caplog.records if r.getMessage() == "unsubscribe"]
    assert logged and logged[0]._fields["recipient"] == "ann@example.com"
    assert logged[0]._fields["via"] == "one-click" and logged[0]._fields["changed"] is True

    send(engine, settings)
    assert smtp_server.recipients() == ["cat@example.com"]


def test_the_page_button_unsubscribes_and_twice_is_fine(client, engine, signer):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    token = signer.sign(Purpose.UNSUBSCRIBE, "ann@example.com")
    form = {"List-Unsubscribe": "One-Click", "from": "page"}

    first = client.post(f"/unsubscribe/{token}", data=form)
    again = client.post(f"/unsubscribe/{token}", data=form)

    assert first.status_code == again.status_code == 200
    assert first.text == again.text
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED


def test_an_address_not_on_the_list_gets_the_same_answer_and_nothing_is_stored(
    client, engine, signer
):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    known = client.post(f"/unsubscribe/{signer.sign(Purpose.UNSUBSCRIBE, 'ann@example.com')}")
    token = signer.sign(Purpose.UNSUBSCRIBE, "nobody@example.com")
    unknown = client.post(f"/unsubscribe/{token}")
    assert unknown.status_code == 200
    assert unknown.text.replace("n•••", "a•••") == known.text
    assert subscriber_store.get_subscriber(engine, "nobody@example.com") is None


@pytest.mark.parametrize("kind", ["forged", "altered", "expired", "wrong purpose", "garbage"])
def test_bad_unsubscribe_tokens_are_refused_and_change_nothing(client, engine, signer, kind):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    email = "ann@example.com"
    token = {
        "forged": lambda: Signer("some-other-secret").sign(Purpose.UNSUBSCRIBE, email),
        "altered": lambda: altered(signer.sign(Purpose.UNSUBSCRIBE, email)),
        "expired": lambda: old_token(signer, Purpose.UNSUBSCRIBE, email, dt.timedelta(days=401)),
        "wrong purpose": lambda: signer.sign(Purpose.CONFIRM, email),
        "garbage": lambda: "not-a-token",
    }[kind]()

    page = client.get(f"/unsubscribe/{token}")
    post = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})

    assert page.status_code == post.status_code == 400
    assert "This link does not work" in post.text and "Nothing was changed" in post.text
    if kind == "expired":
        assert "expired" in post.text
    assert status_of(engine, email) is SubscriberStatus.ACTIVE


def test_a_token_just_inside_its_lifetime_still_works(client, engine, signer):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    token = old_token(signer, Purpose.UNSUBSCRIBE, "ann@example.com", dt.timedelta(days=399))
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED


def test_the_general_unsubscribe_page_explains_and_changes_nothing(client):
    page = client.get("/unsubscribe")
    assert page.status_code == 200 and "How to unsubscribe" in page.text


# Sign-up with double opt-in


def test_the_form_has_a_csrf_token_and_a_hidden_honeypot(client):
    page = client.get("/subscribe")
    assert page.status_code == 200
    assert 'name="csrf_token"' in page.text and 'type="email"' in page.text
    honeypot = re.search(r'<div class="hp" aria-hidden="true">.*?</div>', page.text, re.S)
    assert honeypot and 'name="website"' in honeypot.group(0)
    assert 'tabindex="-1"' in honeypot.group(0)


def test_a_post_without_the_csrf_token_is_refused(client, engine, smtp_server):
    client.get("/subscribe")
    refused = client.post("/subscribe", data={"email": "ann@example.com", "website": ""})
    forged = client.post(
        "/subscribe", data={"email": "ann@example.com", "csrf_token": "guess", "website": ""}
    )
    assert refused.status_code == forged.status_code == 403
    assert "expired" in refused.text and 'value="ann@example.com"' in refused.text
    assert subscriber_store.get_subscriber(engine, "ann@example.com") is None
    assert smtp_server.received == []


def test_a_bot_filling_the_honeypot_sees_success_but_nothing_happens(client, engine, smtp_server):
    answer = sign_up(client, "bot@example.com", website="http://spam.example")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert subscriber_store.get_subscriber(engine, "bot@example.com") is None
    assert smtp_server.received == []


def test_sign_up_then_confirm_records_consent(client, engine, settings, smtp_server):
    answer = sign_up(client, "Ann@Example.com", "Ann Lee")

    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert status_of(engine, "ann@example.com") is SubscriberStatus.PENDING
    [message] = confirmations(smtp_server)
    assert smtp_server.received[0].rcpt_tos == ["Ann@example.com"]
    assert smtp_server.received[0].mail_from == settings.from_address
    assert message["To"].addresses[0].display_name == ""  # no typed text in the email
    assert "Ann Lee" not in message.as_string() and "Hello,\n" in confirm_text(message)
    assert message.get_content_type() == "multipart/alternative"
    assert "List-Unsubscribe" not in message and message["Auto-Submitted"] == "auto-generated"
    link = confirm_link(message)
    assert link.startswith("https://news.example.org/confirm/")
    assert link in message.get_body(("html",)).get_content()

    shown = client.get(path_of(link))  # what a scanner or the person opens: no change
    assert shown.status_code == 200 and ">Confirm</button>" in shown.text
    assert 'name="name" value="Ann Lee"' in shown.text  # the link holder sees the name
    assert status_of(engine, "ann@example.com") is SubscriberStatus.PENDING

    done = client.post(path_of(link), headers={"User-Agent": "Mozilla/5.0 (Test) Browser"})
    assert done.status_code == 200 and "subscribed" in done.text
    assert status_of(engine, "ann@example.com") is SubscriberStatus.ACTIVE
    consent = consent_store.get_consent(engine, "ann@example.com")
    assert consent.consent_user_agent == "Mozilla/5.0 (Test) Browser"
    assert consent.consent_ip == "testclient"  # the TestClient's peer name
    assert abs((utcnow() - consent.consent_at).total_seconds()) < 60
    again = client.post(path_of(link))  # a link confirms once
    assert again.status_code == 400 and "already used" in again.text
    assert status_of(engine, "ann@example.com") is SubscriberStatus.ACTIVE

    send(engine, settings)
    assert "Ann@example.com" in smtp_server.recipients()


def test_at_most_one_confirmation_per_address_per_hour(client, engine, smtp_server):
    assert sign_up(client, "ann@example.com").status_code == 200
    assert sign_up(client, "ANN@example.com", "Ann").status_code == 200
    assert len(confirmations(smtp_server)) == 1

    backdate(engine, "ann@example.com", 1.1, "confirmation_sent_at")
    assert sign_up(client, "ann@example.com").status_code == 200
    assert len(confirmations(smtp_server)) == 2
    assert subscriber_store.get_subscriber(engine, "ann@example.com").name == ""  # never renamed


def test_an_active_address_gets_the_same_page_and_no_email(client, engine, smtp_server):
    subscriber_ops.add_subscriber(engine, "ann@example.com", "Ann")
    new = sign_up(client, "new@example.com")
    known = sign_up(client, "ann@example.com", "Mallory")
    assert known.status_code == 200
    assert known.text.replace("ann@", "new@") == new.text
    assert confirmations(smtp_server, "ann@example.com") == []
    assert subscriber_store.get_subscriber(engine, "ann@example.com").name == "Ann"


def test_someone_who_left_comes_back_only_by_confirming(client, engine, smtp_server):
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    subscriber_ops.unsubscribe(engine, "ann@example.com")

    assert sign_up(client, "ann@example.com").status_code == 200
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED  # not yet
    [message] = confirmations(smtp_server)
    expire_pending(engine, dt.timedelta(0))  # expiry never erases the unsubscribe record
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED

    assert client.post(path_of(confirm_link(message))).status_code == 200
    assert status_of(engine, "ann@example.com") is SubscriberStatus.ACTIVE


def test_an_old_confirmation_link_cannot_undo_a_later_unsubscribe(client, engine, smtp_server):
    sign_up(client, "ann@example.com")
    link = path_of(confirm_link(confirmations(smtp_server)[0]))
    assert client.post(link).status_code == 200
    subscriber_ops.unsubscribe(engine, "ann@example.com")

    again = client.post(link)

    assert again.status_code == 400 and "Sign up again" in again.text
    assert status_of(engine, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("kind", ["forged", "altered", "expired", "wrong purpose"])
def test_bad_confirmation_tokens_are_refused(client, engine, signer, smtp_server, kind):
    sign_up(client, "ann@example.com")
    email = "ann@example.com"
    nonce = stored_nonce(engine, email)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=49)
    token = {
        "forged": lambda: Signer("some-other-secret").sign_confirmation(email, nonce),
        "altered": lambda: altered(signer.sign_confirmation(email, nonce)),
        "expired": lambda: signer.sign_confirmation(email, nonce, issued=long_ago),
        "wrong purpose": lambda: signer.sign(Purpose.UNSUBSCRIBE, email),
    }[kind]()
    assert client.get(f"/confirm/{token}").status_code == 400
    assert client.post(f"/confirm/{token}").status_code == 400
    assert status_of(engine, email) is SubscriberStatus.PENDING


def test_an_invalid_address_is_refused_with_the_form_kept(client, engine, smtp_server):
    answer = sign_up(client, "not an address", "Ann")
    assert answer.status_code == 400
    assert "not a valid email address" in answer.text and 'value="Ann"' in answer.text
    assert smtp_server.received == []


def test_a_relay_failure_is_told_honestly_and_a_retry_works(client, settings, engine, smtp_server):
    down = settings.model_copy(update={"smtp_port": free_port()})  # nothing listens there
    with TestClient(create_app(down), base_url="https://testserver") as broken:
        answer = sign_up(broken, "ann@example.com")
    assert answer.status_code == 503 and "could not send the confirmation" in answer.text
    assert status_of(engine, "ann@example.com") is SubscriberStatus.PENDING
    assert consent_store.get_consent(engine, "ann@example.com").confirmation_sent_at is None

    assert sign_up(client, "ann@example.com").status_code == 200  # relay back: sent at once
    assert len(confirmations(smtp_server)) == 1


def test_unconfirmed_sign_ups_expire(client, engine, settings, smtp_server):
    sign_up(client, "old@example.com")
    sign_up(client, "recent@example.com")
    subscriber_ops.add_subscriber(engine, "active@example.com")
    for email in ("old@example.com", "active@example.com"):
        backdate(engine, email, 49, "created_at", "confirmation_sent_at")

    sign_up(client, "new@example.com")  # every sign-up forgets the expired ones

    assert subscriber_store.get_subscriber(engine, "old@example.com") is None
    assert status_of(engine, "recent@example.com") is SubscriberStatus.PENDING
    assert status_of(engine, "active@example.com") is SubscriberStatus.ACTIVE
    backdate(engine, "recent@example.com", 47, "created_at", "confirmation_sent_at")
    assert expire_pending(engine, dt.timedelta(hours=settings.signup_expiry_hours)) == 0
    backdate(engine, "recent@example.com", 49, "created_at", "confirmation_sent_at")
    assert expire_pending(engine, dt.timedelta(hours=settings.signup_expiry_hours)) == 1


def test_the_sign_up_columns_are_added_to_an_older_database(new_database_url):
    url = new_database_url("old", empty=True)
    make_old_database(url, OLDEST)  # the schema from before web sign-up
    assert upgrade(url).unversioned  # `newsletter init` upgrades it
    engine = open_engine(url)
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    assert consent_store.get_consent(engine, "ann@example.com").consent_at is None
    assert upgrade(url).describe().endswith("up to date")  # a second init finds nothing to do


# The archive and its feed


@pytest.fixture
def published(engine, settings, smtp_server):
    """Two editions sent (24th, 25th) and one built but never sent (23rd)."""
    subscriber_ops.add_subscriber(engine, "ann@example.com", "Ann Secret")
    send(engine, settings, dt.date(2026, 11, 24))
    send(engine, settings, DAY)
    assert prepare_edition(engine, settings, dt.date(2026, 11, 23)) is not None
    return {d: edition_store.get_edition(engine, d) for d in (dt.date(2026, 11, 24), DAY)}


def test_the_archive_lists_sent_editions_newest_first(client, published):
    page = client.get("/archive")
    assert page.status_code == 200
    links = re.findall(r'href="/archive/(\d{4}-\d{2}-\d{2})"', page.text)
    assert links == ["2026-11-25", "2026-11-24"]
    for stored in published.values():
        subject = stored.rendered.subject.replace("'", "&#39;").replace('"', "&#34;")
        assert subject.replace("&", "&amp;") in page.text or subject in page.text
    assert 'type="application/atom+xml"' in page.text


def test_an_edition_page_is_the_stored_email_with_nothing_personal(client, settings, published):
    page = client.get("/archive/2026-11-25")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "nlslot" not in page.text.lower()
    assert "Ann Secret" not in page.text and "ann@example.com" not in page.text
    assert 'href="https://news.example.org/archive/2026-11-25"' in page.text  # view online: itself
    assert 'href="https://news.example.org/unsubscribe"' in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'href="/archive"' in page.text  # the bar back to the index


@pytest.mark.parametrize(
    "date", ["2026-11-23", "2026-11-22", "2026-13-45", "yesterday", "2026-1-5", "2026-11-25x"]
)
def test_unsent_missing_and_malformed_dates_are_404(client, published, date):
    page = client.get(f"/archive/{date}")
    assert page.status_code == 404 and "No such edition" in page.text


def test_a_held_edition_is_not_public(client, engine, settings, published):
    stored = edition_store.get_edition(engine, dt.date(2026, 11, 23))
    edition_store.set_edition_status(engine, stored.id, edition_store.EditionStatus.HELD)
    assert client.get("/archive/2026-11-23").status_code == 404
    assert "2026-11-23" not in client.get("/archive").text


def test_the_feed_is_valid_atom(client, published):
    answer = client.get("/archive/feed.xml")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(answer.content)
    assert root.tag == f"{ATOM}feed"
    assert root.findtext(f"{ATOM}id") == "https://news.example.org/archive/feed.xml"
    assert root.findtext(f"{ATOM}title") == "The Daily Brief"
    assert root.find(f"{ATOM}author/{ATOM}name").text
    links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
    assert links == {
        "self": "https://news.example.org/archive/feed.xml",
        "alternate": "https://news.example.org/archive",
    }
    updated = [root.findtext(f"{ATOM}updated")]
    entries = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}id") for e in entries] == [
        "https://news.example.org/archive/2026-11-25",
        "https://news.example.org/archive/2026-11-24",
    ]
    for entry, date in zip(entries, (DAY, dt.date(2026, 11, 24)), strict=True):
        assert entry.findtext(f"{ATOM}title") == published[date].rendered.subject
        assert entry.find(f"{ATOM}link").get("href") == entry.findtext(f"{ATOM}id")
        content = entry.find(f"{ATOM}content")
        assert content.get("type") == "text" and content.text.strip()
        assert "nlslot" not in content.text.lower() and "Ann Secret" not in content.text
        updated.append(entry.findtext(f"{ATOM}updated"))
    for stamp in updated:  # RFC 3339, UTC
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp
    assert updated[0] == max(updated[1:])


def test_an_empty_archive_and_feed(client):
    assert "No edition has gone out yet" in client.get("/archive").text
    root = ET.fromstring(client.get("/archive/feed.xml").content)
    assert root.findall(f"{ATOM}entry") == [] and root.findtext(f"{ATOM}updated")


# Operators


def test_healthz_reports_the_database_and_the_scheduler(client, engine):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"database": "ok", "scheduler": "stopped"}

    def never_dead(_holder: str) -> bool:
        return False

    holder = "host:1:abc"
    acquire_lock(engine, LOCK_NAME, holder, stale_after=STALE_AFTER, holder_is_dead=never_dead)
    running = client.get("/healthz").json()
    assert running["scheduler"] == "running" and running["scheduler_heartbeat_age_seconds"] < 5

    with engine.begin() as conn:
        stale = utcnow() - STALE_AFTER - dt.timedelta(seconds=5)
        conn.execute(update(locks).values(heartbeat_at=stale))
    assert client.get("/healthz").json()["scheduler"] == "stopped"


def test_healthz_is_503_and_metrics_say_so_when_the_database_is_unreachable(client, tmp_path):
    client.app.state.engine = create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["database"] == "unreachable"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "newsletter_database_up 0" in metrics.text.splitlines()


def test_healthz_is_503_when_a_page_template_does_not_load(settings, tmp_path):
    own = tmp_path / "own-templates"
    (own / "web").mkdir(parents=True)
    (own / "web" / "subscribe.html").write_text("{% block x %}never closed", encoding="utf-8")
    broken = settings.model_copy(update={"templates_dir": own})
    app = create_app(broken)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        assert client.get("/subscribe").status_code == 500  # what a visitor would meet
        answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["templates"] == "broken"
    [problem] = answer.json()["broken"]
    assert problem.startswith("subscribe.html: TemplateSyntaxError")
    (own / "web" / "subscribe.html").unlink()  # the built-in page again: healthy
    with TestClient(create_app(broken), base_url="https://testserver") as client:
        assert client.get("/healthz").status_code == 200


def parse_metrics(text: str) -> dict[str, dict[tuple, float]]:
    """Parse the exposition strictly: HELP then TYPE before each family's samples."""
    families: dict[str, dict[tuple, float]] = {}
    helped, typed = set(), set()
    sample = re.compile(r'([a-z_]+)(?:\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\})? (-?[0-9.e+]+)')
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, f"two HELP lines for {name}"
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind == "gauge" and name in helped and name not in typed
            typed.add(name)
            families[name] = {}
        else:
            found = sample.fullmatch(line)
            assert found, f"not a sample line: {line!r}"
            name, labels, value = found.groups()
            assert name in typed, f"{name} has no TYPE line before its samples"
            key = tuple(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', labels or ""))
            families[name][key] = float(value)
    return families


def test_metrics_in_prometheus_text_format(client, engine, settings, published, signer):
    subscriber_ops.add_subscriber(engine, "bob@example.com")
    client.post(f"/unsubscribe/{signer.sign(Purpose.UNSUBSCRIBE, 'bob@example.com')}")

    answer = client.get("/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    metrics = parse_metrics(answer.text)
    assert metrics["newsletter_database_up"][()] == 1
    assert metrics["newsletter_scheduler_running"][()] == 0
    assert metrics["newsletter_subscribers"][(("status", "active"),)] == 1
    assert metrics["newsletter_subscribers"][(("status", "unsubscribed"),)] == 1
    assert metrics["newsletter_subscribers"][(("status", "pending"),)] == 0
    assert metrics["newsletter_deliveries"][(("status", "sent"),)] == 2  # ann, two editions
    assert metrics["newsletter_latest_edition_deliveries"][(("status", "sent"),)] == 1
    assert metrics["newsletter_editions"][(("status", "sent"),)] == 2
    assert metrics["newsletter_editions"][(("status", "built"),)] == 1
    midnight = dt.datetime(2026, 11, 25, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    assert metrics["newsletter_latest_edition_timestamp_seconds"][()] == midnight
    sent_at = published[DAY].sent_at.replace(tzinfo=dt.UTC).timestamp()
    assert metrics["newsletter_last_send_completed_timestamp_seconds"][()] == pytest.approx(sent_at)
    assert 0 <= metrics["newsletter_last_send_duration_seconds"][()] < 60


def test_metrics_of_an_empty_database(client):
    metrics = parse_metrics(client.get("/metrics").text)
    assert metrics["newsletter_subscribers"][(("status", "active"),)] == 0
    assert "newsletter_latest_edition_timestamp_seconds" not in metrics
    assert "newsletter_last_send_duration_seconds" not in metrics


def test_unsubscribe_by_token_is_the_only_change_a_get_can_never_make(
    client, engine, signer, smtp_server
):
    """Every GET route, fetched like a scanner would, leaves the list exactly as it was."""
    subscriber_ops.add_subscriber(engine, "ann@example.com")
    sign_up(client, "bob@example.com", "Bob")
    confirm = path_of(confirm_link(confirmations(smtp_server)[0]))
    before = _rows(engine)
    for path in (
        "/subscribe",
        "/unsubscribe",
        f"/unsubscribe/{signer.sign(Purpose.UNSUBSCRIBE, 'ann@example.com')}",
        confirm,
        "/archive",
        "/archive/feed.xml",
        "/healthz",
        "/metrics",
    ):
        assert client.get(path).status_code == 200, path
    assert _rows(engine) == before


def _rows(engine) -> list:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(subscribers))]
