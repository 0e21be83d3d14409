"""The daily job across downtime, driven by the next run time seeded in the real job store.

APScheduler decides what is due, missed or within the grace time from the job's
stored next run time and the clock. Instead of waiting for the wall clock to
pass a send time, each test writes that next run time into the job store (a
run due ten minutes ago, or two hours ago) the way a scheduler that stored its
job and then went down leaves it, and starts the real scheduler on it. Every
wait is on an event or a condition, with a deadline.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
from conftest import Cli

from newsletter import scheduler
from newsletter import subscribers as subscriber_ops
from newsletter.config import Settings, load_settings
from newsletter.scheduler import JOB_ID, ensure_job, job_store
from newsletter.store.engine import open_engine

PEOPLE = ["ann@example.com", "bob@example.com", "cleo@example.net"]
PARIS = ZoneInfo("Europe/Paris")


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def a_moment_ago(**delta: float) -> dt.datetime:
    """That long ago in Paris, to the second (a cron trigger's resolution)."""
    return (dt.datetime.now(PARIS) - dt.timedelta(**delta)).replace(microsecond=0)


def due_at(settings: Settings, moment: dt.datetime, **changes: object) -> Settings:
    """Settings whose SEND_TIME is `moment`'s time of day."""
    return settings.model_copy(update={"send_time": f"{moment:%H:%M:%S}", **changes})


def stored_job(settings: Settings):  # noqa: ANN201 (an APScheduler Job)
    with job_store(settings) as jobs:
        return jobs.get_job(JOB_ID)


def seed_job(settings: Settings, next_run: dt.datetime) -> None:
    """Leave the job store as a scheduler that stored its job and was down at `next_run`."""
    with job_store(settings) as jobs:
        ensure_job(jobs, settings)
        jobs.modify_job(JOB_ID, next_run_time=next_run)


class Events:
    """The daily job's events, seen by the test as they happen."""

    def __init__(self) -> None:
        self.seen: list[JobEvent] = []
        self.arrived = threading.Condition()

    def __call__(self, event: JobEvent) -> None:
        if event.job_id == JOB_ID:
            with self.arrived:
                self.seen.append(event)
                self.arrived.notify_all()

    def wait(self, code: int, timeout: float = 60.0) -> JobEvent:
        with self.arrived:
            found = self.arrived.wait_for(
                lambda: any(e.code == code for e in self.seen), timeout=timeout
            )
        assert found, f"no event {code} within {timeout}s; saw {[e.code for e in self.seen]}"
        return next(e for e in self.seen if e.code == code)


@contextmanager
def running(settings: Settings) -> Iterator[tuple[dt.datetime, Events]]:
    """`run_scheduler` in a thread; yields the next run it started with, and its job events."""
    events = Events()
    started: list[dt.datetime] = []
    ready = threading.Event()
    failure: list[BaseException] = []

    def on_started(next_run: dt.datetime) -> None:
        started.append(next_run)
        ready.set()

    def run() -> None:
        try:
            scheduler.run_scheduler(settings, on_started=on_started, on_event=events)
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="test-scheduler")
    thread.start()
    try:
        assert ready.wait(30), "the scheduler did not start"
        assert not failure, failure
        yield started[0], events
    finally:
        scheduler.request_stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the scheduler did not stop"


@pytest.fixture
def today(settings, articles_dir, engine) -> Settings:
    """Articles for today (the job always sends today's edition) and three subscribers."""
    day = dt.datetime.now(PARIS).date().isoformat()
    if not (articles_dir / day).exists():
        shutil.copytree(articles_dir / "2026-11-25", articles_dir / day)
    for email in PEOPLE:
        subscriber_ops.add_subscriber(engine, email, source="test")
    return settings.model_copy(update={"misfire_grace_time": 3600})


def test_a_run_missed_during_downtime_goes_out_once_when_the_scheduler_returns(today, smtp_server):
    missed = a_moment_ago(minutes=10)  # within the hour of grace
    settings = due_at(today, missed)
    seed_job(settings, missed)

    with running(settings) as (next_run, events):
        assert next_run == missed  # the stored run survived the downtime
        done = events.wait(EVENT_JOB_EXECUTED)
    assert "sent 3, failed 0" in done.retval
    assert sorted(smtp_server.recipients()) == sorted(PEOPLE)
    tomorrow = stored_job(settings).next_run_time
    assert tomorrow == missed + dt.timedelta(days=1)  # one run for the day, then tomorrow's

    # Restarted again the same day: nothing is due before tomorrow, nothing goes out.
    with running(settings) as (next_run, events):
        assert next_run == tomorrow
    assert events.seen == [] and len(smtp_server.received) == len(PEOPLE)


def test_a_run_missed_beyond_the_grace_time_is_not_sent_late(today, smtp_server, caplog):
    missed = a_moment_ago(hours=2)  # the grace is one hour
    settings = due_at(today, missed)
    seed_job(settings, missed)

    with caplog.at_level("WARNING", logger="newsletter.scheduler"):
        with running(settings) as (_, events):
            event = events.wait(EVENT_JOB_MISSED)

    assert event.scheduled_run_time == missed
    assert smtp_server.received == []
    assert not any(e.code in (EVENT_JOB_EXECUTED, EVENT_JOB_ERROR) for e in events.seen)
    assert "missed the daily run" in caplog.text
    assert stored_job(settings).next_run_time == missed + dt.timedelta(days=1)


def test_a_day_without_articles_is_logged_and_fails_the_job_when_asked(settings, smtp_server):
    missed = a_moment_ago(minutes=1)
    quiet = due_at(settings, missed, articles_source=str(settings.articles_source) + "-empty")
    Path(quiet.articles_source).mkdir()
    seed_job(quiet, missed)
    with running(quiet) as (_, events):
        done = events.wait(EVENT_JOB_EXECUTED)
    assert done.retval.startswith("no articles for ") and done.retval.endswith(": nothing sent")

    failing = quiet.model_copy(update={"fail_on_empty": True})
    seed_job(failing, a_moment_ago(minutes=1))
    with running(failing) as (_, events):
        error = events.wait(EVENT_JOB_ERROR)
    assert "no articles for " in str(error.exception)
    assert smtp_server.received == []


def test_restarting_keeps_the_stored_job_and_a_new_send_time_replaces_it(today):
    missed = a_moment_ago(minutes=10)
    settings = due_at(today, missed)
    seed_job(settings, missed)

    with job_store(settings) as jobs:
        ensure_job(jobs, settings)  # a restart after the send time, same settings
        assert jobs.get_job(JOB_ID).next_run_time == missed  # the missed run is kept
        longer = settings.model_copy(update={"misfire_grace_time": 7200})
        ensure_job(jobs, longer)  # a new grace time applies to the stored job, run kept
        job = jobs.get_job(JOB_ID)
        assert job.misfire_grace_time == 7200 and job.next_run_time == missed
        later = settings.model_copy(update={"send_time": "08:15"})
        ensure_job(jobs, later)
        job = jobs.get_job(JOB_ID)
        assert (job.next_run_time.hour, job.next_run_time.minute) == (8, 15)


def test_newsletter_run_sends_the_missed_run_once_end_to_end(cli_env, articles_dir, smtp_server):
    """The real command in a subprocess: it finds the seeded missed run, sends it once, and
    stops cleanly on SIGTERM."""
    day = dt.datetime.now(PARIS).date().isoformat()
    if not (articles_dir / day).exists():
        shutil.copytree(articles_dir / "2026-11-25", articles_dir / day)
    missed = a_moment_ago(minutes=10)
    env = Cli(
        cli_env,
        NEWSLETTER_TIMEZONE="Europe/Paris",
        NEWSLETTER_MISFIRE_GRACE_TIME="3600",
        NEWSLETTER_SEND_TIME=f"{missed:%H:%M:%S}",
    )
    prefix = "NEWSLETTER_"
    settings = load_settings(
        **{k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    )
    engine = open_engine(settings.database_url)
    for email in PEOPLE:
        subscriber_ops.add_subscriber(engine, email, source="test")
    seed_job(settings, missed)

    log = articles_dir.parent / "run.log"
    process = env.start("run", log=log)
    try:
        assert wait_for(lambda: len(smtp_server.received) >= len(PEOPLE)), log.read_text()
        assert wait_for(lambda: "daily run done" in log.read_text()), log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    output = log.read_text()
    assert code == 0, output
    assert "scheduler stopped" in output and output.count("daily run done") == 1
    assert sorted(smtp_server.recipients()) == sorted(PEOPLE)
    assert stored_job(settings).next_run_time == missed + dt.timedelta(days=1)


@pytest.mark.timeout(20)
def test_the_signal_handler_takes_no_lock_the_interrupted_main_thread_may_hold():
    """`newsletter run` was found stuck 40 minutes after SIGTERM: the handler set the stop
    Event while the main thread, inside `Event.wait`, held the Event's lock. Here the lock
    is held exactly so; a handler that takes it never returns (the timeout fails the test)."""
    scheduler._stop.clear()
    with scheduler._stop._cond:  # what Event.wait holds for an instant around its sleep
        scheduler.stop_on_signal(signal.SIGTERM, None)
    try:
        assert scheduler._wait_for_stop(5.0)  # the stop reaches the running send
        assert scheduler._stop.is_set()
    finally:
        scheduler._signalled = False
        scheduler._stop.clear()
