"""The same guarantees on PostgreSQL, where several senders claim with SKIP LOCKED."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter

import pytest
from conftest import Cli
from pgserver import create_database, postgres_cluster

from newsletter import subscribers as subscriber_ops
from newsletter.app import prepare_edition, send_edition
from newsletter.models import DeliveryStatus
from newsletter.store import deliveries as delivery_store
from newsletter.store.engine import open_engine
from newsletter.store.migrate import upgrade

DAY = "2026-11-25"
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster():
    with postgres_cluster() as admin_url:
        yield admin_url


@pytest.fixture
def pg_url(cluster):
    url = create_database(cluster, f"newsletter_test_{next(_names)}")
    upgrade(url)  # as `newsletter init` makes it
    return url


def write_list(path, n: int) -> list[str]:
    emails = [f"reader{i:05d}@example.com" for i in range(n)]
    path.write_text("email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(emails)))
    return emails


def test_a_send_and_its_rerun_on_postgresql(settings, smtp_server, pg_url):
    pg = settings.model_copy(update={"database_url": pg_url})
    engine = open_engine(pg_url)
    for email in ("ann@example.com", "bob@example.com", "cleo@example.com"):
        subscriber_ops.add_subscriber(engine, email)
    subscriber_ops.unsubscribe(engine, "bob@example.com")
    prepared = prepare_edition(engine, pg, dt.date(2026, 11, 25))
    first = asyncio.run(send_edition(engine, pg, prepared.stored))
    second = asyncio.run(send_edition(engine, pg, prepared.stored))
    assert (first.sent, second.sent) == (2, 0)
    assert sorted(smtp_server.recipients()) == ["ann@example.com", "cleo@example.com"]
    assert delivery_store.count_by_status(engine, prepared.stored.id)[DeliveryStatus.SENT] == 2


def test_several_worker_processes_on_postgresql_send_each_message_once(
    cli_env: Cli, smtp_server, pg_url, tmp_path
):
    env = Cli(cli_env, NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_CONCURRENCY="4")
    emails = write_list(tmp_path / "list.csv", 1500)
    env.run("subscribers", "import", str(tmp_path / "list.csv"))
    result = env.run("send", "--date", DAY, "--workers", "3")
    assert "sent 1500, skipped 0, failed 0" in result.stdout
    assert Counter(smtp_server.recipients()) == Counter({email: 1 for email in emails})


def test_independent_senders_started_together_never_double(
    cli_env: Cli, smtp_server, pg_url, tmp_path
):
    env = Cli(cli_env, NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_CONCURRENCY="3")
    emails = write_list(tmp_path / "list.csv", 1200)
    env.run("subscribers", "import", str(tmp_path / "list.csv"))
    env.run("send", "--date", DAY, "--to", "editor@example.org")  # store the edition first
    processes = [env.start("send", "--date", DAY, log=tmp_path / f"s{i}.log") for i in range(3)]
    for process in processes:
        assert process.wait(timeout=120) == 0
    received = Counter(r for r in smtp_server.recipients() if r != "editor@example.org")
    assert received == Counter({email: 1 for email in emails})


def test_senders_queueing_the_same_edition_at_once_do_not_collide(settings, pg_url):
    from concurrent.futures import ThreadPoolExecutor

    from newsletter.store import deliveries as delivery_store

    engine = open_engine(pg_url)
    for i in range(300):
        subscriber_ops.add_subscriber(engine, f"r{i}@example.com")
    pg = settings.model_copy(update={"database_url": pg_url})
    stored = prepare_edition(engine, pg, dt.date(2026, 11, 25)).stored

    def queue(_: int) -> int:
        return delivery_store.queue_deliveries(engine, stored.id)

    with ThreadPoolExecutor(6) as pool:
        added = list(pool.map(queue, range(6)))
    assert sum(added) == 300  # each row once, whoever inserted it; nobody failed
    assert delivery_store.count_by_status(engine, stored.id)[DeliveryStatus.QUEUED] == 300
