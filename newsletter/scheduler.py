"""The daily job: APScheduler with a cron trigger and a job store in our database.

The job store is what makes downtime safe: the next run time is kept in the
database, so a scheduler that was down at SEND_TIME finds the missed run when
it starts again and runs it once (`coalesce`), if it is still within
MISFIRE_GRACE_TIME. Sending twice is impossible anyway: the job is the
application layer's `publish`, the same idempotent send as `newsletter send`.

What is due, missed or within the grace time is APScheduler's decision, made
from the job's stored next run time and the clock. Tests drive it by seeding
that next run time in the job store (a run "missed" ten minutes or two hours
ago) instead of waiting for the wall clock to pass a send time.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine

from newsletter.app import (
    AlreadySent,
    Held,
    NoArticles,
    Paused,
    PublishOutcome,
    Sent,
    StartedBy,
    Stopped,
    TooManyComplaints,
    publish,
    run_stoppable,
)
from newsletter.config import Settings, load_settings
from newsletter.errors import LockedError, NewsletterError
from newsletter.liveness import holder_id, is_dead
from newsletter.store.engine import open_engine, utcnow
from newsletter.store.locks import acquire_lock, heartbeat_lock, release_lock

JOB_ID = "daily-edition"
EXPIRY_JOB_ID = "expire-signups"
LOCK_NAME = "scheduler"
HEARTBEAT_SECONDS = 10.0
STALE_AFTER = dt.timedelta(seconds=60)

log = logging.getLogger("newsletter.scheduler")


@dataclass(frozen=True)
class _Running:
    settings: Settings
    engine: Engine


#: The scheduler running in this process, for its jobs (which APScheduler stores by name).
_running: _Running | None = None
#: Set by `request_stop` (SIGTERM/SIGINT in `newsletter run`); the running send checks it.
_stop = threading.Event()


#: Set by `stop_on_signal`; `_wait_for_stop` turns it into `_stop` (see there why).
_signalled = False


def request_stop() -> None:
    """End `run_scheduler`: a send in progress records what it sent, then stops.

    For other threads (tests, an embedding program); a signal handler uses
    `stop_on_signal`.
    """
    _stop.set()


def stop_on_signal(*_: object) -> None:
    """The SIGTERM/SIGINT handler of `newsletter run`: it only sets a flag.

    A handler runs in the main thread between two steps of whatever it
    interrupted. If that was `_stop.wait()` holding the Event's lock for an
    instant, `_stop.set()` here would wait for that lock for ever: a `newsletter
    run` was found stuck 40 minutes after SIGTERM. A plain assignment takes no lock.
    """
    global _signalled
    _signalled = True


def _wait_for_stop(seconds: float) -> bool:
    """Wait up to `seconds` for a stop (True when one was asked for), in short slices,
    setting `_stop` for the running send when a signal came."""
    deadline = time.monotonic() + seconds
    while True:
        if _signalled:
            _stop.set()  # here, outside any handler
        if _stop.is_set():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(0.2, left))


def _current() -> _Running:
    """The running scheduler's settings and engine; from the environment and `.env` when a
    job runs without one (nothing secret is stored in the job)."""
    if _running is not None:
        return _running
    settings = load_settings()
    return _Running(settings, open_engine(settings.database_url))


def scheduled_send() -> str:
    """The job: publish today's edition to everyone who has not had it; one line says how.

    It resumes no paused send and starts no edition while the 30-day complaint rate is
    above MAX_COMPLAINT_RATE (`StartedBy.SCHEDULE`); the line says so.
    """
    run = _current()
    settings = run.settings
    date = settings.today()
    outcome = run_stoppable(
        lambda stop: publish(run.engine, settings, date, stop=stop, started_by=StartedBy.SCHEDULE),
        _stop,
    )
    message = describe(date, outcome)
    log.warning(message)
    if isinstance(outcome, NoArticles) and settings.fail_on_empty:
        raise NewsletterError(message, where=settings.articles_source)
    return message


def describe(date: dt.date, outcome: PublishOutcome) -> str:
    """The log line of one daily run."""
    match outcome:
        case NoArticles():
            return f"no articles for {date}: nothing sent"
        case Held():
            return f"edition {date} is on hold: not sent"
        case AlreadySent():
            return f"edition {date} was already sent to every active subscriber"
        case TooManyComplaints(complaints=complaints):
            return (
                f"edition {date} not started: {complaints.describe()}; it stays built, the "
                "next run tries again (`newsletter send` sends it anyway)"
            )
        case Paused(reason=reason, summary=summary):
            return (
                f"edition {date} is paused: {reason}; sent {summary.sent}, still queued "
                f"{summary.remaining}; the scheduler does not resume it: "
                f"`newsletter send --date {date}` does"
            )
        case Sent(summary=summary) | Stopped(summary=summary):
            line = (
                f"edition {date}: sent {summary.sent}, failed {summary.failed}, "
                f"skipped {summary.skipped}, still queued {summary.remaining} "
                f"in {summary.elapsed:.1f}s"
            )
            return line + ("; stopped early" if isinstance(outcome, Stopped) else "")


def expire_signups() -> int:
    """Hourly: forget sign-ups never confirmed within SIGNUP_EXPIRY_HOURS."""
    from newsletter.signup import expire_pending, signup_expiry

    run = _current()
    return expire_pending(run.engine, signup_expiry(run.settings))


def daily_trigger(settings: Settings) -> CronTrigger:
    hour, minute, second = settings.send_clock
    return CronTrigger(hour=hour, minute=minute, second=second, timezone=settings.zone)


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


@contextmanager
def job_store(settings: Settings) -> Iterator[BackgroundScheduler]:
    """A paused scheduler on the stored jobs, to read or change them without running any.

    APScheduler 3 processes due jobs once more when a scheduler shuts down (its
    loop wakes after the state is already "stopped"): a run due then would be
    submitted to a closed executor and moved on to tomorrow, lost. Detaching the
    job store first leaves it stored for the next real start.
    """
    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        _shut_down(scheduler, wait=False)


def _shut_down(scheduler: BackgroundScheduler, *, wait: bool) -> None:
    scheduler.remove_jobstore("default")  # no job is taken from it while shutting down
    scheduler.shutdown(wait=wait)


def ensure_job(scheduler: BackgroundScheduler, settings: Settings) -> None:
    """Add the daily job once; keep a stored one (and its missed run) across restarts.

    Replacing the stored job would recompute its next run from now and lose a
    run missed during downtime, so only a changed send time or zone replaces
    it. A changed MISFIRE_GRACE_TIME is applied to the stored job (it keeps its
    own copy), without touching its next run.
    """
    trigger = daily_trigger(settings)
    job = scheduler.get_job(JOB_ID)
    if job is None:
        scheduler.add_job(
            "newsletter.scheduler:scheduled_send", trigger=trigger, id=JOB_ID, name="daily edition"
        )
        return
    if job.misfire_grace_time != settings.misfire_grace_time:
        scheduler.modify_job(JOB_ID, misfire_grace_time=settings.misfire_grace_time)
    if str(job.trigger) != str(trigger):
        log.warning("send time changed to %s %s", settings.send_time, settings.timezone)
        scheduler.reschedule_job(JOB_ID, trigger=trigger)


def ensure_expiry_job(scheduler: BackgroundScheduler) -> None:
    if scheduler.get_job(EXPIRY_JOB_ID) is None:
        scheduler.add_job(
            "newsletter.scheduler:expire_signups",
            trigger="interval",
            hours=1,
            id=EXPIRY_JOB_ID,
            name="expire unconfirmed sign-ups",
        )


def run_scheduler(
    settings: Settings,
    *,
    on_started: Callable[[dt.datetime], None] | None = None,
    on_event: Callable[[JobEvent], None] | None = None,
) -> None:
    """Run until `request_stop`; a send in progress records what it sent, then stops.

    Only one scheduler may run per database: a second one is refused with a
    message naming the first, so a day's edition can never be started twice by
    two schedulers (the send itself would not double anyway; this keeps the
    logs and the job store sane).
    """
    global _running
    global _signalled
    _signalled = False
    _stop.clear()
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
    _running = _Running(settings, engine)
    scheduler = build_scheduler(settings)
    if on_event is not None:
        scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    scheduler.add_listener(_log_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    try:
        scheduler.start(paused=True)
        ensure_job(scheduler, settings)
        ensure_expiry_job(scheduler)
        if on_started is not None:
            on_started(scheduler.get_job(JOB_ID).next_run_time)
        scheduler.resume()
        while not _wait_for_stop(HEARTBEAT_SECONDS):
            if not heartbeat_lock(engine, LOCK_NAME, me):
                log.error("the scheduler lock was taken by another process; stopping")
                _stop.set()
    finally:
        if scheduler.running:
            _shut_down(scheduler, wait=True)  # a send in progress ends first
        _running = None
        release_lock(engine, LOCK_NAME, me)


def _log_event(event: JobEvent) -> None:
    if event.job_id != JOB_ID and not getattr(event, "exception", None):
        return  # the hourly sign-up expiry says nothing when it works
    if event.code == EVENT_JOB_MISSED:
        log.warning("missed the daily run at %s (outside the grace time)", event.scheduled_run_time)
    elif getattr(event, "exception", None):
        log.error("the daily run failed: %s", event.exception)
    else:
        log.warning("daily run done: %s", getattr(event, "retval", ""))
