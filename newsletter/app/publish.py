"""Publishing a date: build if needed → may it go out? → queue → send → record.

    publish(date) = prepare_send(date)          policy; build or reuse; held? sent? queue
                  + deliver(ready)              the send loop, one process or N

`newsletter send`, the scheduler's daily job and the editor's "send now" all
come through `prepare_send` and `deliver`, so "held", "already sent", "paused",
"too many complaints" and "how far did it get" are decided once (who starts the
send, `StartedBy`, is what differs: the scheduler resumes no paused send and starts
no edition while the complaint rate is too high; an operator does both). Everything
before the send is synchronous (the store, the renderer); the send itself is an
asyncio loop, called through `delivery.run_send` alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import Engine

from newsletter.app.build import prepare_edition
from newsletter.app.health import PauseGuard, complaint_block
from newsletter.app.outcomes import (
    AlreadySent,
    DeliverOutcome,
    Held,
    NoArticles,
    Paused,
    PublishOutcome,
    Ready,
    SendStart,
    Sent,
    Stopped,
    TooManyComplaints,
)
from newsletter.app.workers import Helpers
from newsletter.config import TEST_NAMES, Finding, Settings, Severity, check_settings, is_trial
from newsletter.delivery import ProgressCallback, SendSummary, run_send
from newsletter.errors import ConfigError
from newsletter.models import DeliveryStatus, EditionStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store import editions as edition_store
from newsletter.store import health as health_store
from newsletter.store.editions import HANDLED, StoredEdition
from newsletter.store.subscribers import active_address_outside

#: Called with the number of deliveries handled so far by this send (all its processes).
Progress = Callable[[int], None]

T = TypeVar("T")


class StartedBy(StrEnum):
    """Who starts a send: what a paused send and a high complaint rate mean differs."""

    OPERATOR = "operator"  # `newsletter send`, the editor's send-now: resumes, warns
    SCHEDULE = "schedule"  # the daily job: leaves a paused send, refuses on complaints
    HELPER = "helper"  # a `--workers N` helper process: joins the send as it stands


def start_send(
    engine: Engine, stored: StoredEdition, *, built_now: bool = False, resume: bool = True
) -> SendStart:
    """The one decision whether a stored edition goes out now, and its queue if so.

    built → sending only if still built (compare-and-set), so an editor's hold
    at the same moment wins; then the status as it is now decides. Queueing
    adds the subscribers who have no row yet, so a rerun reaches late
    subscribers, and an edition with nothing left to do is already sent. A send
    that paused itself stays paused unless `resume` (an operator's send): then
    the pause is cleared for good (`Ready.resumed` says what it was).
    """
    if stored.status is EditionStatus.BUILT:
        edition_store.change_edition_status(
            engine, stored.id, expected=EditionStatus.BUILT, new=EditionStatus.SENDING
        )
    current = edition_store.get_edition(engine, stored.rendered.date)
    assert current is not None  # editions are never deleted
    if current.status is EditionStatus.HELD:
        return Held(current, built_now=built_now)
    resumed = None
    pause = health_store.pause_of(engine, current.id)
    if pause.paused and not resume:
        return Paused(current, pause.reason or "paused")
    if pause.paused:
        resumed = health_store.resume_edition(engine, current.id)
    queued_now = delivery_store.queue_deliveries(engine, current.id)
    left = _left(delivery_store.count_by_status(engine, current.id))
    if current.status is EditionStatus.SENT and left == 0:
        return AlreadySent(current, SendSummary(), built_now=built_now)
    return Ready(current, queued_now=queued_now, to_send=left, built_now=built_now, resumed=resumed)


def check_sending(engine: Engine, settings: Settings) -> tuple[Finding, ...]:
    """The sending policy: ConfigError on the first error of `check_settings`, else its warnings.

    Every send to subscribers passes here (`prepare_send`), so the CLI, the
    scheduler's job and the editor's "send now" refuse the same placeholders;
    `newsletter doctor` lists every finding of the same rule. Dry runs and test
    sends do not come here: they may only warn. Whether the list holds a real
    address decides whether a local send may still be a trial (`is_trial`).
    """
    findings = check_settings(settings, real_recipient=real_recipient(engine, settings))
    errors = [finding for finding in findings if finding.severity is Severity.ERROR]
    if errors:
        first = errors[0]
        more = f"; {len(errors) - 1} more: `newsletter doctor` lists them" if errors[1:] else ""
        raise ConfigError(
            f"{first.message}; not sending", where=first.subject, hint=first.fix + more
        )
    return findings


def real_recipient(engine: Engine, settings: Settings) -> str | None:
    """An active address outside the reserved names, looked up only when it matters."""
    if not is_trial(settings):
        return None  # in earnest already: the list cannot make it more so
    return active_address_outside(engine, TEST_NAMES)


def prepare_send(
    engine: Engine,
    settings: Settings,
    date: dt.date,
    *,
    started_by: StartedBy = StartedBy.OPERATOR,
) -> NoArticles | SendStart | TooManyComplaints:
    """The date's edition built (or reused) and, unless held, paused or done, queued to go out.

    ConfigError, before anything is built or queued, when the sending policy refuses
    the settings (`check_sending`). The scheduler starts no new edition while the
    30-day complaint rate is above MAX_COMPLAINT_RATE (`TooManyComplaints`: the
    edition stays built); an operator's send goes out with `Ready.complaints` set,
    for a warning.
    """
    check_sending(engine, settings)
    prepared = prepare_edition(engine, settings, date)
    if isinstance(prepared, NoArticles):
        return prepared
    complaints = None
    if started_by is not StartedBy.HELPER:
        complaints = complaint_block(engine, settings)
    if complaints is not None and started_by is StartedBy.SCHEDULE:
        if prepared.stored.status is EditionStatus.BUILT:  # a send already started may finish
            return TooManyComplaints(prepared.stored, complaints)
    start = start_send(
        engine,
        prepared.stored,
        built_now=prepared.built_now,
        resume=started_by is StartedBy.OPERATOR,
    )
    if isinstance(start, Ready) and complaints is not None:
        return dataclasses.replace(start, complaints=complaints)
    return start


async def deliver(
    engine: Engine,
    settings: Settings,
    ready: Ready,
    *,
    stop: asyncio.Event,
    on_result: ProgressCallback | None = None,
    on_progress: Progress | None = None,
    workers: int = 1,
) -> DeliverOutcome:
    """Send a ready edition to everyone queued, in this process and `workers - 1` helpers.

    Safe to run any number of times and by several processes at once: rows
    already sent are never claimed again. `stop` ends it after the messages in
    flight are recorded; the rest stays queued for the next run. So does a pause
    (`Paused`): the edition's hard-bounce rate passed PAUSE_HARD_BOUNCE_RATE.
    """
    started = time.monotonic()
    summary = SendSummary(queued_now=ready.queued_now)
    if workers > 1:
        return await _deliver_with_helpers(
            engine, settings, ready, summary, workers - 1, stop=stop, on_progress=on_progress
        )
    handled = 0

    def count(status: DeliveryStatus, email: str) -> None:
        nonlocal handled
        if on_result is not None:
            on_result(status, email)
        if status in HANDLED and on_progress is not None:
            handled += 1
            on_progress(handled)

    guard = PauseGuard(engine, settings, ready.stored.id)
    await run_send(engine, settings, ready.stored, summary, on_result=count, stop=stop, guard=guard)
    return _finish(engine, ready.stored, summary, stop, started)


async def publish(
    engine: Engine,
    settings: Settings,
    date: dt.date,
    *,
    stop: asyncio.Event | None = None,
    on_progress: Progress | None = None,
    workers: int = 1,
    started_by: StartedBy = StartedBy.OPERATOR,
) -> PublishOutcome:
    """Publish a date: build if needed, then send unless held, paused or already sent.

    The build and the checks run in a thread, so the caller's event loop is never
    held up by the store or the renderer.
    """
    start = await asyncio.to_thread(
        lambda: prepare_send(engine, settings, date, started_by=started_by)
    )
    if not isinstance(start, Ready):
        return start
    stop = stop or asyncio.Event()
    return await deliver(
        engine, settings, start, stop=stop, on_progress=on_progress, workers=workers
    )


async def send_edition(
    engine: Engine,
    settings: Settings,
    stored: StoredEdition,
    *,
    on_result: ProgressCallback | None = None,
    stop: asyncio.Event | None = None,
) -> SendSummary:
    """`start_send` + `deliver` for a stored edition, as a summary (for tests).

    A held edition sends nothing (`summary.held`); an edition already sent to
    everyone gives a summary of zeros.
    """
    start = start_send(engine, stored)
    if isinstance(start, Held):
        return SendSummary(held=True)
    if isinstance(start, Paused):
        return start.summary
    if isinstance(start, AlreadySent):
        return start.summary
    outcome = await deliver(
        engine, settings, start, stop=stop or asyncio.Event(), on_result=on_result
    )
    return outcome.summary


def run_stoppable(work: Callable[[asyncio.Event], Awaitable[T]], stop: threading.Event) -> T:
    """Run `work` in a new event loop, handing it an asyncio stop set when `stop` is.

    For a send started from a thread (the scheduler's job, the editor's "send
    now"), stopped from another one (a signal handler, the server's shutdown).
    """

    async def main() -> T:
        stopping = asyncio.Event()

        async def follow() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.2)
            stopping.set()

        watcher = asyncio.create_task(follow())
        try:
            return await work(stopping)
        finally:
            watcher.cancel()

    return asyncio.run(main())


async def _deliver_with_helpers(
    engine: Engine,
    settings: Settings,
    ready: Ready,
    summary: SendSummary,
    count: int,
    *,
    stop: asyncio.Event,
    on_progress: Progress | None,
) -> DeliverOutcome:
    """`--workers N`: this process and N-1 helpers on one edition; the summary and the
    progress count what all of them did, read from the record."""
    started = time.monotonic()
    before = delivery_store.count_by_status(engine, ready.stored.id)
    helpers = Helpers.start(ready.stored.rendered.date, count)
    follower = asyncio.create_task(
        helpers.follow(engine, ready.stored.id, before, stop=stop, on_progress=on_progress)
    )
    try:
        guard = PauseGuard(engine, settings, ready.stored.id)
        await run_send(engine, settings, ready.stored, summary, stop=stop, guard=guard)
        await helpers.wait(stop)
    finally:
        follower.cancel()
        helpers.end()
    after = delivery_store.count_by_status(engine, ready.stored.id)
    for status, field in ((DeliveryStatus.SENT, "sent"), (DeliveryStatus.FAILED, "failed")):
        setattr(summary, field, after[status] - before[status])
    summary.skipped = after[DeliveryStatus.SKIPPED] - before[DeliveryStatus.SKIPPED]
    outcome = _finish(engine, ready.stored, summary, stop, started)
    return dataclasses.replace(outcome, helpers_failed=helpers.failed)


def _finish(
    engine: Engine, stored: StoredEdition, summary: SendSummary, stop: asyncio.Event, started: float
) -> DeliverOutcome:
    """What is left once the loop ended; an edition with nothing left is sent. A pause
    (this process's, or a helper's: read from the edition) with work left is `Paused`."""
    summary.remaining = _left(delivery_store.count_by_status(engine, stored.id))
    summary.stopped = stop.is_set() and summary.remaining > 0  # a stop after the last: sent
    pause = health_store.pause_of(engine, stored.id)
    if summary.remaining == 0:
        edition_store.set_edition_status(engine, stored.id, EditionStatus.SENT)
        if pause.paused:  # paused after the last message: nothing is left to hold back
            health_store.resume_edition(engine, stored.id)
    summary.elapsed = time.monotonic() - started
    current = edition_store.get_edition(engine, stored.rendered.date) or stored
    if summary.remaining and pause.paused and not summary.stopped:
        summary.paused = pause.reason or summary.paused or "paused"
        return Paused(current, summary.paused, summary)
    return Stopped(current, summary) if summary.stopped else Sent(current, summary)


def _left(counts: dict[DeliveryStatus, int]) -> int:
    return counts[DeliveryStatus.QUEUED] + counts[DeliveryStatus.SENDING]
