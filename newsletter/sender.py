"""The claim → build → send → record loop of one sending process.

One producer claims batches of delivery rows and builds each message; one
worker per SMTP connection (CONCURRENCY of them) sends and records. The
record is written the moment the server answers, so at a crash the only
messages that can go twice are the ones a worker had handed over and not yet
recorded: at most one per connection.

    claimed ──> still subscribed? ──no──> skipped
                    │ yes
                    v
              SMTP transaction ──250──> sent (committed at once)
                    │ 4xx / dropped / timeout ──> queued again after a backoff, or
                    │                             failed when MAX_ATTEMPTS/RETRY_WINDOW are spent
                    │ 5xx for the recipient ──> failed (+ a hard bounce on the subscriber)
                    └ relay unreachable ──> wait and retry the same message, uncharged;
                                             past RETRY_WINDOW the send stops, rows stay queued
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from newsletter.compose import compose_message, delivery_message_id
from newsletter.config import Settings
from newsletter.delivery import (
    Outcome,
    RateLimiter,
    RelayUnavailable,
    SendResult,
    SmtpConnection,
    check_relay,
)
from newsletter.errors import DeliveryError, InputError
from newsletter.liveness import holder_id, is_dead
from newsletter.logs import event
from newsletter.models import DeliveryStatus, Recipient
from newsletter.store import deliveries as delivery_store
from newsletter.store import subscribers as subscriber_store
from newsletter.store.deliveries import DeliveryRecord
from newsletter.store.editions import StoredEdition
from newsletter.store.engine import utcnow
from newsletter.tokens import Signer

log = logging.getLogger("newsletter.sender")

ProgressCallback = Callable[[DeliveryStatus, str], None]


@dataclass
class SendSummary:
    queued_now: int = 0  # rows added by this run (new subscribers since the last run)
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # transient failures put back for a retry
    reclaimed: int = 0  # rows taken back from a sender that died
    elapsed: float = 0.0
    remaining: int = 0  # rows still queued or claimed when the run ended
    stopped: bool = False  # ended early by a signal; the next run finishes the edition
    held: bool = False  # an editor put the edition on hold: nothing was sent
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    delivery_id: int
    subscriber_id: int
    email: str
    attempts: int
    first_attempt_at: dt.datetime | None
    data: bytes


class RelayWatch:
    """Shared by every connection: since when the relay has been unreachable, if it is."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.down_since: float | None = None
        self.failures = 0

    def failed(self, reason: str) -> float:
        """Note a failed connection; the seconds to wait, or DeliveryError past the window.

        The wait grows with how long the relay has been down (half of it, between
        RETRY_DELAY and a minute), not with how many connections failed, so many
        workers hitting a dead relay don't push each other's waits up.
        """
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning("relay unreachable, retrying: %s", reason)
        self.failures += 1
        down_for = now - self.down_since
        if down_for >= self.settings.retry_window:
            raise DeliveryError(
                f"the relay has been unreachable for {down_for:.0f}s ({reason}); "
                "unsent messages stay queued",
                where=f"{self.settings.smtp_host}:{self.settings.smtp_port}",
                hint="check the relay is up and NEWSLETTER_SMTP_HOST/PORT, then send again",
            )
        wait = min(max(self.settings.retry_delay, down_for / 2), 60.0)
        return wait * random.uniform(0.5, 1.5)

    def ok(self) -> None:
        if self.down_since is not None:
            log.warning("relay reachable again after %.0fs", time.monotonic() - self.down_since)
        self.down_since, self.failures = None, 0


def backoff(base: float, attempt: int) -> float:
    """Exponential with jitter, so retries of many messages don't arrive together."""
    return base * (2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.5)


async def wait_for_relay(settings: Settings, stop: asyncio.Event, watch: RelayWatch) -> bool:
    """Before a send: a relay that is briefly down delays the send instead of failing it."""
    while not stop.is_set():
        try:
            await check_relay(settings)
        except RelayUnavailable as exc:
            await sleep_or_stop(stop, watch.failed(str(exc)))
            continue
        watch.ok()
        return True
    return False


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        pass


class GroupCommit:
    """Write results in shared transactions without weakening the crash bound.

    Every worker hands its result here and waits until it is committed before it
    takes its next message. Results that arrive while a commit runs go into the
    next one, so one commit serves all the connections that finished meanwhile,
    and at any moment each connection has at most one message that the server
    may have accepted but the database does not yet say is sent.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pending: list[tuple[DeliveryRecord, asyncio.Future[None]]] = []
        self.flushing: asyncio.Task[None] | None = None

    async def write(self, record: DeliveryRecord) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((record, done))
        if self.flushing is None or self.flushing.done():
            self.flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                records = [record for record, _ in batch]
                await asyncio.to_thread(delivery_store.record_outcomes, self.engine, records)
            except BaseException as exc:  # the waiting workers see the error, nothing is lost
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


class Sender:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        stored: StoredEdition,
        summary: SendSummary,
        *,
        on_result: ProgressCallback | None = None,
        stop: asyncio.Event,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.stored = stored
        self.edition = stored.rendered.date.isoformat()
        self.summary = summary
        self.on_result = on_result or (lambda status, email: None)
        self.stop = stop
        self.claimer = holder_id()
        self.signer = Signer(settings.secret_key.get_secret_value())
        self.limiter = RateLimiter(settings.rate_limit)
        self.watch = RelayWatch(settings)
        self.recorder = GroupCommit(engine)
        self.is_active = delivery_store.ActiveCheck(engine)
        self.jobs: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=settings.concurrency * 2)
        self.in_flight: set[int] = set()  # claimed by us, not yet recorded
        self.recorded = asyncio.Event()
        self.fatal: DeliveryError | None = None

    async def run(self) -> None:
        self.reclaim_from_dead()
        if not await wait_for_relay(self.settings, self.stop, self.watch):
            return
        workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.concurrency)]
        try:
            await self._produce()
        finally:
            for _ in workers:
                await self.jobs.put(None)
            await asyncio.gather(*workers, return_exceptions=True)
            self.is_active.close()
            released = delivery_store.release_claims(self.engine, self.in_flight)
            if released:
                event(log, "released", edition=self.edition, count=released)
        if self.fatal is not None:
            raise self.fatal

    def reclaim_from_dead(self) -> int:
        """Rows claimed by a sender that died on this machine go back to the queue now."""
        total = 0
        for claimer in delivery_store.claimers(self.engine, self.stored.id):
            if claimer != self.claimer and is_dead(claimer):
                count = delivery_store.release_claims_of(self.engine, self.stored.id, claimer)
                self.summary.reclaimed += count
                total += count
                event(
                    log,
                    "reclaimed",
                    level=logging.WARNING,
                    edition=self.edition,
                    count=count,
                    dead_sender=claimer,
                )
        return total

    async def _produce(self) -> None:
        batch_size = max(10, self.settings.concurrency * 4)
        lease = dt.timedelta(seconds=self.settings.lease_seconds)
        while not self.stop.is_set():
            claims, skipped = delivery_store.claim_batch(
                self.engine, self.stored.id, claimer=self.claimer, size=batch_size, lease=lease
            )
            self.summary.skipped += skipped
            if not claims and not skipped:
                if not await self._wait_for_more():
                    return
                continue
            self.in_flight.update(claim.delivery_id for claim in claims)  # released if we stop
            for claim in claims:
                try:
                    data = compose_message(
                        self.stored.rendered,
                        self.settings,
                        Recipient(claim.subscriber_id, claim.email, claim.name),
                        signer=self.signer,
                        message_id=delivery_message_id(
                            self.settings, self.stored.rendered, claim.delivery_id
                        ),
                    )
                except InputError as exc:  # this recipient's data cannot make a message
                    job = _Job(claim.delivery_id, claim.subscriber_id, claim.email, 0, None, b"")
                    await self._record(job, SendResult(Outcome.PERMANENT, f"not sent: {exc}"))
                    continue
                job = _Job(
                    claim.delivery_id,
                    claim.subscriber_id,
                    claim.email,
                    claim.attempts,
                    claim.first_attempt_at,
                    data,
                )
                await self.jobs.put(job)
                if self.stop.is_set():
                    return

    async def _wait_for_more(self) -> bool:
        """Nothing claimable now: wait for in-flight results or the next retry, or finish."""
        if self.in_flight:
            self.recorded.clear()
            await _wait_any(self.recorded, self.stop, timeout=1.0)
            return True
        if self.reclaim_from_dead():
            return True
        retry_at = delivery_store.next_retry_at(self.engine, self.stored.id)
        if retry_at is None:
            return False
        delay = (retry_at - utcnow()).total_seconds()
        event(log, "waiting", edition=self.edition, seconds=round(max(0.0, delay), 2))
        await sleep_or_stop(self.stop, max(0.05, delay))
        return True

    async def _worker(self) -> None:
        connection = SmtpConnection(self.settings)
        try:
            while (job := await self.jobs.get()) is not None:
                if self.stop.is_set():
                    continue  # left claimed; released to the queue when the run ends
                await self._deliver(connection, job)
        finally:
            await connection.close()

    async def _deliver(self, connection: SmtpConnection, job: _Job) -> None:
        if not self.is_active(job.subscriber_id):
            await self._skip(job)
            return
        await self.limiter.acquire()
        while not self.stop.is_set():
            try:
                result = await connection.send(self.settings.from_address, job.email, job.data)
            except RelayUnavailable as exc:
                try:
                    await sleep_or_stop(self.stop, self.watch.failed(str(exc)))
                except DeliveryError as fatal:
                    self._fail_run(fatal)
                continue
            except DeliveryError as fatal:
                self._fail_run(fatal)
                return
            self.watch.ok()
            await self._record(job, result)
            return

    def _fail_run(self, error: DeliveryError) -> None:
        self.fatal = self.fatal or error
        self.stop.set()

    async def _skip(self, job: _Job) -> None:
        await self.recorder.write(
            DeliveryRecord(
                job.delivery_id,
                DeliveryStatus.SKIPPED,
                "subscriber no longer active",
                attempted=False,
            )
        )
        self.in_flight.discard(job.delivery_id)
        self.summary.skipped += 1
        self.recorded.set()
        event(log, "delivery", edition=self.edition, recipient=job.email, status="skipped")
        self.on_result(DeliveryStatus.SKIPPED, job.email)

    async def _record(self, job: _Job, result: SendResult) -> None:
        attempts = job.attempts + 1
        next_attempt_at = None
        if result.outcome == Outcome.SENT:
            status = DeliveryStatus.SENT
            self.summary.sent += 1
        elif result.outcome == Outcome.TRANSIENT and self._may_retry(job, attempts):
            status = DeliveryStatus.QUEUED
            delay = backoff(self.settings.retry_delay, attempts)
            next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
            self.summary.deferred += 1
        else:
            status = DeliveryStatus.FAILED
            self.summary.failed += 1
            self.summary.failures.append((job.email, result.reply))
        await self.recorder.write(
            DeliveryRecord(job.delivery_id, status, result.reply, next_attempt_at=next_attempt_at)
        )
        if result.hard_bounce:
            became_bounced = subscriber_store.record_hard_bounce(
                self.engine, job.subscriber_id, self.settings.bounce_limit
            )
            if became_bounced:
                event(log, "bounced", level=logging.WARNING, recipient=job.email)
        self.in_flight.discard(job.delivery_id)
        self.recorded.set()
        event(
            log,
            "delivery",
            level=logging.INFO if status != DeliveryStatus.FAILED else logging.WARNING,
            edition=self.edition,
            recipient=job.email,
            status=status.value,
            attempt=attempts,
            reply=result.reply,
        )
        self.on_result(status, job.email)

    def _may_retry(self, job: _Job, attempts: int) -> bool:
        if attempts >= self.settings.max_attempts:
            return False
        if job.first_attempt_at is None:
            return True
        waited = (utcnow() - job.first_attempt_at).total_seconds()
        return waited < self.settings.retry_window


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
