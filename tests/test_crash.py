"""Operators' guarantees across process deaths, signals and concurrent schedulers.

`newsletter send` and `newsletter run` run as real subprocesses against a real
SMTP server in the test process and a SQLite file; they are killed with
SIGKILL or stopped with SIGTERM at random points, and what the server
received is compared with what the database says.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter

import pytest
from conftest import Cli
from sqlalchemy import create_engine

from newsletter.capture import free_port
from newsletter.store.migrate import upgrade

DAY = "2026-11-25"
CONCURRENCY = 4
WINDOW = 4  # PIPELINE_WINDOW
IN_FLIGHT = CONCURRENCY * WINDOW  # per kill: the relay accepted them, the database had not yet


def write_list(path, n: int) -> list[str]:
    emails = [f"reader{i:05d}@example.com" for i in range(n)]
    path.write_text("email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(emails)))
    return emails


def delivery_counts(env: Cli) -> dict[str, int]:
    """Deliveries by status in the database the CLI runs on (SQLite or PostgreSQL)."""
    engine = create_engine(env["NEWSLETTER_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT status, count(*) FROM deliveries GROUP BY status")
            return {status: count for status, count in rows}
    finally:
        engine.dispose()


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def crash_env(cli_env: Cli, tmp_path) -> Cli:
    return Cli(
        cli_env,
        NEWSLETTER_CONCURRENCY=str(CONCURRENCY),
        NEWSLETTER_PIPELINE_WINDOW=str(WINDOW),
        NEWSLETTER_RETRY_DELAY="0.05",
        NEWSLETTER_LOG_LEVEL="warning",
    )


def test_sigkill_at_random_points_loses_nobody_and_doubles_at_most_the_in_flight(
    crash_env, smtp_server, tmp_path
):
    emails = write_list(tmp_path / "list.csv", 3000)
    crash_env.run("subscribers", "import", str(tmp_path / "list.csv"))
    rng = random.Random(20261125)
    kills = 0
    for round_ in range(5):
        before = len(smtp_server.received)
        target = before + rng.randint(100, 450)
        process = crash_env.start("send", "--date", DAY, log=tmp_path / f"kill{round_}.log")
        progressed = wait_until(
            lambda p=process, t=target: len(smtp_server.received) >= t or p.poll() is not None,
            60,
        )
        assert progressed, "the send neither progressed nor ended"
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
    assert kills >= 3, "the sends ended before they could be killed; the test proves little"

    final = crash_env.run("send", "--date", DAY)
    assert "failed 0" in final.stdout

    counts = Counter(smtp_server.recipients())
    missed = set(emails) - set(counts)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\n{kills} kills, {duplicates} duplicates (bound {kills * IN_FLIGHT})")
    assert not missed
    assert duplicates <= kills * IN_FLIGHT
    assert delivery_counts(crash_env) == {"sent": 3000}


def test_sigterm_stops_cleanly_records_everything_and_the_next_run_finishes(
    crash_env, smtp_server, tmp_path
):
    emails = write_list(tmp_path / "list.csv", 1500)
    crash_env.run("subscribers", "import", str(tmp_path / "list.csv"))
    log = tmp_path / "term.log"
    process = crash_env.start("send", "--date", DAY, log=log)
    assert wait_until(lambda: len(smtp_server.received) >= 200, 60), log.read_text()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()
    assert "stopped by a signal" in log.read_text()

    received = len(smtp_server.received)
    counts = delivery_counts(crash_env)
    assert counts.get("sent") == received  # everything handed over is recorded as sent
    assert counts.get("sending", 0) == 0  # no claim left behind
    assert received < 1500

    crash_env.run("send", "--date", DAY)
    assert Counter(smtp_server.recipients()) == Counter({email: 1 for email in emails})


def test_a_second_scheduler_on_the_same_database_is_refused(crash_env, tmp_path):
    log = tmp_path / "first.log"
    first = crash_env.start("run", log=log)
    try:
        assert wait_until(lambda: "scheduler started" in log.read_text(), 30), log.read_text()
        second = crash_env.run("run", check=False)
        assert second.returncode == 1
        assert "another scheduler is running on this database" in second.stderr
        assert "stop it first" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    # Once the first is gone, a scheduler may start again.
    log2 = tmp_path / "again.log"
    again = crash_env.start("run", log=log2)
    assert wait_until(lambda: "scheduler started" in log2.read_text(), 30), log2.read_text()
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=30) == 0


def test_a_killed_schedulers_lock_is_taken_over_at_once(crash_env, tmp_path):
    log = tmp_path / "first.log"
    first = crash_env.start("run", log=log)
    assert wait_until(lambda: "scheduler started" in log.read_text(), 30)
    first.kill()
    first.wait(timeout=10)
    log2 = tmp_path / "second.log"
    second = crash_env.start("run", log=log2)
    assert wait_until(lambda: "scheduler started" in log2.read_text(), 30), log2.read_text()
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0


def test_logs_are_one_structured_event_per_line(crash_env, smtp_server, tmp_path):
    crash_env.run("subscribers", "add", "ann@example.com")
    crash_env.run("subscribers", "add", "bob@example.com")
    env = Cli(crash_env, NEWSLETTER_LOG_LEVEL="info", NEWSLETTER_LOG_FORMAT="json")
    result = env.run("send", "--date", DAY)
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    deliveries = [e for e in events if e["event"] == "delivery"]
    assert sorted(e["recipient"] for e in deliveries) == ["ann@example.com", "bob@example.com"]
    for item in deliveries:
        assert item["edition"] == DAY and item["status"] == "sent"
        assert item["reply"].startswith("250")
        assert item["level"] == "info" and "time" in item

    text = Cli(crash_env, NEWSLETTER_LOG_LEVEL="info").run("send", "--date", DAY, "--to", "x@y.z")
    assert "level=" not in text.stderr or "event=" in text.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////proc/no/such/dir/newsletter.db", "the database does not exist"),
        ("sqlite:///{tmp}/typo.db", "the database does not exist"),
        ("sqlite://", "in-memory SQLite database keeps nothing"),
        ("sqlite:///{tmp}", "cannot open the database"),
        ("not a url", "not a database URL"),
        ("sqlite:///{tmp}/garbage.db", "not a database: the file is not SQLite"),
        ("mysql://newsletter@127.0.0.1/newsletter", "no driver for this kind of database"),
        ("sqlite:///file:{tmp}/made.db?mode=ro&uri=true", "the database is read-only"),
        ("postgresql://newsletter@127.0.0.1:{port}/newsletter", "cannot reach the database server"),
    ],
)
def test_a_bad_database_is_one_clear_line(crash_env, tmp_path, url, expected):
    (tmp_path / "garbage.db").write_bytes(b"this is not a database\n" * 400)
    upgrade(f"sqlite:///{tmp_path / 'made.db'}")  # a database init made: only writing fails
    nobody = free_port()  # nothing listens there
    env = Cli(crash_env, NEWSLETTER_DATABASE_URL=url.format(tmp=tmp_path, port=nobody))
    env["COLUMNS"] = "1000"  # so rich does not wrap the line
    result = env.run("subscribers", "add", "ann@example.com", check=False)
    assert result.returncode == 1
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_several_worker_processes_send_each_message_once(crash_env, smtp_server, tmp_path):
    emails = write_list(tmp_path / "list.csv", 900)
    crash_env.run("subscribers", "import", str(tmp_path / "list.csv"))
    result = crash_env.run("send", "--date", DAY, "--workers", "3")
    assert "sent 900, skipped 0, failed 0" in result.stdout
    counts = Counter(smtp_server.recipients())
    assert counts == Counter({email: 1 for email in emails})
    assert delivery_counts(crash_env) == {"sent": 900}
    # more than one process really sent: each process holds its own connections
    assert len({item.peer for item in smtp_server.received}) > CONCURRENCY


def postfix_queue_empty(relay) -> bool:
    queue = relay.directory / "queue"
    return not any(
        path.is_file()
        for name in ("maildrop", "incoming", "active", "deferred")
        for path in (queue / name).rglob("*")
    )


def test_sigkill_through_a_real_postfix_over_bdat_doubles_at_most_the_window(
    crash_env, smtp_server, tmp_path
):
    """The same kills, through a real Postfix smtpd that offers CHUNKING: each connection
    has up to PIPELINE_WINDOW messages on the wire, so a kill may double up to
    CONCURRENCY x PIPELINE_WINDOW, and never loses one. Postfix hands on to `smtp_server`."""
    from postfixserver import postfix_server

    emails = write_list(tmp_path / "list.csv", 1500)
    crash_env.run("subscribers", "import", str(tmp_path / "list.csv"))
    with postfix_server(
        relayhost=f"[127.0.0.1]:{smtp_server.port}", default_transport="smtp"
    ) as relay:
        env = Cli(crash_env, NEWSLETTER_SMTP_PORT=str(relay.port))
        rng = random.Random(20261202)
        kills = 0
        for round_ in range(3):
            target = len(smtp_server.received) + rng.randint(100, 300)
            process = env.start("send", "--date", DAY, log=tmp_path / f"bdat{round_}.log")
            progressed = wait_until(
                lambda p=process, t=target: len(smtp_server.received) >= t or p.poll() is not None,
                60,
            )
            assert progressed, relay.log()[-2000:]
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(timeout=30)
        assert kills >= 2, "the sends ended before they could be killed; the test proves little"
        final = env.run("send", "--date", DAY)
        assert "failed 0" in final.stdout
        assert wait_until(lambda: postfix_queue_empty(relay), 60), "Postfix kept mail queued"
        assert " bdat=" in relay.log() and " data=" not in relay.log()  # BDAT, never DATA

    counts = Counter(smtp_server.recipients())
    missed = set(emails) - set(counts)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\n{kills} kills through Postfix, {duplicates} duplicates (bound {kills * IN_FLIGHT})")
    assert not missed
    assert duplicates <= kills * IN_FLIGHT
    assert delivery_counts(crash_env) == {"sent": 1500}
