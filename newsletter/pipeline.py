"""The one place that wires the stages together for a date.

    source ─> edition ─> render (once, stored) ─> queue one row per subscriber
          ─> claim a batch ─> personalize + build bytes ─> SMTP ─> record each result

Everything before the send is synchronous and pure apart from the store; the
send is an asyncio loop with one producer (claims rows and builds messages)
and `CONCURRENCY` workers, each owning one reused SMTP connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from newsletter.articles import open_source
from newsletter.config import Settings
from newsletter.delivery import Outcome, RateLimiter, SendResult, SmtpConnection, check_relay
from newsletter.edition import build_edition
from newsletter.errors import DeliveryError, InputError
from newsletter.message import build_message
from newsletter.models import DeliveryStatus, Recipient, RenderedEdition, SkippedFile
from newsletter.personalize import Slots, personalize
from newsletter.render import check_templates, render_edition
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store.editions import EditionStatus, StoredEdition
from newsletter.store.engine import utcnow
from newsletter.tokens import Signer, unsubscribe_links

log = logging.getLogger("newsletter.pipeline")


# ── building ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Prepared:
    """The stored edition of a date, and what the source had to skip to build it."""

    stored: StoredEdition
    skipped: tuple[SkippedFile, ...] = ()
    built_now: bool = False


def prepare_edition(engine: Engine, settings: Settings, date: dt.date) -> Prepared | None:
    """The date's edition: the stored one if it exists, else built, rendered and stored.

    None when the source has no articles for the date. Templates are checked
    first, so a broken template stops here, before anything is queued or sent.
    """
    stored = edition_store.get_edition(engine, date)
    if stored is not None:
        return Prepared(stored)
    check_templates(settings)
    day = open_source(settings.articles_source, settings.zone).articles_for(date)
    edition = build_edition(day, settings)
    if edition is None:
        return None if not day.skipped else _nothing_usable(day.skipped)
    rendered = render_edition(edition, settings)
    stored = edition_store.insert_edition(engine, rendered, len(edition.articles))
    return Prepared(stored, day.skipped, built_now=True)


def _nothing_usable(skipped: tuple[SkippedFile, ...]) -> None:
    for item in skipped:
        log.warning("skipped %s: %s", item.origin, item.reason)
    return None


@dataclass(frozen=True)
class Preview:
    rendered: RenderedEdition
    article_count: int
    skipped: tuple[SkippedFile, ...]


def build_preview(settings: Settings, date: dt.date) -> Preview | None:
    """Render a date's edition without storing it (the editor's preview, a rebuild)."""
    check_templates(settings)
    day = open_source(settings.articles_source, settings.zone).articles_for(date)
    edition = build_edition(day, settings)
    if edition is None:
        return None
    return Preview(render_edition(edition, settings), len(edition.articles), day.skipped)


# ── one recipient's message ───────────────────────────────────────────────────


def compose_message(
    rendered: RenderedEdition,
    settings: Settings,
    recipient: Recipient,
    *,
    signer: Signer | None = None,
    message_id: str | None = None,
) -> bytes:
    """The exact bytes one recipient gets: slots filled, headers set, signed unsubscribe links."""
    signer = signer or Signer(settings.secret_key.get_secret_value())
    https_url, mailto_url = unsubscribe_links(
        signer,
        base_url=settings.base_url,
        mailto=settings.unsubscribe_address,
        email=recipient.email,
    )
    slots = Slots(
        name=recipient.name,
        email=recipient.email,
        unsubscribe_url=https_url,
        view_online_url=view_online_url(settings, rendered.date),
    )
    html, text = personalize(rendered, slots)
    return build_message(
        settings=settings,
        recipient=recipient,
        subject=rendered.subject,
        html=html,
        text=text,
        unsubscribe_url=https_url,
        unsubscribe_mailto=mailto_url,
        message_id=message_id,
    )


def view_online_url(settings: Settings, date: dt.date) -> str:
    return f"{settings.base_url}/archive/{date.isoformat()}"


def delivery_message_id(settings: Settings, rendered: RenderedEdition, delivery_id: int) -> str:
    """Stable per delivery: if a crash makes us send a message twice, clients see one."""
    return (
        f"<{rendered.date:%Y%m%d}.{delivery_id}.{rendered.slot_token[:8]}@{settings.sender_domain}>"
    )


# ── sending ───────────────────────────────────────────────────────────────────


@dataclass
class SendSummary:
    queued_now: int = 0  # rows added by this run (new subscribers since the last run)
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # transient failures waiting for a retry when the run ended
    elapsed: float = 0.0
    remaining: int = 0  # rows still queued or claimed when the run ended
    failures: list[tuple[str, str]] = field(default_factory=list)


ProgressCallback = Callable[[DeliveryStatus, str], None]


def claimer_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


async def send_edition(
    engine: Engine,
    settings: Settings,
    stored: StoredEdition,
    *,
    on_result: ProgressCallback | None = None,
    stop: asyncio.Event | None = None,
) -> SendSummary:
    """Deliver an edition to every active subscriber who has not had it yet.

    Safe to run any number of times: rows already sent are never claimed
    again, and rows of new subscribers are queued on each run.
    """
    started = time.monotonic()
    stop = stop or asyncio.Event()
    summary = SendSummary()
    summary.queued_now = delivery_store.queue_deliveries(engine, stored.id)
    await check_relay(settings)
    if stored.status == EditionStatus.BUILT:
        edition_store.set_edition_status(engine, stored.id, EditionStatus.SENDING)
    sender = _Sender(engine, settings, stored, summary, on_result, stop)
    await sender.run()
    counts = delivery_store.count_by_status(engine, stored.id)
    summary.remaining = counts[DeliveryStatus.QUEUED] + counts[DeliveryStatus.SENDING]
    if summary.remaining == 0:
        edition_store.set_edition_status(engine, stored.id, EditionStatus.SENT)
    summary.elapsed = time.monotonic() - started
    return summary


@dataclass(frozen=True)
class _Job:
    delivery_id: int
    email: str
    attempts: int
    data: bytes


class _Sender:
    """The claim → build → send → record loop of one process."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        stored: StoredEdition,
        summary: SendSummary,
        on_result: ProgressCallback | None,
        stop: asyncio.Event,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.stored = stored
        self.summary = summary
        self.on_result = on_result or (lambda status, email: None)
        self.stop = stop
        self.claimer = claimer_id()
        self.signer = Signer(settings.secret_key.get_secret_value())
        self.limiter = RateLimiter(settings.rate_limit)
        self.jobs: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=settings.concurrency * 2)
        self.in_flight: set[int] = set()  # claimed by us, not yet recorded
        self.recorded = asyncio.Event()
        self.fatal: DeliveryError | None = None

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.concurrency)]
        try:
            await self._produce()
        finally:
            for _ in workers:
                await self.jobs.put(None)
            await asyncio.gather(*workers, return_exceptions=True)
            released = delivery_store.release_claims(self.engine, self.in_flight)
            if released:
                log.info("released %d claimed deliveries back to the queue", released)
        if self.fatal is not None:
            raise self.fatal

    async def _produce(self) -> None:
        batch_size = max(10, self.settings.concurrency * 4)
        lease = dt.timedelta(seconds=self.settings.lease_seconds)
        while not self.stop.is_set():
            claims = delivery_store.claim_batch(
                self.engine, self.stored.id, claimer=self.claimer, size=batch_size, lease=lease
            )
            if not claims:
                if not await self._wait_for_more():
                    return
                continue
            for claim in claims:
                self.in_flight.add(claim.delivery_id)
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
                    job = _Job(claim.delivery_id, claim.email, claim.attempts, b"")
                    self._record(job, SendResult(Outcome.PERMANENT, f"not sent: {exc}"))
                    continue
                await self.jobs.put(_Job(claim.delivery_id, claim.email, claim.attempts, data))
                if self.stop.is_set():
                    return

    async def _wait_for_more(self) -> bool:
        """Nothing claimable now: wait for in-flight results or the next retry, or finish."""
        if self.in_flight:
            self.recorded.clear()
            await _wait_any(self.recorded, self.stop, timeout=1.0)
            return True
        retry_at = delivery_store.next_retry_at(self.engine, self.stored.id)
        if retry_at is None:
            return False
        delay = (retry_at - utcnow()).total_seconds()
        log.info("waiting %.1fs to retry deferred deliveries", max(0.0, delay))
        await _wait_any(self.stop, timeout=max(0.05, delay))
        return True

    async def _worker(self) -> None:
        connection = SmtpConnection(self.settings)
        try:
            while (job := await self.jobs.get()) is not None:
                if self.stop.is_set():
                    continue  # left claimed; released to the queue when the run ends
                await self.limiter.acquire()
                try:
                    result = await connection.send(self.settings.from_address, job.email, job.data)
                except DeliveryError as exc:
                    self.fatal = self.fatal or exc
                    self.stop.set()
                    continue
                self._record(job, result)
        finally:
            await connection.close()

    def _record(self, job: _Job, result: SendResult) -> None:
        attempts = job.attempts + 1
        next_attempt_at = None
        if result.outcome == Outcome.SENT:
            status = DeliveryStatus.SENT
            self.summary.sent += 1
        elif result.outcome == Outcome.TRANSIENT and attempts < self.settings.max_attempts:
            status = DeliveryStatus.QUEUED
            next_attempt_at = utcnow() + dt.timedelta(seconds=self._backoff(attempts))
            self.summary.deferred += 1
        else:
            status = DeliveryStatus.FAILED
            self.summary.failed += 1
            self.summary.failures.append((job.email, result.reply))
        delivery_store.record_outcome(
            self.engine, job.delivery_id, status, result.reply, next_attempt_at=next_attempt_at
        )
        self.in_flight.discard(job.delivery_id)
        self.recorded.set()
        log.info(
            "delivery edition=%s recipient=%s status=%s reply=%r",
            self.stored.rendered.date,
            job.email,
            status,
            result.reply,
        )
        self.on_result(status, job.email)

    def _backoff(self, attempts: int) -> float:
        """Exponential with full jitter, so retries from many rows don't arrive together."""
        base = self.settings.retry_delay * (2 ** (attempts - 1))
        return base * random.uniform(0.5, 1.5)


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


# ── test sends ────────────────────────────────────────────────────────────────


async def send_test(
    engine: Engine, settings: Settings, stored: StoredEdition, email: str, name: str = ""
) -> SendResult:
    """Send the real edition to any address, recorded apart from subscriber deliveries."""
    await check_relay(settings)
    data = compose_message(stored.rendered, settings, Recipient(None, email, name))
    connection = SmtpConnection(settings)
    try:
        result = await connection.send(settings.from_address, email, data)
    finally:
        await connection.close()
    delivery_store.record_test_send(engine, stored.id, email, result.outcome.value, result.reply)
    return result
