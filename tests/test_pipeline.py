"""End to end through a real aiosmtpd server: build, queue, send, record, resend."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
from aiosmtpd.controller import Controller
from conftest import spam_score

from newsletter import subscribers as subscriber_ops
from newsletter.app import Held, NoArticles, prepare_edition, publish, send_edition, send_test
from newsletter.capture import free_port
from newsletter.errors import DeliveryError, RenderError
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store.schema import test_sends
from newsletter.tokens import UNSUBSCRIBE_MAX_AGE, Purpose, Signer

DAY = dt.date(2026, 11, 25)
PEOPLE = [
    ("ann@example.com", "Ann Lee"),
    ("zoe@example.org", "Zoë Müller"),
    ("jose@example.net", "José Ñúñez"),
    ("bob@example.com", ""),
    ("chen@example.com", "陈美"),
]


def add_people(engine, people=PEOPLE):
    for email, name in people:
        subscriber_ops.add_subscriber(engine, email, name=name, source="test")


def send(engine, settings, date=DAY, **kwargs):
    prepared = prepare_edition(engine, settings, date)
    assert prepared is not None
    return asyncio.run(send_edition(engine, settings, prepared.stored, **kwargs))


def test_each_active_subscriber_gets_exactly_one_well_formed_message(engine, settings, smtp_server):
    add_people(engine)
    subscriber_ops.unsubscribe(engine, "bob@example.com")

    summary = send(engine, settings)

    expected = sorted(e for e, _ in PEOPLE if e != "bob@example.com")
    assert sorted(smtp_server.recipients()) == expected
    assert summary.sent == 4 and summary.failed == 0 and summary.remaining == 0
    for item in smtp_server.received:
        message = item.message
        assert item.mail_from == settings.from_address
        assert message.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert message["To"].addresses[0].addr_spec == item.rcpt_tos[0]
        assert message["From"].addresses[0].addr_spec == settings.from_address
        assert message["From"].addresses[0].display_name == "The Daily Brief"
        assert message["Message-ID"].endswith("@daily.example.org>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Precedence"] == "bulk"
        assert settings.list_id in message["List-Id"]
        https, mailto = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
        assert https.startswith("https://news.example.org/unsubscribe/")
        assert mailto.startswith("mailto:unsubscribe@daily.example.org?subject=")
        token = https.rsplit("/", 1)[1]
        signer = Signer(settings.secret_key.get_secret_value())
        assert (
            signer.read(Purpose.UNSUBSCRIBE, token, max_age=UNSUBSCRIBE_MAX_AGE)
            == (item.rcpt_tos[0])
        )
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert https in html and https in text  # the footer link is the recipient's own
        assert "https://news.example.org/archive/2026-11-25" in html
        assert "nlslot" not in html.lower() and "nlslot" not in text.lower()


def test_greeting_is_personal_and_escaped(engine, settings, smtp_server):
    add_people(engine, [("eve@example.com", 'Eve <b>"Evil"</b> & Co')])
    send(engine, settings)
    message = smtp_server.received[0].message
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "Eve &lt;b&gt;&quot;Evil&quot;&lt;/b&gt; &amp; Co" in html
    assert '<b>"Evil"</b>' not in html
    assert 'Eve <b>"Evil"</b> & Co' in text


def test_running_the_send_again_sends_nothing_twice(engine, settings, smtp_server):
    add_people(engine)
    first = send(engine, settings)
    second = send(engine, settings)
    assert first.sent == len(PEOPLE)
    assert second.sent == 0 and second.queued_now == 0
    assert len(smtp_server.received) == len(PEOPLE)
    assert sorted(smtp_server.recipients()) == sorted(e for e, _ in PEOPLE)


def test_late_subscriber_gets_the_identical_stored_edition(
    engine, settings, smtp_server, articles_dir
):
    add_people(engine, PEOPLE[:2])
    send(engine, settings)
    # The articles change after the send; the stored edition must not.
    for path in (articles_dir / "2026-11-25").iterdir():
        path.unlink()
    add_people(engine, [("late@example.com", "Late Comer")])
    summary = send(engine, settings)
    assert summary.sent == 1 and summary.queued_now == 1
    first, late = smtp_server.received[0].message, smtp_server.received[-1].message
    assert late["Subject"] == first["Subject"]
    first_html = first.get_body(("html",)).get_content()
    late_html = late.get_body(("html",)).get_content()
    headlines = re.findall(r"<h2[^>]*>(.*?)</h2>", first_html, re.S)
    assert headlines and headlines == re.findall(r"<h2[^>]*>(.*?)</h2>", late_html, re.S)


def test_an_unsubscribe_before_the_send_is_skipped(engine, settings, smtp_server):
    add_people(engine)
    prepared = prepare_edition(engine, settings, DAY)
    delivery_store.queue_deliveries(engine, prepared.stored.id)
    subscriber_ops.unsubscribe(engine, "zoe@example.org")  # after queueing, before sending
    asyncio.run(send_edition(engine, settings, prepared.stored))
    assert "zoe@example.org" not in smtp_server.recipients()
    counts = delivery_store.count_by_status(engine, prepared.stored.id)
    assert counts[DeliveryStatus.SKIPPED] == 1
    assert counts[DeliveryStatus.SENT] == len(PEOPLE) - 1


def test_no_articles_means_no_edition(engine, settings, smtp_server):
    add_people(engine)
    assert prepare_edition(engine, settings, dt.date(2020, 1, 1)) == NoArticles(dt.date(2020, 1, 1))
    assert edition_store.get_edition(engine, dt.date(2020, 1, 1)) is None
    assert smtp_server.received == []


def test_a_template_error_stops_everything_before_a_send(engine, settings, smtp_server, tmp_path):
    broken = tmp_path / "broken-templates"
    import shutil

    shutil.copytree(settings.templates_dir, broken)
    page = broken / "edition.html.j2"
    lines = page.read_text(encoding="utf-8").splitlines()
    lines.insert(8, "{{ edition.no_such_field }}")  # becomes line 9, inside <html>
    page.write_text("\n".join(lines), encoding="utf-8")
    add_people(engine)
    broken_settings = settings.model_copy(update={"templates_dir": broken})
    with pytest.raises(RenderError) as caught:
        prepare_edition(engine, broken_settings, DAY)
    assert "edition.html.j2:9" in str(caught.value)
    assert edition_store.get_edition(engine, DAY) is None
    assert smtp_server.received == []


def test_test_send_goes_to_any_address_and_is_recorded_apart(engine, settings, smtp_server):
    add_people(engine, PEOPLE[:1])
    prepared = prepare_edition(engine, settings, DAY)
    outcome = asyncio.run(send_test(engine, settings, DAY, "editor@elsewhere.example"))
    assert outcome.stored == prepared.stored and outcome.result.outcome.value == "sent"
    assert smtp_server.recipients() == ["editor@elsewhere.example"]
    counts = delivery_store.count_by_status(engine, prepared.stored.id)
    assert sum(counts.values()) == 0  # not a subscriber delivery
    with engine.connect() as conn:
        rows = conn.execute(test_sends.select()).all()
    assert [(r.email, r.status) for r in rows] == [("editor@elsewhere.example", "sent")]
    # The real send afterwards still reaches the subscriber.
    summary = asyncio.run(send_edition(engine, settings, prepared.stored))
    assert summary.sent == 1


def test_connections_are_reused(engine, settings, smtp_server):
    many = [(f"reader{i}@example.com", f"Reader {i}") for i in range(30)]
    add_people(engine, many)
    send(engine, settings)
    assert len(smtp_server.received) == 30
    connections = {item.peer for item in smtp_server.received}
    assert 1 <= len(connections) <= settings.concurrency


class FlakyHandler:
    """Answers 451 to the first DATA for each address in `flaky`, 550 for `refused`."""

    def __init__(self, flaky=(), refused=()):
        self.flaky = set(flaky)
        self.refused = set(refused)
        self.accepted: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        if address in self.refused:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        rcpt = envelope.rcpt_tos[0]
        if rcpt in self.flaky:
            self.flaky.discard(rcpt)
            return "451 4.3.0 Try again later"
        self.accepted.append(rcpt)
        return "250 OK"


@pytest.fixture
def flaky_server():
    handler = FlakyHandler(flaky={"ann@example.com"}, refused={"bob@example.com"})
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
    controller.start()
    yield controller, handler
    controller.stop()


def test_transient_failures_are_retried_and_permanent_ones_recorded(engine, settings, flaky_server):
    controller, handler = flaky_server
    flaky_settings = settings.model_copy(update={"smtp_port": controller.port})
    add_people(engine)
    summary = send(engine, flaky_settings)
    assert sorted(handler.accepted) == sorted(e for e, _ in PEOPLE if e != "bob@example.com")
    assert handler.accepted.count("ann@example.com") == 1
    assert summary.failed == 1
    assert summary.failures[0][0] == "bob@example.com"
    assert summary.failures[0][1].startswith("550")
    stored = edition_store.get_edition(engine, DAY)
    counts = delivery_store.count_by_status(engine, stored.id)
    assert counts[DeliveryStatus.SENT] == 4 and counts[DeliveryStatus.FAILED] == 1


def test_an_unreachable_relay_is_a_clear_error_and_leaves_rows_queued(engine, settings):
    add_people(engine)
    dead = settings.model_copy(update={"smtp_port": free_port(), "retry_window": 0.5})
    prepared = prepare_edition(engine, dead, DAY)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(send_edition(engine, dead, prepared.stored))
    assert f"127.0.0.1:{dead.smtp_port}" in str(caught.value)
    assert "unreachable" in str(caught.value)
    counts = delivery_store.count_by_status(engine, prepared.stored.id)
    assert counts[DeliveryStatus.QUEUED] == len(PEOPLE)


def test_bounced_and_pending_subscribers_are_not_sent_to(engine, settings, smtp_server):
    from newsletter.store import subscribers as subscriber_store

    add_people(engine)
    subscriber_store.set_status(engine, "jose@example.net", SubscriberStatus.BOUNCED)
    subscriber_store.set_status(engine, "chen@example.com", SubscriberStatus.PENDING)
    send(engine, settings)
    assert sorted(smtp_server.recipients()) == [
        "ann@example.com",
        "bob@example.com",
        "zoe@example.org",
    ]


def test_a_recipient_whose_message_cannot_be_built_fails_alone(engine, settings, smtp_server):
    from sqlalchemy import update

    from newsletter.store.schema import subscribers

    add_people(engine, PEOPLE[:3])
    with engine.begin() as conn:  # an address that slipped in before validation existed
        conn.execute(
            update(subscribers)
            .where(subscribers.c.email == "zoe@example.org")
            .values(email="zoë@example.org")
        )
    summary = send(engine, settings)
    assert summary.sent == 2 and summary.failed == 1
    assert summary.failures[0][0] == "zoë@example.org"
    assert "non-ASCII" in summary.failures[0][1]
    assert sorted(smtp_server.recipients()) == ["ann@example.com", "jose@example.net"]


def test_the_real_edition_scores_low_with_spamassassin(engine, settings, smtp_server, tmp_path):
    add_people(engine, PEOPLE[:1])
    send(engine, settings)
    score, hits = spam_score(smtp_server.received[0].data, tmp_path)
    print(f"SpamAssassin score {score}: {hits}")
    assert score < 1.0, hits  # 5.0 is spam; we stay far below


def test_claims_of_a_sender_on_another_machine_are_taken_over_when_the_lease_expires(
    engine, settings, smtp_server
):
    from sqlalchemy import update

    from newsletter.store.schema import deliveries

    add_people(engine)
    prepared = prepare_edition(engine, settings, DAY)
    delivery_store.queue_deliveries(engine, prepared.stored.id)
    claims, _ = delivery_store.claim_batch(
        engine,
        prepared.stored.id,
        claimer="elsewhere:4242:abcd",  # another host: we cannot tell whether it is alive
        size=2,
        lease=dt.timedelta(minutes=5),
    )
    held = {c.email for c in claims}
    summary = asyncio.run(send_edition(engine, settings, prepared.stored))
    assert summary.remaining == 2  # its lease still runs: not ours to send
    assert held.isdisjoint(smtp_server.recipients())

    with engine.begin() as conn:  # ... five minutes later
        conn.execute(
            update(deliveries)
            .where(deliveries.c.claimed_by == "elsewhere:4242:abcd")
            .values(lease_until=dt.datetime(2000, 1, 1))
        )
    summary = asyncio.run(send_edition(engine, settings, prepared.stored))
    assert summary.sent == 2 and summary.remaining == 0
    assert sorted(smtp_server.recipients()) == sorted(e for e, _ in PEOPLE)


def test_a_late_release_never_frees_rows_another_sender_took_over(engine, settings):
    """A stopped send's release that arrives after its rows were taken over (its lease ran
    out, or its run ended and the next send reclaimed them) leaves them with their new
    sender, who is sending them."""
    from sqlalchemy import select

    from newsletter.store.schema import deliveries

    add_people(engine, PEOPLE[:2])
    prepared = prepare_edition(engine, settings, DAY)
    delivery_store.queue_deliveries(engine, prepared.stored.id)
    lapsed = dt.timedelta(seconds=-1)  # a lease already over: the rows are claimable again
    first, _ = delivery_store.claim_batch(
        engine, prepared.stored.id, claimer="here:1:run-old", size=2, lease=lapsed
    )
    taken, _ = delivery_store.claim_batch(
        engine, prepared.stored.id, claimer="here:1:run-new", size=2, lease=dt.timedelta(hours=1)
    )
    assert {c.delivery_id for c in taken} == {c.delivery_id for c in first} != set()

    released = delivery_store.release_claims(
        engine, [c.delivery_id for c in first], claimer="here:1:run-old"
    )

    assert released == 0
    with engine.connect() as conn:
        holders = conn.execute(select(deliveries.c.status, deliveries.c.claimed_by)).all()
    assert holders == [(DeliveryStatus.SENDING.value, "here:1:run-new")] * 2


def test_an_edition_on_hold_is_not_sent(engine, settings, smtp_server):
    add_people(engine)
    prepared = prepare_edition(engine, settings, DAY)
    edition_store.set_edition_status(engine, prepared.stored.id, edition_store.EditionStatus.HELD)
    outcome = asyncio.run(publish(engine, settings, DAY))
    assert isinstance(outcome, Held) and outcome.stored.id == prepared.stored.id
    summary = asyncio.run(send_edition(engine, settings, prepared.stored))
    assert summary.held and summary.sent == 0
    assert smtp_server.received == []
    assert sum(delivery_store.count_by_status(engine, prepared.stored.id).values()) == 0
