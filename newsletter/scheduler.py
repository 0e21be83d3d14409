"""The daily job: APScheduler with a cron trigger and a job store in our database.

The job store is what makes downtime safe: the next run time is kept in the
database, so a scheduler that was down at SEND_TIME finds the missed run when
it starts again and runs it once (`coalesce`), if it is still within
MISFIRE_GRACE_TIME. Sending twice is impossible anyway: the job calls the
same idempotent send as `newsletter send`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import threading

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from newsletter.config import Settings, load_settings
from newsletter.errors import LockedError, NewsletterError
from newsletter.liveness import holder_id, is_dead
from newsletter.pipeline import prepare_edition, send_edition
from newsletter.store.engine import open_engine, utcnow
from newsletter.store.locks import acquire_lock, heartbeat_lock, release_lock

JOB_ID = "daily-edition"
log = logging.getLogger("newsletter.scheduler")

_stop = threading.Event()


# set by SIGTERM/SIGINT; the running send checks it


EXPIRY_JOB_ID = "expire-signups"


def expire_signups() -> int:
    """Hourly: forget sign-ups never confirmed within SIGNUP_EXPIRY_HOURS."""
    from newsletter.signup import expire_pending, signup_expiry

    settings = load_settings()
    return expire_pending(open_engine(settings.database_url), signup_expiry(settings))


def daily_trigger(settings: Settings) -> CronTrigger:
    hour, minute, second = settings.send_clock
    return CronTrigger(hour=hour, minute=minute, second=second, timezone=settings.zone)


def scheduled_send() -> str:
    """The job: today's edition to everyone who has not had it. Settings come from the
    environment and `.env`, like every command, so nothing secret is stored in the job."""
    settings = load_settings()
    engine = open_engine(settings.database_url)
    date = settings.today()
    prepared = prepare_edition(engine, settings, date)
    if prepared is None:
        message = f"no articles for {date}: nothing sent"
        log.warning(message)
        if settings.fail_on_empty:
            raise NewsletterError(message, where=settings.articles_source)
        return message
    summary = asyncio.run(_send_until_stopped(engine, settings, prepared.stored))
    if summary.held:
        message = f"edition {date} is on hold: not sent"
        log.warning(message)
        return message
    message = (
        f"edition {date}: sent {summary.sent}, failed {summary.failed}, "
        f"skipped {summary.skipped}, still queued {summary.remaining} "
        f"in {summary.elapsed:.1f}s"
    )
    log.warning(message)
    return message


async def _send_until_stopped(engine, settings, stored):  # noqa: ANN001, ANN202
    stop = asyncio.Event()

    async def watch() -> None:
        while not _stop.is_set():
            await asyncio.sleep(0.2)
        stop.set()

    watcher = asyncio.create_task(watch())
    try:
        return await send_edition(engine, settings, stored, stop=stop)
    finally:
        watcher.cancel()


def build_scheduler(settings: Settings) -> BackgroundScheduler:
    store = SQLAlchemyJobStore(url=settings.database_url, tablename="apscheduler_jobs")
    return BackgroundScheduler(
        jobstores={"default": store},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.misfire_grace_time,
        },
        timezone=settings.zone,
    )


def ensure_job(scheduler: BackgroundScheduler, settings: Settings) -> None:
    """Add the daily job once; keep a stored one (and its missed run) across restarts.

    Replacing the stored job would recompute its next run from now and lose a
    run missed during downtime, so only a changed send time or zone replaces it.
    """
    trigger = daily_trigger(settings)
    job = scheduler.get_job(JOB_ID)
    if job is not None and str(job.trigger) == str(trigger):
        return
    if job is not None:
        log.warning("send time changed to %s %s", settings.send_time, settings.timezone)
        scheduler.reschedule_job(JOB_ID, trigger=trigger)
        return
    scheduler.add_job(
        "newsletter.scheduler:scheduled_send", trigger=trigger, id=JOB_ID, name="daily edition"
    )


def ensure_expiry_job(scheduler: BackgroundScheduler) -> None:
    if scheduler.get_job(EXPIRY_JOB_ID) is None:
        scheduler.add_job(
            "newsletter.scheduler:expire_signups",
            trigger="interval",
            hours=1,
            id=EXPIRY_JOB_ID,
            name="expire unconfirmed sign-ups",
        )


LOCK_NAME = "scheduler"
HEARTBEAT_SECONDS = 10.0
STALE_AFTER = dt.timedelta(seconds=60)


def run_scheduler(settings: Settings, *, on_started=None, on_event=None) -> None:  # noqa: ANN001
    """Run until SIGTERM/SIGINT; a send in progress records what it sent, then stops.

    Only one scheduler may run per database: a second one is refused with a
    message naming the first, so a day's edition can never be started twice by
    two schedulers (the send itself would not double anyway; this keeps the
    logs and the job store sane).
    """
    _stop.clear()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: _stop.set())
    engine = open_engine(settings.database_url)
    me = holder_id()
    holder = acquire_lock(engine, LOCK_NAME, me, stale_after=STALE_AFTER, holder_is_dead=is_dead)
    if holder is not None:
        seen = (utcnow() - holder.heartbeat_at).total_seconds()
        raise LockedError(
            f"another scheduler is running on this database: {holder.holder}, "
            f"since {holder.acquired_at:%Y-%m-%d %H:%M:%S} UTC, last seen {seen:.0f}s ago",
            where=settings.database_url,
            hint="stop it first (one scheduler per database); if it died, its lock is taken "
            f"over {STALE_AFTER.seconds}s after its last heartbeat",
        )
    scheduler = build_scheduler(settings)
    if on_event is not None:
        scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    scheduler.add_listener(_log_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    try:
        scheduler.start(paused=True)
        ensure_job(scheduler, settings)
        ensure_expiry_job(scheduler)
        scheduler.resume()
        if on_started is not None:
            on_started(scheduler.get_job(JOB_ID).next_run_time)
        while not _stop.wait(HEARTBEAT_SECONDS):
            if not heartbeat_lock(engine, LOCK_NAME, me):
                log.error("the scheduler lock was taken by another process; stopping")
                _stop.set()
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        release_lock(engine, LOCK_NAME, me)


def next_run_time(settings: Settings):  # noqa: ANN201
    """When the stored daily job runs next (None when no job is stored yet)."""
    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job(JOB_ID)
        return job.next_run_time if job else None
    finally:
        scheduler.shutdown(wait=False)


def _log_event(event: JobEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning("missed the daily run at %s (outside the grace time)", event.scheduled_run_time)
    elif getattr(event, "exception", None):
        log.error("the daily run failed: %s", event.exception)
    else:
        log.warning("daily run done: %s", getattr(event, "retval", ""))
