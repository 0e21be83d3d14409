"""The claim → build → send → record loop of one sending process, and its supervision.

One producer claims batches of delivery rows and builds each message;
CONCURRENCY connections to the relay send them, each through PIPELINE_WINDOW
lanes, a lane being one message in hand from its claim to its record. The
lanes of a connection stream their messages on it (`pipelining.Stream`): with
CHUNKING up to PIPELINE_WINDOW messages are on the wire at once, without it
one body and the next message's commands. The record is written the moment
the server answers, and a lane takes its next message only once the store
has it, so at a crash the only messages that can go twice are the ones the
relay accepted and the store had not yet taken: at most one per lane,
CONCURRENCY x PIPELINE_WINDOW. (Without CHUNKING the lanes still pay: while
one waits for its record the next is on the wire.)

    claimed ──> still subscribed? ──no──> skipped
                    │ yes
                    v
              SMTP transaction ──250──> sent (committed at once)
                    │ 4xx / dropped / timeout ──> queued again after a backoff, or
                    │                             failed when MAX_ATTEMPTS/RETRY_WINDOW are spent
                    │ 5xx for the recipient ──> failed (+ a hard bounce on the subscriber)
                    └ relay unreachable ──> wait and retry the same message, uncharged;
                                             past RETRY_WINDOW the send stops, rows stay queued

Supervision. The producer and the connections (their lanes) run in one
TaskGroup with a watchdog. A task that raises anything stops the send: the first error is
kept and `halt` is set, as it is when the caller sets `stop`. After a halt
nothing new starts: the producer stops claiming, each lane finishes the
message in hand and records it, and every queue operation races `halt`, so no
task waits on a queue nobody reads. DRAIN_SECONDS after the halt the watchdog
cancels whatever is still busy. Then the cleanup, bounded by CLEANUP_SECONDS:
results the relay accepted but the store did not take are written, and unsent
claims go back to the queue. If the database refuses even that, the claims
come back through the dead-sender reclaim when the send runs again, and the
error says so: a send's claims are held by its run (`liveness.run_holder`),
dead once the run has ended, so the next send takes them back at once even in
the same process (the server's "send now", the scheduler). A database that is
unavailable for a while (a lock another process holds, a server restarting)
is waited for (`retry.StoreWatch`), up to STORE_RETRY_WINDOW.

The loop sees the database only through a `Ledger` and the relay only through
a `MailerFactory`, two small protocols: `send.run_send` hands it the SQL
ledger and SMTP connections; a fault test hands it a ledger that fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from newsletter.bounces.verp import bounce_addresses
from newsletter.compose import compose_message, delivery_message_id
from newsletter.config import Settings
from newsletter.delivery.protocols import HealthGuard, Ledger, Mailer, MailerFactory
from newsletter.delivery.recorder import GroupCommit
from newsletter.delivery.retry import (
    SYSTEM_CLOCK,
    Clock,
    RateLimiter,
    RelayWatch,
    StoreWatch,
    backoff,
    first_of,
    sleep_or_stop,
)
from newsletter.delivery.session import RelayUnavailable, SendResult
from newsletter.dkim import dkim_for
from newsletter.errors import (
    DeliveryError,
    InputError,
    NewsletterError,
    StoreError,
    StoreUnavailable,
)
from newsletter.hygiene import one_line
from newsletter.liveness import is_dead
from newsletter.logs import event
from newsletter.models import DeliveryStatus, Outcome, Recipient
from newsletter.store.deliveries import Claim, DeliveryRecord
from newsletter.store.editions import StoredEdition
from newsletter.store.engine import utcnow
from newsletter.tokens import signer_for

log = logging.getLogger("newsletter.sender")

DRAIN_SECONDS = 10.0  # after a stop, how long messages in hand may take to finish and be recorded
CLEANUP_SECONDS = 10.0  # then how long writing the last results and returning claims may take

ProgressCallback = Callable[[DeliveryStatus, str], None]


@dataclass
class SendSummary:
    queued_now: int = 0  # rows added by this run (new subscribers since the last run)
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # transient failures put back for a retry
    elapsed: float = 0.0
    remaining: int = 0  # rows still queued or claimed when the run ended
    stopped: bool = False  # ended early by a signal; the next run finishes the edition
    held: bool = False  # an editor put the edition on hold: nothing was sent
    paused: str | None = None  # why the send paused itself (its hard-bounce rate); rest queued
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    delivery_id: int
    subscriber_id: int
    email: str
    attempts: int
    first_attempt_at: dt.datetime | None
    data: bytes
    sender: str = ""  # the envelope sender (MAIL FROM): VERP when BOUNCE_ADDRESS is set


class _DrainOverdue(Exception):
    def __init__(self, busy: int) -> None:
        super().__init__(f"{busy} tasks still busy")
        self.busy = busy


class SendLoop:
    def __init__(
        self,
        ledger: Ledger,
        mailers: MailerFactory,
        settings: Settings,
        stored: StoredEdition,
        summary: SendSummary,
        *,
        stop: asyncio.Event,
        on_result: ProgressCallback | None = None,
        clock: Clock = SYSTEM_CLOCK,
        cleanup_seconds: float | None = None,  # CLEANUP_SECONDS, as it is when the send starts
        guard: HealthGuard | None = None,
    ) -> None:
        self.ledger = ledger
        self.mailers = mailers
        self.settings = settings
        self.stored = stored
        self.edition = stored.rendered.date.isoformat()
        self.summary = summary
        self.stop = stop
        self.on_result = on_result or (lambda status, email: None)
        self.clock = clock
        self.cleanup_seconds = CLEANUP_SECONDS if cleanup_seconds is None else cleanup_seconds
        self.signer = signer_for(settings)
        self.bounces = bounce_addresses(settings, self.signer)
        self.dkim = dkim_for(settings)  # the DKIM keys, loaded once for the whole send
        self.limiter = RateLimiter(settings.rate_limit, clock)
        self.relay = RelayWatch(settings, clock)
        self.store = StoreWatch(settings.store_retry_window, clock=clock)
        # Results have a window of their own: while they cannot be written, the lanes' reads
        # (a subscriber still active?) may well succeed, and must not keep the send waiting.
        self.writes = StoreWatch(settings.store_retry_window, clock=clock)
        self.recorder = GroupCommit(self._write)
        self.lanes = settings.concurrency * settings.pipeline_window
        self.jobs: asyncio.Queue[_Job | None] = asyncio.Queue(
            maxsize=self.lanes + settings.concurrency
        )
        self.in_flight: set[int] = set()  # claimed by us, not yet recorded
        self.claiming: asyncio.Future[tuple[list[Claim], int]] | None = None  # a claim running
        self.unconfirmed: dict[int, tuple[_Job, DeliveryRecord]] = {}  # handed to the store
        self.recorded = asyncio.Event()
        self.halt = asyncio.Event()  # take no new work: a stop was asked for, or a task failed
        self.fatal: NewsletterError | None = None
        self.guard = guard
        self.unchecked = 0  # results recorded since the guard was last asked
        self.checked_at = clock.monotonic()

    async def run(self) -> None:
        """Send until nothing is left, a stop is asked for, or something fails.

        Returns after a finished or stopped send; raises the first failure as a
        NewsletterError that says what happened to the claims. Cancelling the
        task (a second signal) still runs the bounded cleanup.
        """
        try:
            if await self._start():
                await self._supervise()
        finally:
            note, cleanup_error = await self._clean_up()
        if self.fatal is not None:
            raise _noted(self.fatal, note)
        if cleanup_error is not None:
            raise _noted(cleanup_error, f"the send was stopped, and {note}")

    # ── phases ──────────────────────────────────────────────────────────────

    async def _start(self) -> bool:
        """Before any claim: a dead sender's rows come back, and the relay must answer."""
        try:
            await self.store.call(self._reclaim_from_dead, stop=self.stop)
        except StoreUnavailable:
            if self.stop.is_set():
                return False
            raise
        while not self.stop.is_set():
            try:
                await self.mailers.check()
            except RelayUnavailable as exc:
                await sleep_or_stop(self.stop, self.relay.failed(str(exc)), self.clock)
                continue
            self.relay.ok()
            return True
        return False

    async def _supervise(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._guard(self._produce()), name="producer")]
                tasks += [
                    group.create_task(self._connection(n), name=f"connection-{n}")
                    for n in range(self.settings.concurrency)
                ]
                group.create_task(self._watch(tasks), name="watchdog")
        except* _DrainOverdue as overdue:
            busy = overdue.exceptions[0].busy  # type: ignore[attr-defined]
            event(log, "stop_overdue", level=logging.WARNING, edition=self.edition, busy=busy)

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:  # any failure stops the whole send, named
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if not isinstance(exc, NewsletterError):
            log.error("the send of %s stopped on an unexpected error", self.edition, exc_info=exc)
            exc = DeliveryError(
                f"the send stopped on an unexpected error: {type(exc).__name__}: "
                f"{one_line(str(exc))}",
                where=f"edition {self.edition}",
                hint="the log has the traceback; run the send again to finish the edition",
            )
        if self.fatal is None:
            self.fatal = exc
            event(log, "send_failed", level=logging.ERROR, edition=self.edition, error=str(exc))
        self.halt.set()

    async def _watch(self, tasks: list[asyncio.Task[None]]) -> None:
        """Turn a stop into a halt; a halt's stragglers are cancelled after DRAIN_SECONDS."""
        await first_of(asyncio.wait(tasks), self.stop.wait(), self.halt.wait())
        if all(task.done() for task in tasks):
            return
        self.halt.set()
        _, busy = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        if busy:
            raise _DrainOverdue(len(busy))  # the TaskGroup cancels them

    async def _clean_up(self) -> tuple[str, StoreError | None]:
        """Write what the store has not taken, give back unsent claims; bounded."""
        self.recorder.abandon()
        await self._adopt_late_claim()
        unrecorded, claims = len(self.unconfirmed), len(self.in_flight)
        if not unrecorded and not claims:
            return "", None
        watch = StoreWatch(self.cleanup_seconds, clock=self.clock)
        try:
            released = await asyncio.wait_for(self._give_back(watch), self.cleanup_seconds)
        except (StoreError, TimeoutError) as exc:
            error = exc if isinstance(exc, StoreError) else self._no_answer(watch)
            left = len(self.in_flight)
            note = (
                f"the database did not take back {left} claimed messages: the next send "
                "takes them back"
            )
            if self.unconfirmed:
                note += f" ({len(self.unconfirmed)} the relay accepted may go twice)"
            event(log, "release_failed", level=logging.ERROR, edition=self.edition, claims=left)
            return note, error
        event(log, "released", edition=self.edition, count=released)
        note = f"{released} unsent messages went back to the queue" if released else ""
        if unrecorded:
            note = f"{unrecorded} results recorded at the stop" + (f", {note}" if note else "")
        return note, None

    async def _adopt_late_claim(self) -> None:
        """A claim still running when the send was cancelled: wait for it (bounded, no more
        retries) so the rows it commits are given back with the others."""
        claiming, self.claiming = self.claiming, None
        if claiming is None:
            return
        self.halt.set()
        await asyncio.wait({claiming}, timeout=self.cleanup_seconds)
        if claiming.done() and not claiming.cancelled() and claiming.exception() is None:
            claims, _ = claiming.result()
            self.in_flight.update(claim.delivery_id for claim in claims)

    async def _give_back(self, watch: StoreWatch) -> int:
        if self.unconfirmed:
            late = list(self.unconfirmed.values())
            await watch.call(lambda: self._record_outcomes([r for _, r in late]))
            for job, record in late:
                self._confirmed(job, record)
        claims = set(self.in_flight)
        released = await watch.call(lambda: self.ledger.release_claims(claims))
        self.in_flight -= claims
        return released

    def _no_answer(self, watch: StoreWatch) -> StoreUnavailable:
        last = watch.last_error or self.writes.last_error or self.store.last_error
        reason = f" ({last.message})" if last else ""
        return StoreUnavailable(
            f"the database did not answer within {self.cleanup_seconds:g}s of the stop{reason}",
            where=last.where if last and last.where else f"edition {self.edition}",
            hint="find what holds or stopped the database, then run the send again",
        )

    # ── the producer ────────────────────────────────────────────────────────

    async def _produce(self) -> None:
        try:
            while not self.halt.is_set():
                if not await self._produce_batch():
                    break
        except StoreUnavailable:
            if self.halt.is_set():
                return  # stopping anyway; the claims in hand are given back
            raise
        for _ in range(self.lanes):  # the edition is done: the lanes may end
            if not await self._put(None):
                return

    async def _produce_batch(self) -> bool:
        """Claim a batch and queue its messages; False when the edition has nothing left."""
        size = max(10, self.settings.concurrency * 4)
        # Shielded: a claim's thread commits even if this task is cancelled meanwhile, and
        # then the cleanup must know its rows (`_adopt_late_claim`).
        self.claiming = asyncio.ensure_future(
            self.store.call(lambda: self.ledger.claim_batch(size), stop=self.halt)
        )
        claims, skipped = await asyncio.shield(self.claiming)
        self.in_flight.update(claim.delivery_id for claim in claims)  # given back if we stop
        self.claiming = None
        self.summary.skipped += skipped
        if not claims and not skipped:
            return await self._wait_for_more()
        for claim in claims:
            try:
                data = compose_message(
                    self.stored.rendered,
                    self.settings,
                    Recipient(claim.subscriber_id, claim.email, claim.name),
                    signer=self.signer,
                    dkim=self.dkim,
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
                self._sender(claim.delivery_id),
            )
            if not await self._put(job):
                return False
        return True

    def _sender(self, delivery_id: int) -> str:
        """The envelope sender of a delivery's message: its VERP address, or FROM_ADDRESS."""
        if self.bounces is None:
            return self.settings.from_address
        return self.bounces.for_delivery(delivery_id)

    async def _wait_for_more(self) -> bool:
        """Nothing claimable now: wait for in-flight results or the next retry, or finish."""
        if self.in_flight:
            self.recorded.clear()
            await first_of(self.recorded.wait(), self.halt.wait(), timeout=1.0)
            return True
        if await self.store.call(self._reclaim_from_dead, stop=self.halt):
            return True
        retry_at = await self.store.call(self.ledger.next_retry_at, stop=self.halt)
        if retry_at is None:
            return False
        delay = (retry_at - utcnow()).total_seconds()
        event(log, "waiting", edition=self.edition, seconds=round(max(0.0, delay), 2))
        await sleep_or_stop(self.halt, max(0.05, delay), self.clock)
        return True

    async def _reclaim_from_dead(self) -> int:
        """Rows claimed by a sender that died on this machine, or by a send of this process
        that has ended, go back to the queue now (not when their lease runs out)."""
        total = 0
        for claimer in await self.ledger.claimers():
            if claimer != self.ledger.claimer and is_dead(claimer):
                count = await self.ledger.release_claims_of(claimer)
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

    # ── the connections and their lanes ─────────────────────────────────────

    async def _connection(self, number: int) -> None:
        """One connection to the relay, and PIPELINE_WINDOW lanes sending on it.

        Each lane is guarded on its own, so its failure stops the send named (never as
        a task group's wrapper), and the connection closes once every lane has ended.
        """
        mailer = self.mailers()
        try:
            async with asyncio.TaskGroup() as lanes:
                for lane in range(self.settings.pipeline_window):
                    lanes.create_task(self._guard(self._lane(mailer)), name=f"lane-{number}.{lane}")
        finally:
            await mailer.close()

    async def _lane(self, mailer: Mailer) -> None:
        while (job := await self._get()) is not None:
            if self.halt.is_set():
                return  # left claimed; given back by the cleanup
            await self._deliver(mailer, job)

    async def _deliver(self, mailer: Mailer, job: _Job) -> None:
        left = False  # the subscriber left while the message waited for its turn

        async def wanted() -> bool:
            """Asked by the connection just before the message is written to the relay."""
            nonlocal left
            if self.halt.is_set():
                return False  # stopping: not written; the cleanup gives the claim back
            left = not await self.store.call(
                lambda: self.ledger.is_active(job.subscriber_id), stop=self.halt
            )
            return not left

        await self.limiter.acquire()
        while not self.halt.is_set():
            try:
                result = await mailer.send(job.sender, job.email, job.data, wanted)
            except RelayUnavailable as exc:  # past RETRY_WINDOW, failed() raises: the stop
                await sleep_or_stop(self.halt, self.relay.failed(str(exc)), self.clock)
                continue
            except StoreUnavailable:
                if self.halt.is_set():
                    return  # not sent; given back by the cleanup
                raise
            self.relay.ok()
            if result is not None:
                await self._record(job, result)
            elif left:
                record = DeliveryRecord(
                    job.delivery_id, DeliveryStatus.SKIPPED, "subscriber no longer active", False
                )
                await self._commit(job, record)
            return

    async def _record(self, job: _Job, result: SendResult) -> None:
        next_attempt_at = None
        if result.outcome == Outcome.SENT:
            status = DeliveryStatus.SENT
        elif result.outcome == Outcome.TRANSIENT and self._may_retry(job, job.attempts + 1):
            status = DeliveryStatus.QUEUED
            delay = backoff(self.settings.retry_delay, job.attempts + 1)
            next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        else:
            status = DeliveryStatus.FAILED
        record = DeliveryRecord(
            job.delivery_id, status, result.reply, True, next_attempt_at, result.hard_bounce
        )
        await self._commit(job, record)

    async def _commit(self, job: _Job, record: DeliveryRecord) -> None:
        """Hand the result to the group commit; it counts only once the store has it."""
        self.unconfirmed[job.delivery_id] = (job, record)
        await self.recorder.write(record)
        self._confirmed(job, record)

    async def _write(self, records: list[DeliveryRecord]) -> None:
        await self.writes.call(lambda: self._record_outcomes(records))
        await self._check_health(len(records))

    async def _check_health(self, recorded: int) -> None:
        """Every `guard.every` results (or `guard.seconds`), in the group commit, so the
        workers wait for the answer before their next message: a pause takes effect at
        once, and the send stops the way a stop does (claims back in the queue)."""
        if self.guard is None or self.halt.is_set():
            return
        self.unchecked += recorded
        due = self.clock.monotonic() - self.checked_at >= self.guard.seconds
        if self.unchecked < self.guard.every and not due:
            return
        self.unchecked, self.checked_at = 0, self.clock.monotonic()
        try:
            reason = await self.guard.check()
        except StoreError as exc:  # the figures are a safeguard: the send goes on without them
            event(
                log,
                "health_check_failed",
                level=logging.WARNING,
                edition=self.edition,
                error=str(exc),
            )
            return
        if reason is not None and not self.halt.is_set():
            self.summary.paused = reason
            event(log, "send_paused", level=logging.WARNING, edition=self.edition, reason=reason)
            self.halt.set()

    async def _record_outcomes(self, records: list[DeliveryRecord]) -> None:
        """One commit of results, the group commit's or the cleanup's; a hard bounce counts
        in the commit that records it, so one written only at the stop counts too."""
        bounced = await self.ledger.record_outcomes(records, self.settings.bounce_limit)
        for delivery_id in bounced:
            entry = self.unconfirmed.get(delivery_id)
            recipient = entry[0].email if entry else f"delivery {delivery_id}"
            event(log, "bounced", level=logging.WARNING, recipient=recipient)

    def _confirmed(self, job: _Job, record: DeliveryRecord) -> None:
        self.unconfirmed.pop(job.delivery_id, None)
        self.in_flight.discard(job.delivery_id)
        self.recorded.set()
        status = record.status
        if status == DeliveryStatus.SENT:
            self.summary.sent += 1
        elif status == DeliveryStatus.QUEUED:
            self.summary.deferred += 1
        elif status == DeliveryStatus.FAILED:
            self.summary.failed += 1
            self.summary.failures.append((job.email, record.reply))
        else:
            self.summary.skipped += 1
        details = {"attempt": job.attempts + 1, "reply": record.reply} if record.attempted else {}
        event(
            log,
            "delivery",
            level=logging.WARNING if status == DeliveryStatus.FAILED else logging.INFO,
            edition=self.edition,
            recipient=job.email,
            status=status.value,
            **details,
        )
        self.on_result(status, job.email)

    def _may_retry(self, job: _Job, attempts: int) -> bool:
        if attempts >= self.settings.max_attempts:
            return False
        if job.first_attempt_at is None:
            return True
        waited = (utcnow() - job.first_attempt_at).total_seconds()
        return waited < self.settings.retry_window

    # ── the queue, stop-aware ───────────────────────────────────────────────

    async def _put(self, job: _Job | None) -> bool:
        """Queue a job; False if the send halted first (the job stays claimed, given back)."""
        if not self.jobs.full():  # the fast path: no task, no wait
            self.jobs.put_nowait(job)
            return True
        queued, _ = await first_of(self.jobs.put(job), self.halt.wait())
        return queued

    async def _get(self) -> _Job | None:
        """The next job; None when the edition is done or the send halted."""
        if not self.jobs.empty():
            return self.jobs.get_nowait()
        got, task = await first_of(self.jobs.get(), self.halt.wait())
        return task.result() if got else None  # type: ignore[return-value]


def _noted(error: NewsletterError, note: str) -> NewsletterError:
    """The error with what became of the claims after it."""
    if note:
        error.message = f"{error.message}; {note}"
        error.args = (error.message,)
    return error
