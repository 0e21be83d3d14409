"""A send pauses itself on its hard-bounce rate, against a real SMTP server refusing addresses.

The server is tests/faultsmtp.py's aiosmtpd answering 550 at RCPT for chosen
recipients. PAUSE_AFTER is 20 here, so the rate counts after 20 final answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

from conftest import Cli
from faultsmtp import Fault, FaultPlan, FaultServer

from newsletter import app as core
from newsletter import subscribers as subscriber_ops
from newsletter.models import DeliveryStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store import health as health_store
from newsletter.store.engine import open_engine

DAY = dt.date(2026, 11, 25)
GONE = Fault("rcpt", "reply", 550)


def people(n: int) -> list[str]:
    return [f"reader{i:03d}@example.com" for i in range(n)]


def tuned(settings, server: FaultServer, **changes):
    return settings.model_copy(
        update={"smtp_port": server.port, "pause_after": 20, "bounce_limit": 5, **changes}
    )


def test_a_send_whose_first_messages_hard_bounce_pauses_and_send_resumes_it(cli_env, tmp_path):
    emails = people(80)
    refused = set(emails[:12])  # 12 of the first 20: far above 5%
    plan = FaultPlan(per_address=dict.fromkeys(refused, GONE))
    with FaultServer(plan) as server:
        env = Cli(
            cli_env,
            NEWSLETTER_SMTP_PORT=str(server.port),
            NEWSLETTER_PAUSE_AFTER="20",
            NEWSLETTER_CONCURRENCY="2",
        )
        engine = open_engine(env["NEWSLETTER_DATABASE_URL"])
        for email in emails:
            subscriber_ops.add_subscriber(engine, email)

        first = env.run("send", "--date", DAY.isoformat(), check=False)

        assert first.returncode == 3, first.stdout + first.stderr
        assert "paused: 12 of the first" in first.stdout
        assert "above NEWSLETTER_PAUSE_HARD_BOUNCE_RATE (5.0%)" in first.stdout
        assert f"`newsletter send --date {DAY}` resumes the edition" in first.stdout
        stored = edition_store.get_edition(engine, DAY)
        counts = delivery_store.count_by_status(engine, stored.id)
        assert counts[DeliveryStatus.SENDING] == 0  # every claim given back
        assert counts[DeliveryStatus.QUEUED] >= 40  # the rest waits, nothing lost
        assert sum(counts.values()) == 80
        assert health_store.pause_of(engine, stored.id).paused

        status = env.run("status", "--date", DAY.isoformat()).stdout
        assert "paused" in status and "resumes it" in status

        second = env.run("send", "--date", DAY.isoformat())

        assert "resuming past a paused send (12 of the first" in second.stderr
        assert "it will not pause again for this edition" in second.stderr
        counts = delivery_store.count_by_status(engine, stored.id)
        assert counts[DeliveryStatus.QUEUED] == counts[DeliveryStatus.SENDING] == 0
        assert counts[DeliveryStatus.FAILED] == 12 and counts[DeliveryStatus.SENT] == 68
        delivered = server.count_by_recipient()
        tried = Counter(address for stage, address, _ in server.events if stage == "rcpt")
        engine.dispose()
    assert delivered == Counter({email: 1 for email in emails if email not in refused})
    assert all(tried[email] == 1 for email in refused)  # each refused address tried once


def test_the_scheduler_leaves_a_paused_send_alone(engine, settings):
    emails = people(40)
    for email in emails:
        subscriber_ops.add_subscriber(engine, email)
    plan = FaultPlan(per_address=dict.fromkeys(emails[:10], GONE))
    with FaultServer(plan) as server:
        fast = tuned(settings, server)
        paused = asyncio.run(core.publish(engine, fast, DAY))
        again = asyncio.run(core.publish(engine, fast, DAY, started_by=core.StartedBy.SCHEDULE))
        received = len(server.delivered)

    assert isinstance(paused, core.Paused) and paused.summary.remaining > 0
    assert isinstance(again, core.Paused) and again.reason == paused.reason
    assert again.summary.sent == 0 and len(server.delivered) == received  # nothing more sent


def test_a_send_below_the_threshold_does_not_pause(engine, settings):
    emails = people(40)
    for email in emails:
        subscriber_ops.add_subscriber(engine, email)
    plan = FaultPlan(per_address={emails[0]: GONE})  # 1 of 40: 2.5%
    with FaultServer(plan) as server:
        outcome = asyncio.run(core.publish(engine, tuned(settings, server), DAY))
        delivered = server.count_by_recipient()

    assert isinstance(outcome, core.Sent) and outcome.summary.remaining == 0
    assert outcome.summary.failed == 1 and outcome.summary.paused is None
    assert delivered == Counter({email: 1 for email in emails[1:]})
    assert not health_store.pause_of(engine, outcome.stored.id).paused
