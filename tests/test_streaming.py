"""Messages streamed on one connection: one wait per message over DATA, BDAT windows.

The client (`delivery.session.SmtpConnection` over `delivery.pipelining.Stream`) is
driven the way the send loop's lanes drive it: several `send` calls at once on one
connection. The relay is the fault server (DATA with PIPELINING; BDAT with CHUNKING,
resetting a refused transaction as Postfix does, or keeping it until RSET), behind the
benchmark's slow relay where the round trips are counted. Every test checks the one
rule that matters at a crash or a fault: a message is counted as sent exactly when the
relay took it, and a message without a final reply is retried, never counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter

import pytest
from faultsmtp import Fault, FaultPlan, FaultServer
from postfixserver import postfix_server
from test_slowrelay import slow_relay

from newsletter.delivery import SmtpConnection
from newsletter.models import Outcome

pytestmark = pytest.mark.timeout(120)

SENDER = "news@daily.example.org"
DAY = dt.date(2026, 11, 25)


def message(number: int) -> bytes:
    """A message with a line a DATA client must dot-stuff (and a BDAT client must not)."""
    return (
        f"From: <{SENDER}>\r\nTo: <r{number}@example.com>\r\nSubject: Number {number}\r\n\r\n"
        f"first line\r\n.a line with a dot\r\nthe end of {number}\r\n"
    ).encode()


def settings_for(settings, port: int, **changes):
    return settings.model_copy(
        update={"smtp_port": port, "smtp_timeout": 5.0, "pipeline_window": 4, **changes}
    )


def send_all(settings, numbers, *, lanes: int) -> tuple[dict[int, object], SmtpConnection]:
    """Send message(n) to r{n}@example.com for each n, `lanes` at a time on one connection;
    the result of each, by n."""
    connection = SmtpConnection(settings)
    results: dict[int, object] = {}

    async def lane(queue: asyncio.Queue) -> None:
        while not queue.empty():
            number = queue.get_nowait()
            results[number] = await connection.send(
                SENDER, f"r{number}@example.com", message(number)
            )

    async def go() -> None:
        queue: asyncio.Queue = asyncio.Queue()
        for number in numbers:
            queue.put_nowait(number)
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(lane(queue) for _ in range(lanes)))
        finally:
            await connection.close()

    asyncio.run(go())
    return results, connection


def delivered_numbers(server: FaultServer) -> Counter[int]:
    return Counter(
        int(rcpt.split("@")[0][1:]) for item in server.delivered for rcpt in item.rcpt_tos
    )


def bodies_in_order(server: FaultServer) -> list[bytes]:
    """What arrived, ordered by message number."""
    return [d.data for d in sorted(server.delivered, key=lambda d: int(d.rcpt_tos[0][1:-12]))]


def sent_exactly_when_delivered(results, server: FaultServer) -> None:
    """The guarantee: SENT means the relay took it (once); anything else, it did not."""
    delivered = delivered_numbers(server)
    sent = {n for n, result in results.items() if result.outcome == Outcome.SENT}
    assert set(delivered) == sent, (dict(delivered), results)
    assert all(count == 1 for count in delivered.values())


def test_over_data_each_message_waits_once_for_its_354(settings):
    stats: dict = {}
    with FaultServer(pipelining=True) as server, slow_relay(server, stats) as port:
        results, connection = send_all(settings_for(settings, port), range(10), lanes=2)
        assert server.commands["DATA"] == 10 and server.commands["BDAT"] == 0
        bodies = bodies_in_order(server)
    assert [r.outcome for r in results.values()] == [Outcome.SENT] * 10
    sent_exactly_when_delivered(results, server)
    assert bodies == [message(n) for n in range(10)]  # dot-stuffed on the wire, intact here
    # One round trip per message: the first MAIL's, then each body's end carries the next
    # message's MAIL, RCPT and DATA (RFC 2920); no RCPT or DATA ever waits on its own.
    trips = stats["trips"]
    assert trips.get("MAIL") == 1 and trips.get(".") == 10, trips
    assert "RCPT" not in trips and "DATA" not in trips, trips


def test_with_chunking_a_window_of_messages_is_on_the_wire_at_once(settings):
    stats: dict = {}
    with FaultServer(chunking=True) as server, slow_relay(server, stats) as port:
        results, connection = send_all(settings_for(settings, port), range(16), lanes=4)
        assert connection.messages_sent == 16
        assert server.commands["BDAT"] == 16 and server.commands["DATA"] == 0
        bodies = bodies_in_order(server)
    sent_exactly_when_delivered(results, server)
    assert bodies == [message(n) for n in range(16)]  # as written: BDAT is never dot-stuffed
    assert stats["chunk_bytes"] == sum(len(message(n)) for n in range(16))
    # Up to four messages ride in one round trip, so 16 take far fewer than 16.
    message_trips = sum(stats["trips"].get(verb, 0) for verb in ("MAIL", "RCPT", "BDAT"))
    assert message_trips <= 8, stats["trips"]


def test_the_window_is_the_setting(settings):
    """PIPELINE_WINDOW=1: however many lanes ask, one message at a time on the wire."""
    stats: dict = {}
    with FaultServer(chunking=True) as server, slow_relay(server, stats) as port:
        results, _ = send_all(settings_for(settings, port, pipeline_window=1), range(6), lanes=4)
    sent_exactly_when_delivered(results, server)
    assert stats["trips"].get("MAIL") == 6, stats["trips"]


def test_smtp_chunking_false_sends_data_to_a_relay_that_offers_chunking(settings):
    with FaultServer(chunking=True) as server:
        results, _ = send_all(
            settings_for(settings, server.port, smtp_chunking=False), range(5), lanes=3
        )
        assert server.commands["DATA"] == 5 and server.commands["BDAT"] == 0
    sent_exactly_when_delivered(results, server)


@pytest.mark.parametrize("reset", [True, False], ids=["postfix-like", "strict"])
def test_a_refused_recipient_in_a_window_fails_alone(settings, reset):
    """The refused one is a hard bounce. Behind it in the window: a relay that resets
    the refused transaction takes them; a strict one refuses the next MAIL (503, out of
    sequence) until our RSET: those are retried later, never failed, never counted."""
    plan = FaultPlan(per_address={"r3@example.com": Fault("rcpt", "reply", 550)})
    with FaultServer(plan, chunking=True, reset_after_failed_bdat=reset) as server:
        results, _ = send_all(settings_for(settings, server.port), range(12), lanes=4)
        connections = server.connections
    assert results[3].outcome == Outcome.PERMANENT and results[3].hard_bounce
    assert results[3].reply.startswith("550")
    others = {n: r for n, r in results.items() if n != 3}
    assert all(r.outcome in (Outcome.SENT, Outcome.TRANSIENT) for r in others.values())
    assert not any(r.hard_bounce for r in others.values())
    transient = [n for n, r in others.items() if r.outcome == Outcome.TRANSIENT]
    if reset:
        assert transient == []
    else:
        assert transient and all(others[n].reply.startswith("503") for n in transient)
        assert max(transient) < 11 and results[11].outcome == Outcome.SENT  # RSET freed it
    sent_exactly_when_delivered(results, server)
    assert connections == 1  # a reply, even a refusal, leaves the connection in step


@pytest.mark.parametrize("mode", [{"pipelining": True}, {"chunking": True}], ids=["data", "bdat"])
def test_a_connection_dropped_with_replies_owed_retries_all_of_them(settings, mode):
    """r2's message arrives and the relay drops the line before it answers: r2 and every
    message behind it have no final reply, so none is counted as sent."""
    plan = FaultPlan(per_address={"r2@example.com": Fault("data", "drop_before")})
    with FaultServer(plan, **mode) as server:
        results, _ = send_all(settings_for(settings, server.port), range(8), lanes=4)
    assert results[2].outcome == Outcome.TRANSIENT
    sent_exactly_when_delivered(results, server)
    assert 2 not in delivered_numbers(server)
    assert {n for n, r in results.items() if r.outcome == Outcome.SENT} >= {0, 1}


@pytest.mark.parametrize("mode", [{"pipelining": True}, {"chunking": True}], ids=["data", "bdat"])
def test_a_4xx_after_the_message_defers_it_and_keeps_the_connection(settings, mode):
    plan = FaultPlan(per_address={"r1@example.com": Fault("data", "reply", 451)})
    with FaultServer(plan, **mode) as server:
        results, _ = send_all(settings_for(settings, server.port), range(6), lanes=3)
        connections = server.connections
    assert results[1].outcome == Outcome.TRANSIENT and results[1].reply.startswith("451")
    assert [n for n, r in results.items() if r.outcome == Outcome.SENT] == [0, 2, 3, 4, 5]
    sent_exactly_when_delivered(results, server)
    assert connections == 1


def test_a_silent_relay_times_out_every_message_in_the_window(settings):
    """The relay takes r1's message and says nothing for longer than SMTP_TIMEOUT: the
    connection is given up, and the messages behind it are retried, not counted."""
    plan = FaultPlan(per_address={"r1@example.com": Fault("data", "slow", delay=3.0)})
    with FaultServer(plan, chunking=True) as server:
        results, _ = send_all(
            settings_for(settings, server.port, smtp_timeout=0.5), range(4), lanes=4
        )
    assert results[0].outcome == Outcome.SENT
    assert all(results[n].outcome == Outcome.TRANSIENT for n in (1, 2, 3)), results
    assert "timed out" in results[1].reply


def test_no_message_is_written_once_it_is_no_longer_wanted(settings):
    """The send loop asks, when a message's turn comes, whether its subscriber is still
    there; a no leaves it unwritten (None), and the stream goes on."""
    with FaultServer(chunking=True) as server:
        connection = SmtpConnection(settings_for(settings, server.port))

        async def go():
            async def gone() -> bool:
                return False

            try:
                first = await connection.send(SENDER, "r0@example.com", message(0), gone)
                second = await connection.send(SENDER, "r1@example.com", message(1))
                return first, second
            finally:
                await connection.close()

        first, second = asyncio.run(go())
    assert first is None and second.outcome == Outcome.SENT
    assert delivered_numbers(server) == Counter({1: 1})


# ── through a real Postfix smtpd (CHUNKING) ─────────────────────────────────


def wait_for(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def smtpd_commands(log: str) -> Counter[str]:
    """Postfix's smtpd sums up each session at disconnect: `mail=30 rcpt=30 bdat=30 …`
    (`rcpt=30/31` when one was refused: accepted/total). Totals over the sessions."""
    totals: Counter[str] = Counter()
    for line in log.splitlines():
        if " disconnect from " not in line:
            continue
        for field in line.split(" disconnect from ", 1)[1].split()[1:]:
            name, _, value = field.partition("=")
            if value:
                totals[name] += int(value.split("/")[-1])
    return totals


def test_a_send_through_a_real_postfix_goes_as_bdat_windows(engine, settings):
    from newsletter import subscribers as subscriber_ops
    from newsletter.app import prepare_edition, send_edition

    emails = [f"reader{n:02d}@example.com" for n in range(30)]
    for email in [*emails, "gone@example.com"]:
        subscriber_ops.add_subscriber(engine, email)
    refuse = "check_recipient_access inline:{ {gone@example.com=550 5.1.1 no such user} }"
    with (
        FaultServer() as onward,
        postfix_server(
            relayhost=f"[127.0.0.1]:{onward.port}",
            default_transport="smtp",
            smtpd_recipient_restrictions=f"{refuse}, permit_mynetworks, reject",
        ) as relay,
    ):
        fast = settings.model_copy(
            update={"smtp_port": relay.port, "concurrency": 2, "pipeline_window": 4}
        )
        prepared = prepare_edition(engine, fast, DAY)
        summary = asyncio.run(send_edition(engine, fast, prepared.stored))
        # Postfix hands each message on to `onward`; everything it accepted arrives there.
        assert wait_for(lambda: len(onward.delivered) >= 30), relay.log()[-3000:]
        time.sleep(0.5)  # and nothing more
        onward_counts = Counter(rcpt for d in onward.delivered for rcpt in d.rcpt_tos)
        commands = smtpd_commands(relay.log())
    assert summary.sent == 30 and summary.failed == 1
    assert summary.failures[0][0] == "gone@example.com" and "5.1.1" in summary.failures[0][1]
    assert onward_counts == Counter({email: 1 for email in emails})
    # Our sessions (the relay check, then CONCURRENCY connections) used BDAT, never DATA.
    assert commands["bdat"] == 31 and commands["data"] == 0, commands
