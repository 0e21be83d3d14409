"""Faults a relay throws at a send, each against a real (fault-injecting) SMTP server.

Every test states the guarantee it protects: nothing lost, nothing doubled,
and the record says who got what.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter

import pytest
from aiosmtpd.controller import Controller
from faultsmtp import Fault, FaultPlan, FaultServer

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.capture import free_port
from newsletter.errors import DeliveryError
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import subscribers as subscriber_store

DAYS = [dt.date(2026, 11, 23), dt.date(2026, 11, 24), dt.date(2026, 11, 25)]
DAY = DAYS[-1]


def people(n: int) -> list[str]:
    return [f"reader{i:03d}@example.com" for i in range(n)]


def add(engine, emails):
    for email in emails:
        subscriber_ops.add_subscriber(engine, email)


def run_send(engine, settings, date=DAY):
    prepared = prepare_edition(engine, settings, date)
    return prepared.stored, asyncio.run(send_edition(engine, settings, prepared.stored))


@pytest.fixture
def fast(settings):
    """Settings for fault tests: quick retries, short timeouts."""
    return settings.model_copy(
        update={"retry_delay": 0.02, "max_attempts": 12, "smtp_timeout": 0.5, "retry_window": 30.0}
    )


# How the relay takes messages, and so how our client streams them: one command at a time
# (aiosmtplib), PIPELINING (a body, its dot and the next MAIL/RCPT/DATA in one write), and
# CHUNKING (a window of MAIL/RCPT/BDAT LAST), with a relay that resets a refused BDAT
# transaction as Postfix does and one that keeps it until RSET.
MODES = {
    "one-by-one": {"pipelining": False},
    "pipelined": {"pipelining": True},
    "bdat": {"chunking": True},
    "bdat-strict": {"chunking": True, "reset_after_failed_bdat": False},
}


def against(settings, server: FaultServer, **changes):
    return settings.model_copy(update={"smtp_port": server.port, **changes})


TRANSIENT_FAULTS = [
    Fault("mail", "reply", 421),
    Fault("mail", "reply", 451),
    Fault("rcpt", "reply", 450),
    Fault("rcpt", "reply", 452),
    Fault("data", "reply", 451),
    Fault("data", "reply", 421),
    Fault("data", "drop_before"),
    Fault("rcpt", "drop_before"),
    Fault("connect", "reply", 421),
    Fault("connect", "drop_before"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_transient_faults_delay_but_never_lose_or_double(engine, fast, seed, mode):
    emails = people(40)
    add(engine, emails)
    plan = FaultPlan(seed=seed, rate=0.15, faults=TRANSIENT_FAULTS)
    with FaultServer(plan, **MODES[mode]) as server:
        stored, summary = run_send(engine, against(fast, server))
        counts = server.count_by_recipient()
    struck = [e for e in server.events if e[2] != "ok"]
    assert struck, "the plan injected no fault; the test proves nothing"
    assert set(counts) == set(emails)  # nobody missed
    if mode.startswith("bdat"):
        # A relay that drops a connection (or says 421 and closes) with a window of
        # messages unread makes the kernel reset it: replies already sent for the messages
        # ahead may be lost, so those are retried and may double, as any message without a
        # final reply may. At most the rest of the window per dropped connection.
        drops = sum(1 for e in struck if e[2] == "drop_before" or e[2] == "reply 421")
        duplicates = sum(n - 1 for n in counts.values())
        assert duplicates <= drops * (fast.pipeline_window - 1), (duplicates, drops)
    else:
        assert counts == Counter({email: 1 for email in emails})
    assert summary.sent == 40 and summary.failed == 0 and summary.remaining == 0
    assert summary.deferred > 0
    by_status = delivery_store.count_by_status(engine, stored.id)
    assert by_status[DeliveryStatus.SENT] == 40


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_is_retried_on_a_fresh_connection(engine, fast, mode):
    emails = people(6)
    add(engine, emails)
    plan = FaultPlan(seed=7, rate=0.5, faults=[Fault("data", "slow", delay=1.5)])
    with FaultServer(plan, **MODES[mode]) as server:
        _, summary = run_send(engine, against(fast, server, smtp_timeout=0.3))
        counts = server.count_by_recipient()
    assert any(e[2].startswith("slow") for e in server.events)
    assert set(counts) == set(emails) and summary.remaining == 0
    assert summary.deferred > 0


@pytest.mark.parametrize("mode", MODES)
def test_a_lost_reply_after_data_can_only_double_that_message(engine, fast, mode):
    emails = people(30)
    add(engine, emails)
    plan = FaultPlan(seed=4, rate=0.3, faults=[Fault("data", "drop_after")])
    with FaultServer(plan, **MODES[mode]) as server:
        # A generous timeout: on a loaded machine a timed-out 250 is a lost reply too.
        _, summary = run_send(engine, against(fast, server, smtp_timeout=10.0))
        counts = server.count_by_recipient()
    lost_replies = sum(1 for e in server.events if e[2] == "drop_after")
    assert lost_replies > 0
    assert set(counts) == set(emails)  # nobody missed
    duplicates = sum(n - 1 for n in counts.values())
    # only those the server took without telling us (with a BDAT window, the reset of the
    # dropped connection may also lose the replies to the messages just ahead of it)
    window = fast.pipeline_window if mode.startswith("bdat") else 1
    assert duplicates <= lost_replies * window


def test_temporary_failures_past_max_attempts_fail_with_the_last_reply(engine, fast):
    add(engine, ["stuck@example.com", "fine@example.com"])
    plan = FaultPlan(per_address={"stuck@example.com": Fault("data", "reply", 451)})
    with FaultServer(plan) as server:
        stored, summary = run_send(engine, against(fast, server, max_attempts=3))
        counts = server.count_by_recipient()
    assert counts == Counter({"fine@example.com": 1})
    assert summary.failed == 1
    failed = delivery_store.failed_deliveries(engine, stored.id)
    assert [(f.email, f.attempts) for f in failed] == [("stuck@example.com", 3)]
    assert failed[0].last_reply.startswith("451")


def test_temporary_failures_past_the_retry_window_fail(engine, fast):
    add(engine, ["stuck@example.com"])
    plan = FaultPlan(per_address={"stuck@example.com": Fault("rcpt", "reply", 450)})
    with FaultServer(plan) as server:
        window = against(fast, server, retry_window=0.3, retry_delay=0.1, max_attempts=50)
        stored, summary = run_send(engine, window)
    assert summary.failed == 1
    (failed,) = delivery_store.failed_deliveries(engine, stored.id)
    assert failed.attempts < 50 and failed.last_reply.startswith("450")


@pytest.mark.parametrize("mode", MODES)
def test_permanent_failures_are_recorded_and_repeated_ones_suppress_the_address(engine, fast, mode):
    add(engine, ["gone@example.com", "here@example.com"])
    plan = FaultPlan(per_address={"gone@example.com": Fault("rcpt", "reply", 550)})
    with FaultServer(plan, **MODES[mode]) as server:
        limit = against(fast, server, bounce_limit=2)
        for day in DAYS:
            stored, summary = run_send(engine, limit, day)
        counts = server.count_by_recipient()
        attempts_on_gone = [e for e in server.events if e[1] == "gone@example.com"]
    assert counts == Counter({"here@example.com": 3})
    assert len(attempts_on_gone) == 2  # two editions bounced, the third never tried
    gone = subscriber_store.get_subscriber(engine, "gone@example.com")
    assert gone.status == SubscriberStatus.BOUNCED
    first = prepare_edition(engine, limit, DAYS[0]).stored
    (failed,) = delivery_store.failed_deliveries(engine, first.id)
    assert failed.email == "gone@example.com" and failed.last_reply.startswith("550")
    assert failed.attempts == 1  # a 5xx is not retried


@pytest.mark.parametrize("mode", MODES)
def test_a_message_refused_for_its_size_is_not_a_bounce(engine, fast, mode):
    add(engine, ["big@example.com"])
    plan = FaultPlan(per_address={"big@example.com": Fault("data", "reply", 552)})
    with FaultServer(plan, **MODES[mode]) as server:
        _, summary = run_send(engine, against(fast, server, bounce_limit=1))
    assert summary.failed == 1
    assert subscriber_store.get_subscriber(engine, "big@example.com").status == "active"


@pytest.mark.parametrize("mode", ["close", "421"])
def test_a_relay_down_for_a_while_delays_the_send_without_failing_it(engine, fast, mode):
    emails = people(10)
    add(engine, emails)
    plan = FaultPlan(down_until=time.monotonic() + 2.0, down_mode=mode)
    with FaultServer(plan) as server:
        _, summary = run_send(engine, against(fast, server, retry_delay=0.2))
        counts = server.count_by_recipient()
    assert counts == Counter({email: 1 for email in emails})
    assert summary.failed == 0 and summary.remaining == 0
    refused = [e for e in server.events if e[0] == "connect" and e[2] != "ok"]
    assert len(refused) >= 2  # it really met the dead relay, and tried again


@pytest.mark.parametrize("mode", MODES)
def test_a_relay_that_goes_down_mid_send_delays_it(engine, fast, mode):
    emails = people(60)
    add(engine, emails)
    plan = FaultPlan()
    with FaultServer(plan, **MODES[mode]) as server:
        settings = against(fast, server, retry_delay=0.1, concurrency=2)

        async def go():
            prepared = prepare_edition(engine, settings, DAY)
            task = asyncio.create_task(send_edition(engine, settings, prepared.stored))
            async with asyncio.timeout(30):  # a send that never gets going fails here
                while len(server.delivered) < 10:
                    await asyncio.sleep(0.01)
            plan.down_until = time.monotonic() + 1.5
            plan.faults, plan.rate = [Fault("data", "drop_before")], 1.0  # cut sessions too
            await asyncio.sleep(0.3)
            plan.faults, plan.rate = [], 0.0
            return await task

        summary = asyncio.run(go())
        counts = server.count_by_recipient()
    assert counts == Counter({email: 1 for email in emails})
    assert summary.failed == 0


def test_a_relay_down_past_the_retry_window_stops_with_rows_queued(engine, fast):
    add(engine, people(5))
    plan = FaultPlan(down_until=time.monotonic() + 60, down_mode="421")
    with FaultServer(plan) as server:
        settings = against(fast, server, retry_window=0.5, retry_delay=0.05)
        prepared = prepare_edition(engine, settings, DAY)
        with pytest.raises(DeliveryError) as caught:
            asyncio.run(send_edition(engine, settings, prepared.stored))
    assert "unreachable" in str(caught.value) and "421" in str(caught.value)
    counts = delivery_store.count_by_status(engine, prepared.stored.id)
    assert counts[DeliveryStatus.QUEUED] == 5


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault("connect", "reply", 554), "refused the session"),
        (Fault("mail", "reply", 553), "refused our sender address"),
    ],
)
def test_a_5xx_for_the_session_or_sender_stops_and_leaves_every_unsent_row_queued(
    engine, fast, fault, expected, mode
):
    add(engine, people(8))
    if fault.stage == "mail":
        plan = FaultPlan(per_address={fast.from_address: fault})
    else:
        plan = FaultPlan(rate=1.0, faults=[fault])
    with FaultServer(plan, **MODES[mode]) as server:
        settings = against(fast, server)
        prepared = prepare_edition(engine, settings, DAY)
        with pytest.raises(DeliveryError) as caught:
            asyncio.run(send_edition(engine, settings, prepared.stored))
        assert server.delivered == []
    assert expected in str(caught.value)
    counts = delivery_store.count_by_status(engine, prepared.stored.id)
    assert counts[DeliveryStatus.QUEUED] == 8
    assert counts[DeliveryStatus.SENDING] == counts[DeliveryStatus.FAILED] == 0


class UnsubscribingHandler:
    """Accepts mail; when the first message arrives, `victim` unsubscribes (in the store)."""

    def __init__(self, engine, victim: str):
        self.engine, self.victim = engine, victim
        self.received: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.extend(envelope.rcpt_tos)
        if len(self.received) == 1:
            subscriber_ops.unsubscribe(self.engine, self.victim)
        return "250 OK"


def test_an_unsubscribe_during_the_send_stops_the_messages_not_yet_handed_over(engine, fast):
    emails = people(20)
    add(engine, emails)
    victim = emails[5]  # claimed with the first batch, before the unsubscribe
    handler = UnsubscribingHandler(engine, victim)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
    controller.start()
    try:
        settings = fast.model_copy(update={"smtp_port": controller.port, "concurrency": 1})
        stored, summary = run_send(engine, settings)
    finally:
        controller.stop()
    assert victim not in handler.received
    assert len(handler.received) == 19 and summary.skipped == 1
    assert delivery_store.count_by_status(engine, stored.id)[DeliveryStatus.SKIPPED] == 1


def test_pipelining_is_used_when_offered_and_sends_two_round_trips_of_commands(engine, fast):
    from newsletter.delivery import SmtpConnection

    with FaultServer(FaultPlan(), pipelining=True) as server:
        connection = SmtpConnection(against(fast, server))

        async def go():
            try:
                results = [
                    await connection.send(fast.from_address, f"r{i}@example.com", MESSAGE)
                    for i in range(3)
                ]
                return results, connection.stream is not None
            finally:
                await connection.close()

        results, pipelined = asyncio.run(go())
        delivered = server.delivered
    assert pipelined
    assert [r.outcome.value for r in results] == ["sent"] * 3
    assert [list(d.rcpt_tos) for d in delivered] == [[f"r{i}@example.com"] for i in range(3)]
    assert delivered[0].data == MESSAGE  # dot-stuffed on the wire, intact on arrival
    assert server.connections == 1


MESSAGE = (
    b"From: <news@daily.example.org>\r\nTo: <r@example.com>\r\nSubject: hi\r\n\r\n"
    b"first line\r\n.dot-line\r\n"
)


def test_status_shows_failed_recipients_and_retry_queues_them_again(cli_env, tmp_path):
    from conftest import Cli

    plan = FaultPlan(per_address={"gone@example.com": Fault("rcpt", "reply", 550)})
    with FaultServer(plan) as server:
        env = Cli(cli_env, NEWSLETTER_SMTP_PORT=str(server.port))
        env.run("subscribers", "add", "gone@example.com")
        env.run("subscribers", "add", "here@example.com")
        env.run("send", "--date", "2026-11-25")
        status = env.run("status", "--date", "2026-11-25")
        assert "gone@example.com" in status.stdout and "550" in status.stdout
        assert "newsletter retry --date 2026-11-25" in status.stdout

        plan.per_address = {}  # the relay takes the address now
        retry = env.run("retry", "--date", "2026-11-25")
        assert "queued 1 failed deliveries" in retry.stdout
        again = env.run("send", "--date", "2026-11-25")
        assert "sent 1," in again.stdout
        counts = server.count_by_recipient()
    assert counts == Counter({"here@example.com": 1, "gone@example.com": 1})
