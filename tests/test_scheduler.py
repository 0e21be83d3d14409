"""The daily job across downtime: `newsletter run` as a subprocess, a real job store."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import time
from zoneinfo import ZoneInfo

import pytest
from conftest import Cli

from newsletter.config import load_settings
from newsletter.scheduler import JOB_ID, build_scheduler, ensure_job

PEOPLE = ["ann@example.com", "bob@example.com", "cleo@example.net"]


def settings_from(env: Cli, **overrides):
    values = {
        k.removeprefix("NEWSLETTER_").lower(): v
        for k, v in env.items()
        if k.startswith("NEWSLETTER_")
    }
    values.update(overrides)
    return load_settings(**values)


def stored_job(settings):
    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)
    try:
        return scheduler.get_job(JOB_ID)
    finally:
        scheduler.shutdown(wait=False)


@pytest.fixture
def today_env(cli_env: Cli, articles_dir, tmp_path) -> Cli:
    """Articles for today (the job always sends today's edition) and three subscribers."""
    zone = ZoneInfo("Europe/Paris")
    today = dt.datetime.now(zone).date()
    if not (articles_dir / today.isoformat()).exists():
        shutil.copytree(articles_dir / "2026-11-25", articles_dir / today.isoformat())
    env = Cli(cli_env, NEWSLETTER_TIMEZONE="Europe/Paris", NEWSLETTER_MISFIRE_GRACE_TIME="3600")
    for email in PEOPLE:
        env.run("subscribers", "add", email)
    return env


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def stop(process, log) -> str:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()
    return log.read_text()


def send_time_in(seconds: float) -> tuple[str, float]:
    """A SEND_TIME `seconds` from now (HH:MM:SS), and that moment on the monotonic clock."""
    moment = dt.datetime.now(ZoneInfo("Europe/Paris")) + dt.timedelta(seconds=seconds)
    return f"{moment:%H:%M:%S}", time.monotonic() + seconds


def start_then_kill_before(env: Cli, tmp_path) -> None:
    """A scheduler that stored its job, then died (SIGKILL) before the send time."""
    log = tmp_path / "killed.log"
    process = env.start("run", log=log)
    assert wait_for(lambda: "scheduler started" in log.read_text(), 30), log.read_text()
    time.sleep(0.5)
    process.kill()
    process.wait(timeout=10)


def test_a_run_missed_during_downtime_goes_out_once_when_the_scheduler_returns(
    today_env, smtp_server, tmp_path
):
    clock, due = send_time_in(6)
    env = Cli(today_env, NEWSLETTER_SEND_TIME=clock)
    start_then_kill_before(env, tmp_path)
    assert smtp_server.received == []
    time.sleep(max(0.0, due - time.monotonic()) + 2)  # down while the send time passes

    log = tmp_path / "run1.log"
    process = env.start("run", log=log)
    assert wait_for(lambda: len(smtp_server.received) >= len(PEOPLE)), log.read_text()
    time.sleep(1.0)  # would a second run follow? (it must not)
    stop(process, log)
    assert sorted(smtp_server.recipients()) == sorted(PEOPLE)

    # Restarted again the same day: nothing more goes out; the next run is tomorrow.
    log2 = tmp_path / "run2.log"
    process = env.start("run", log=log2)
    time.sleep(3.0)
    stop(process, log2)
    assert len(smtp_server.received) == len(PEOPLE)
    job = stored_job(settings_from(env))
    assert job.next_run_time > dt.datetime.now(ZoneInfo("Europe/Paris")) + dt.timedelta(hours=23)


def test_a_run_missed_beyond_the_grace_time_is_not_sent_late(today_env, smtp_server, tmp_path):
    clock, due = send_time_in(4)
    env = Cli(today_env, NEWSLETTER_SEND_TIME=clock, NEWSLETTER_MISFIRE_GRACE_TIME="1")
    start_then_kill_before(env, tmp_path)
    time.sleep(max(0.0, due - time.monotonic()) + 3)
    log = tmp_path / "run.log"
    process = env.start("run", log=log)
    time.sleep(4.0)
    output = stop(process, log)
    assert smtp_server.received == []
    assert "missed" in output


def test_restarting_keeps_the_stored_job_and_a_new_send_time_replaces_it(today_env):
    clock, due = send_time_in(2)
    settings = settings_from(today_env, send_time=clock)
    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)
    ensure_job(scheduler, settings)
    planned = scheduler.get_job(JOB_ID).next_run_time
    scheduler.shutdown(wait=False)
    time.sleep(max(0.0, due - time.monotonic()) + 1)

    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)
    ensure_job(scheduler, settings)  # a restart after the send time, same settings
    assert scheduler.get_job(JOB_ID).next_run_time == planned  # the missed run is kept
    later = settings.model_copy(update={"send_time": "08:15"})
    ensure_job(scheduler, later)
    job = scheduler.get_job(JOB_ID)
    assert (job.next_run_time.hour, job.next_run_time.minute) == (8, 15)
    scheduler.shutdown(wait=False)
