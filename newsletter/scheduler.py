"""The daily job: APScheduler with a cron trigger and a job store in our database.

The job store is what makes downtime safe: the next run time is kept in the
database, so a scheduler that was down at SEND_TIME finds the missed run when
it starts again and runs it once (`coalesce`), if it is still within
MISFIRE_GRACE_TIME. Sending twice is impossible anyway: the job calls the
same idempotent send as `newsletter send`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError
from newsletter.pipeline import prepare_edition, send_edition
from newsletter.store.engine import open_engine

JOB_ID = "daily-edition"
log = logging.getLogger("newsletter.scheduler")

_stop = threading.Event()  # set by SIGTERM/SIGINT; the running send checks it


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


def run_scheduler(settings: Settings, *, on_event=None) -> None:  # noqa: ANN001
    """Run until SIGTERM/SIGINT; a send in progress records what it sent, then stops."""
    _stop.clear()
    scheduler = build_scheduler(settings)
    if on_event is not None:
        scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    scheduler.add_listener(_log_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    scheduler.start(paused=True)
    ensure_job(scheduler, settings)
    scheduler.resume()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: _stop.set())
    try:
        while not _stop.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)


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
