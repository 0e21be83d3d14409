"""A sender's health: the figures, /metrics and `status`, and the scheduler's complaint refusal.

The database is filled through the real paths (queue, claim, the send's own
`record_outcomes`, `record_bounce` for the reports that come back later), on SQLite
and, with --db=postgresql, on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
from zoneinfo import ZoneInfo

import pytest
from conftest import Cli
from test_web_public import parse_metrics

from newsletter import app as core
from newsletter import scheduler
from newsletter import subscribers as subscriber_ops
from newsletter.metrics import render_metrics
from newsletter.models import BounceKind, DeliveryStatus, EditionStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store import health as health_store
from newsletter.store import stats
from newsletter.store.bounces import BounceEvent, BounceLimits, DeliveryMatch, record_bounce
from newsletter.store.deliveries import DeliveryRecord
from newsletter.store.engine import open_engine

SAMPLE_DAY = dt.date(2026, 11, 25)  # the sample articles' day: the content of every edition here
LIMITS = BounceLimits(hard=3, soft=5, soft_window_days=30)


def edition_on(engine, settings, day: dt.date):
    """A stored edition dated `day` (the sample's content), its send started."""
    base = core.prepare_edition(engine, settings, SAMPLE_DAY).stored
    stored, _ = edition_store.insert_edition(
        engine, dataclasses.replace(base.rendered, date=day), base.article_count
    )
    edition_store.set_edition_status(engine, stored.id, EditionStatus.SENDING)
    return stored


def send_results(engine, stored, results: dict[str, tuple[DeliveryStatus, str, bool]]) -> dict:
    """Queue the edition, claim it, and record each address's result as a send does;
    addresses not in `results` stay queued. The delivery ids by address."""
    delivery_store.queue_deliveries(engine, stored.id)
    claims, _ = delivery_store.claim_batch(
        engine, stored.id, claimer="test", size=1000, lease=dt.timedelta(minutes=5)
    )
    ids = {claim.email: claim.delivery_id for claim in claims}
    records = [
        DeliveryRecord(ids[email], status, reply, status != DeliveryStatus.SKIPPED, None, hard)
        for email, (status, reply, hard) in results.items()
    ]
    delivery_store.record_outcomes(engine, records, bounce_limit=3)
    delivery_store.release_claims(engine, set(ids.values()), claimer="test")
    return ids


def report(engine, delivery_id: int, kind: BounceKind, fingerprint: str) -> None:
    event = BounceEvent(fingerprint, kind, "maildir", DeliveryMatch(delivery_id), status="5.1.1")
    record_bounce(engine, event, LIMITS)


SENT = (DeliveryStatus.SENT, "250 2.0.0 Ok: queued", False)


def fill_one_edition(engine, settings):
    """Ten subscribers, every kind of result; the expected figures in the test below."""
    people = [f"{name}@example.com" for name in "abcdefghijk"]
    for email in people:
        subscriber_ops.add_subscriber(engine, email)
    stored = edition_on(engine, settings, settings.today() - dt.timedelta(days=1))
    ids = send_results(
        engine,
        stored,
        {
            **{f"{name}@example.com": SENT for name in "abcdef"},
            "g@example.com": (DeliveryStatus.FAILED, "550 5.1.1 no such user", True),
            "h@example.com": (DeliveryStatus.FAILED, "552 5.3.4 message too big", False),
            "i@example.com": (DeliveryStatus.FAILED, "451 4.3.0 try again later", False),
            "j@example.com": (DeliveryStatus.SKIPPED, "subscriber no longer active", False),
        },  # k stays queued
    )
    report(engine, ids["a@example.com"], BounceKind.HARD, "a-1")  # a 250 a later hop bounced
    report(engine, ids["a@example.com"], BounceKind.HARD, "a-2")  # a second report: once
    report(engine, ids["b@example.com"], BounceKind.SOFT, "b-1")
    report(engine, ids["c@example.com"], BounceKind.COMPLAINT, "c-1")
    report(engine, ids["c@example.com"], BounceKind.COMPLAINT, "c-1")  # read twice: once
    report(engine, ids["g@example.com"], BounceKind.HARD, "g-1")  # refused in session too
    return stored


def test_the_figures_count_each_delivery_once_with_what_reached_the_relay(engine, settings):
    stored = fill_one_edition(engine, settings)

    figures = health_store.edition_figures(engine, [stored.id])[stored.id]

    # a-f sent (a's later hard bounce marked it failed: still a message), g and h refused
    # with a 5xx; i (given up after 4xx), j (skipped) and k (queued) are no messages.
    assert figures == health_store.Figures(messages=8, hard=2, soft=1, complaints=1)
    assert (figures.hard_rate, figures.soft_rate, figures.complaint_rate) == (0.25, 0.125, 0.125)


def test_the_thirty_day_window_ends_at_the_edition_dated_thirty_days_ago(engine, settings):
    for name in "ab":
        subscriber_ops.add_subscriber(engine, f"{name}@example.com")
    today = settings.today()
    inside = edition_on(engine, settings, today - dt.timedelta(days=29))
    outside = edition_on(engine, settings, today - dt.timedelta(days=30))
    for stored in (inside, outside):
        ids = send_results(engine, stored, {"a@example.com": SENT, "b@example.com": SENT})
        report(engine, ids["a@example.com"], BounceKind.HARD, f"hard-{stored.id}")
    report(engine, ids["b@example.com"], BounceKind.COMPLAINT, "old-complaint")  # outside's

    health = core.sender_health(engine, settings)

    assert health.figures.since == inside.rendered.date
    assert health.figures.window == health_store.Figures(messages=2, hard=1, soft=0, complaints=0)
    shown = {item.date: item.figures for item in health.figures.editions}
    assert shown[outside.rendered.date].complaints == 1  # still shown as a recent edition
    assert health.complaints is None  # the old complaint is outside the window


def test_metrics_show_the_rates_of_thirty_days_and_of_the_latest_edition(engine, settings):
    fill_one_edition(engine, settings)
    text = render_metrics(
        stats.snapshot(engine, today=settings.today()),
        scheduler_running=None,
        zone=ZoneInfo("UTC"),
    )
    families = parse_metrics(text)
    rates = families["newsletter_sender_rate"]
    for window in ("30d", "latest_edition"):
        assert rates[(("kind", "hard"), ("window", window))] == 0.25
        assert rates[(("kind", "soft"), ("window", window))] == 0.125
        assert rates[(("kind", "complaint"), ("window", window))] == 0.125
        assert families["newsletter_sender_messages"][(("window", window),)] == 8
    assert len(rates) == 6  # two windows, three kinds: no label per date


def test_status_shows_the_rates_and_the_refusal_and_a_manual_send_warns(cli_env, settings):
    url = cli_env["NEWSLETTER_DATABASE_URL"]
    engine = open_engine(url)
    fill_one_edition(engine, settings.model_copy(update={"database_url": url}))
    engine.dispose()

    shown = cli_env.run("status").stdout

    assert "25.00%" in shown and "12.50%" in shown  # the edition's hard, soft and complaints
    assert "8 messages; hard bounces 2 (25.00%), soft bounces 1 (12.50%)" in shown
    assert "complaints 1 (12.50%)" in shown
    assert "the scheduler starts no new edition" in shown
    assert "NEWSLETTER_MAX_COMPLAINT_RATE (0.10%)" in shown
    relaxed = Cli(cli_env, NEWSLETTER_MAX_COMPLAINT_RATE="0.2").run("status").stdout
    assert "the scheduler starts no new edition" not in relaxed

    sent = cli_env.run("send", "--date", SAMPLE_DAY.isoformat())  # an operator's send goes out

    assert "the 30-day complaint rate is 12.50% (1 of 8 messages)" in sent.stderr
    assert "the scheduler would not start this edition; sending it as asked" in sent.stderr
    assert "sent 10," in sent.stdout  # a to k but c, whose complaint unsubscribed them


@pytest.fixture
def job(settings, engine, articles_dir, monkeypatch):
    """The scheduler's daily job, run directly on this test's settings and database."""
    day = settings.today()
    if not (articles_dir / day.isoformat()).exists():
        shutil.copytree(articles_dir / SAMPLE_DAY.isoformat(), articles_dir / day.isoformat())
    tuned = settings.model_copy(update={"max_complaint_rate": 0.05})
    monkeypatch.setattr(scheduler, "_running", scheduler._Running(tuned, engine))
    return scheduler.scheduled_send


def test_the_scheduler_starts_no_edition_while_complaints_are_high_then_does(
    job, engine, settings, smtp_server, caplog
):
    for name in "abc":
        subscriber_ops.add_subscriber(engine, f"{name}@example.com")
    yesterday = edition_on(engine, settings, settings.today() - dt.timedelta(days=1))
    ids = send_results(engine, yesterday, {f"{name}@example.com": SENT for name in "abc"})
    report(engine, ids["a@example.com"], BounceKind.COMPLAINT, "complaint-a")  # 1 of 3

    with caplog.at_level(logging.WARNING, logger="newsletter.scheduler"):
        line = job()

    assert "not started: the 30-day complaint rate is 33.33% (1 of 3 messages)" in line
    assert "NEWSLETTER_MAX_COMPLAINT_RATE (5.00%)" in line
    assert line in caplog.text
    today = edition_store.get_edition(engine, settings.today())
    assert today is not None and today.status is EditionStatus.BUILT  # built, not sent
    assert smtp_server.received == []

    # More mail within the window brings the rate down (1 complaint in 43 messages).
    for n in range(40):
        subscriber_ops.add_subscriber(engine, f"reader{n:02d}@example.com")
    earlier = edition_on(engine, settings, settings.today() - dt.timedelta(days=3))
    send_results(engine, earlier, {f"reader{n:02d}@example.com": SENT for n in range(40)})
    line = job()

    assert "sent 42," in line  # everyone active (a unsubscribed by complaining)
    assert edition_store.get_edition(engine, settings.today()).status is EditionStatus.SENT
    assert len(smtp_server.recipients()) == 42
