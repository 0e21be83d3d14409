"""A supervised send: whatever fails, the send stops within a bound, says why, and a rerun
finishes the edition with nobody missed and at most CONCURRENCY x PIPELINE_WINDOW duplicates
(the messages the relay had accepted and the database did not yet record).

The faults are injected the way httpx's MockTransport stands in for a transport:
the loop receives its ledger and its mailer factory as parameters, so a test
wraps the real SQL ledger (a real SQLite file) in one that fails its Nth call
of a given method, or hands it mailers that fail. The SMTP side is the real
fault-injecting server of `faultsmtp.py`. (The same faults against the real
things, a locked file, a full disk, a stopped PostgreSQL, are in
`test_store_faults.py`.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
import time
from collections import Counter

import pytest
from faultsmtp import Fault, FaultPlan, FaultServer
from sqlalchemy import select, update

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.delivery import Ledger, SendLoop, SendSummary, SmtpMailers
from newsletter.errors import DeliveryError, StoreError, StoreUnavailable
from newsletter.liveness import holder_id, is_dead, run_holder
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store.deliveries import DeliveryRecord
from newsletter.store.ledger import SqlLedger
from newsletter.store.schema import deliveries, subscribers

pytestmark = pytest.mark.timeout(120)

DAY = dt.date(2026, 11, 25)
CONCURRENCY = 3
WINDOW = 4  # PIPELINE_WINDOW: the lanes of each connection, each a message in hand
IN_FLIGHT = CONCURRENCY * WINDOW  # the crash bound: accepted by the relay, not yet recorded
BOUND = 30.0  # seconds a failing send may take to stop (it takes about one)
BOUNCER, SLOW = "bouncer@example.com", "later@example.com"
LEDGER_METHODS = sorted(
    name for name in vars(Ledger) if not name.startswith("_") and name != "claimer"
)


def people(n: int) -> list[str]:
    return [f"reader{i:03d}@example.com" for i in range(n)]


@pytest.fixture
def relay():
    """The relay: refuses BOUNCER (a hard bounce) and puts SLOW off once (a deferred row)."""
    plan = FaultPlan(per_address={BOUNCER: Fault("rcpt", "reply", 550)}, first_n={SLOW: 1})
    with FaultServer(plan, pipelining=True) as server:
        yield server


@pytest.fixture
def fast(settings, relay):
    return settings.model_copy(
        update={
            "smtp_port": relay.port,
            "concurrency": CONCURRENCY,
            "pipeline_window": WINDOW,
            "retry_delay": 0.02,
            "smtp_timeout": 5.0,
            "store_retry_window": 2.0,
            "lease_seconds": 300,
        }
    )


def dead_claimer() -> str:
    """The claimer name of a process on this machine that has exited, as a crashed sender's."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:gone"


class FaultyLedger:
    """A ledger whose `method` raises `error` on its `nth` call (`times` calls in a row).

    Every other call goes to the real ledger underneath. `struck` says whether the
    fault happened, so a test can never pass without it.
    """

    def __init__(
        self, inner: Ledger, method: str, nth: int, error: Exception, times: int = 1
    ) -> None:
        self.inner, self.method, self.nth, self.error, self.times = inner, method, nth, error, times
        self.claimer = inner.claimer
        self.calls: Counter[str] = Counter()
        self.struck = 0

    def __getattr__(self, name: str):  # noqa: ANN204
        real = getattr(self.inner, name)

        async def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.calls[name] += 1
            if name == self.method and self.nth <= self.calls[name] < self.nth + self.times:
                self.struck += 1
                raise self.error
            return await real(*args, **kwargs)

        return call


def start_edition(engine, settings, emails, *, dead_rows: int = 3):
    """The stored edition, queued, with `dead_rows` rows held by a sender that died."""
    for email in emails:
        subscriber_ops.add_subscriber(engine, email)
    stored = prepare_edition(engine, settings, DAY).stored
    delivery_store.queue_deliveries(engine, stored.id)
    with engine.begin() as conn:
        held = select(deliveries.c.id).order_by(deliveries.c.id.desc()).limit(dead_rows)
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(held.scalar_subquery()))
            .values(
                status=DeliveryStatus.SENDING,
                claimed_by=dead_claimer(),
                lease_until=dt.datetime(2100, 1, 1),
            )
        )
    return stored


def faulty_send(engine, settings, stored, ledger, *, mailers=None, stop=None) -> SendSummary:
    """One send through `ledger`, as a sender process whose claims outlive it would."""
    summary = SendSummary()
    loop = SendLoop(
        ledger,
        mailers or SmtpMailers(settings),
        settings,
        stored,
        summary,
        stop=stop or asyncio.Event(),
        cleanup_seconds=2.0,  # when the fault outlasts the stop, the cleanup gives up sooner
    )

    async def go() -> None:
        await asyncio.wait_for(loop.run(), BOUND)  # a hang fails the test here

    asyncio.run(go())
    return summary


def rerun_finishes(engine, settings, stored, relay, emails):
    """The next send finishes the edition: everyone has it, duplicates within the bound."""
    summary = asyncio.run(send_edition(engine, settings, stored))
    assert summary.remaining == 0
    counts = relay.count_by_recipient()
    wanted = set(emails) - {BOUNCER}
    assert set(counts) == wanted, f"missed: {wanted - set(counts)}"
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= IN_FLIGHT, counts
    by_status = delivery_store.count_by_status(engine, stored.id)
    assert by_status[DeliveryStatus.SENT] == len(wanted)
    assert by_status[DeliveryStatus.QUEUED] == by_status[DeliveryStatus.SENDING] == 0
    return duplicates


# Which call of each method fails: the first, and later ones a send of 30 reaches.
NTH = {
    "claim_batch": [1, 2, 3],
    "is_active": [1, 10, 25],
    "record_outcomes": [1, 3, 8],
    "next_retry_at": [1],
    "claimers": [1, 2],
    "release_claims_of": [1],
}
CASES = [(method, nth) for method in sorted(NTH) for nth in NTH[method]]


def test_every_ledger_method_is_covered():
    assert sorted([*NTH, "release_claims"]) == LEDGER_METHODS


@pytest.mark.parametrize(("method", "nth"), CASES, ids=[f"{m}-{n}" for m, n in CASES])
def test_a_store_failure_anywhere_stops_the_send_and_a_rerun_finishes(
    engine, fast, relay, method, nth
):
    emails = [*people(28), BOUNCER, SLOW]
    stored = start_edition(engine, fast, emails)
    real = SqlLedger(engine, stored.id, claimer=dead_claimer(), lease=dt.timedelta(seconds=300))
    error = StoreError(f"injected fault in {method}", where="the test's ledger", hint="none")
    ledger = FaultyLedger(real, method, nth, error)

    with pytest.raises(StoreError) as caught:
        faulty_send(engine, fast, stored, ledger)
    assert ledger.struck == 1, "the fault never struck; the test proves nothing"
    assert f"injected fault in {method}" in str(caught.value)
    by_status = delivery_store.count_by_status(engine, stored.id)
    held = [row for row in claimed_rows(engine) if row.claimed_by == real.claimer]
    assert held == [], "unsent claims were not given back"
    assert by_status[DeliveryStatus.SENT] <= len(relay.delivered)  # never counted unsent

    rerun_finishes(engine, fast, stored, relay, emails)


class BounceCommitFails:
    """A ledger whose first commit holding a hard bounce raises: before writing anything, or
    (`after_writing`) once the write went through, as a connection lost after COMMIT."""

    def __init__(self, inner: Ledger, *, after_writing: bool) -> None:
        self.inner, self.after_writing, self.struck = inner, after_writing, False
        self.claimer = inner.claimer

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.inner, name)

    async def record_outcomes(self, records, bounce_limit):  # noqa: ANN001, ANN201
        if self.struck or not any(record.hard_bounce for record in records):
            return await self.inner.record_outcomes(records, bounce_limit)
        self.struck = True
        if self.after_writing:
            await self.inner.record_outcomes(records, bounce_limit)
        raise StoreError("injected fault in the bounce's commit", where="the test's ledger")


def bounces_of(engine, email: str):
    with engine.connect() as conn:
        return conn.execute(
            select(subscribers.c.bounce_count, subscribers.c.status).where(
                subscribers.c.email == email
            )
        ).one()


@pytest.mark.parametrize("after_writing", [False, True], ids=["lost", "written"])
def test_a_hard_bounce_recorded_at_the_stop_counts_exactly_once(engine, fast, relay, after_writing):
    """The 5xx's commit fails, so the send stops and its cleanup writes the record: the
    bounce counts then (it never did), and only once when the failed commit had written
    it after all."""
    emails = [*people(5), BOUNCER]
    stored = start_edition(engine, fast, emails, dead_rows=0)
    once = fast.model_copy(update={"bounce_limit": 1})
    real = SqlLedger(engine, stored.id, claimer=dead_claimer(), lease=dt.timedelta(seconds=300))
    ledger = BounceCommitFails(real, after_writing=after_writing)

    with pytest.raises(StoreError, match="injected fault in the bounce's commit") as caught:
        faulty_send(engine, once, stored, ledger)
    assert ledger.struck and "results recorded at the stop" in str(caught.value)
    assert bounces_of(engine, BOUNCER) == (1, SubscriberStatus.BOUNCED.value)
    with engine.connect() as conn:
        attempts, status = conn.execute(
            select(deliveries.c.attempts, deliveries.c.status).where(deliveries.c.email == BOUNCER)
        ).one()
    assert (attempts, status) == (1, DeliveryStatus.FAILED.value)  # written once, too


def test_writing_a_hard_bounce_again_counts_nothing_twice(engine, fast):
    """At the store: the record written a second time changes nothing."""
    stored = start_edition(engine, fast, [BOUNCER], dead_rows=0)
    [claim], _ = delivery_store.claim_batch(
        engine, stored.id, claimer="test", size=1, lease=dt.timedelta(minutes=5)
    )
    record = DeliveryRecord(
        claim.delivery_id, DeliveryStatus.FAILED, "550 5.1.1 gone", True, None, hard_bounce=True
    )
    assert delivery_store.record_outcomes(engine, [record], bounce_limit=2) == []
    assert delivery_store.record_outcomes(engine, [record], bounce_limit=2) == []
    assert bounces_of(engine, BOUNCER) == (1, SubscriberStatus.ACTIVE.value)


def test_a_run_holder_is_alive_while_its_run_lasts_and_dead_after():
    """What lets the next send of a live process take back an ended send's claims."""
    with run_holder() as holder, run_holder() as other:
        assert not is_dead(holder) and not is_dead(other)
    assert is_dead(holder) and is_dead(other)
    assert not is_dead(holder_id())  # this process's other holders (the scheduler's lock)
    assert is_dead(dead_claimer()) and not is_dead("elsewhere:1:run-abcd")


def claimed_rows(engine):
    with engine.connect() as conn:
        return conn.execute(
            select(deliveries.c.id, deliveries.c.claimed_by).where(
                deliveries.c.status == DeliveryStatus.SENDING
            )
        ).all()


def test_when_even_giving_claims_back_fails_the_error_says_the_next_send_takes_them(
    engine, fast, relay
):
    emails = people(40)
    stored = start_edition(engine, fast, emails, dead_rows=0)
    real = SqlLedger(engine, stored.id, claimer=dead_claimer(), lease=dt.timedelta(seconds=300))
    error = StoreError("injected fault in release_claims", where="the test's ledger")
    ledger = FaultyLedger(real, "release_claims", 1, error)
    stop = asyncio.Event()

    class StopAfterTen(SmtpMailers):  # a signal arrives once ten messages went out
        def __call__(self):  # noqa: ANN204
            connection = super().__call__()
            send = connection.send

            async def counted(*args):  # noqa: ANN002, ANN202
                result = await send(*args)
                if len(relay.delivered) >= 10:
                    stop.set()
                return result

            connection.send = counted
            return connection

    with pytest.raises(StoreError) as caught:
        faulty_send(engine, fast, stored, ledger, mailers=StopAfterTen(fast), stop=stop)
    assert ledger.struck == 1
    message = str(caught.value)
    assert "injected fault in release_claims" in message
    assert "the send was stopped" in message and "the next send takes them back" in message
    assert claimed_rows(engine), "the claims should still be held by the dead sender"

    duplicates = rerun_finishes(engine, fast, stored, relay, emails)
    print(f"\nrelease failed: {duplicates} duplicates (bound {IN_FLIGHT})")


def test_a_store_unavailable_for_less_than_the_window_is_ridden_out(engine, fast, relay):
    emails = [*people(28), BOUNCER, SLOW]
    stored = start_edition(engine, fast, emails, dead_rows=0)
    real = SqlLedger(engine, stored.id, claimer=dead_claimer(), lease=dt.timedelta(seconds=300))
    busy = StoreUnavailable("the database is locked by another process", where="test")
    ledger = FaultyLedger(real, "record_outcomes", 3, busy, times=4)
    patient = fast.model_copy(update={"store_retry_window": 30.0})

    summary = faulty_send(engine, patient, stored, ledger)
    assert ledger.struck == 4
    counts = relay.count_by_recipient()
    assert counts == Counter({email: 1 for email in emails if email != BOUNCER})  # no duplicate
    assert summary.sent == 29 and summary.failed == 1 and summary.deferred == 1
    assert delivery_store.count_by_status(engine, stored.id)[DeliveryStatus.SENT] == 29


def test_a_store_unavailable_past_the_window_stops_with_one_clear_error(engine, fast, relay):
    emails = people(30)
    stored = start_edition(engine, fast, emails, dead_rows=0)
    real = SqlLedger(engine, stored.id, claimer=dead_claimer(), lease=dt.timedelta(seconds=300))
    busy = StoreUnavailable("the database is locked by another process", where="test.db")
    ledger = FaultyLedger(real, "record_outcomes", 5, busy, times=1000)

    with pytest.raises(StoreUnavailable) as caught:
        faulty_send(engine, fast, stored, ledger)  # STORE_RETRY_WINDOW is 2 s here
    assert "the database has been unavailable for 2s" in str(caught.value)
    assert caught.value.where == "test.db"
    rerun_finishes(engine, fast, stored, relay, emails)


class BrokenMailers(SmtpMailers):
    """Real SMTP connections, except that the `nth` message sent raises a plain bug."""

    def __init__(self, settings, nth: int) -> None:
        super().__init__(settings)
        self.nth, self.sent = nth, 0

    def __call__(self):  # noqa: ANN204
        connection = super().__call__()
        send = connection.send

        async def broken(*args):  # noqa: ANN002, ANN202
            self.sent += 1
            if self.sent == self.nth:
                raise RuntimeError("a bug in the mailer")
            return await send(*args)

        connection.send = broken
        return connection


def test_an_unexpected_error_in_a_worker_stops_the_send_naming_it(engine, fast, relay):
    emails = people(30)
    stored = start_edition(engine, fast, emails, dead_rows=0)
    real = SqlLedger(engine, stored.id, claimer=dead_claimer(), lease=dt.timedelta(seconds=300))
    with pytest.raises(DeliveryError) as caught:
        faulty_send(engine, fast, stored, real, mailers=BrokenMailers(fast, 12))
    assert "unexpected error: RuntimeError: a bug in the mailer" in str(caught.value)
    assert claimed_rows(engine) == []  # unsent claims went back
    rerun_finishes(engine, fast, stored, relay, emails)


def test_the_recorder_failing_for_good_stops_the_send_instead_of_freezing_it(
    engine, fast, relay, monkeypatch
):
    """The defect of issue 9: a worker's record failing killed it, and the send waited for
    ever on a queue nobody read. Through the real `send_edition`."""
    emails = people(40)
    for email in emails:
        subscriber_ops.add_subscriber(engine, email)
    stored = prepare_edition(engine, fast, DAY).stored
    real_record = delivery_store.record_outcomes
    calls, failing_since = Counter(), []

    def record_outcomes(engine_, outcomes, **options):  # noqa: ANN001, ANN003, ANN202
        """From the 4th commit on, locked for 3 s: past the window, then back for the cleanup."""
        calls["record"] += 1
        if calls["record"] >= 4 and not failing_since:
            failing_since.append(time.monotonic())
        if failing_since and time.monotonic() < failing_since[0] + 3.0:
            raise StoreUnavailable("the database is locked by another process", where="test")
        return real_record(engine_, outcomes, **options)

    monkeypatch.setattr(delivery_store, "record_outcomes", record_outcomes)

    async def go() -> None:
        await asyncio.wait_for(send_edition(engine, fast, stored), BOUND)

    with pytest.raises(StoreUnavailable, match="unavailable for 2s"):
        asyncio.run(go())
    assert claimed_rows(engine) == []  # the cleanup recorded what was sent, gave back the rest
    duplicates = rerun_finishes(engine, fast, stored, relay, emails)
    assert duplicates == 0  # the database came back within the cleanup: no 250 was lost


def test_cancelling_a_send_still_records_what_was_accepted_and_gives_back_the_rest(
    engine, fast, relay
):
    """A second signal (or a caller's deadline) cancels the send's task: the cleanup still
    runs, bounded, so no claim is left behind."""
    emails = people(60)
    for email in emails:
        subscriber_ops.add_subscriber(engine, email)
    stored = prepare_edition(engine, fast, DAY).stored

    async def go() -> None:
        task = asyncio.create_task(send_edition(engine, fast, stored))
        async with asyncio.timeout(BOUND):
            while len(relay.delivered) < 10 and not task.done():
                await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, BOUND)

    asyncio.run(go())
    assert claimed_rows(engine) == []
    sent = delivery_store.count_by_status(engine, stored.id)[DeliveryStatus.SENT]
    assert len(relay.delivered) - IN_FLIGHT <= sent <= len(relay.delivered) < len(emails)
    rerun_finishes(engine, fast, stored, relay, emails)
