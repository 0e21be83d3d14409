"""Real fixtures: a database per test, an aiosmtpd server on a free port that
records every message it accepts, and settings that point at both.

The database is a SQLite file by default; `pytest --db=postgresql` (or
NEWSLETTER_TEST_DB=postgresql) runs the whole suite against a fresh database per
test on one throwaway PostgreSQL 15 cluster per session (tests/pgserver.py), the
way sqlite-utils reruns its suite against another connection mode. Tests about
SQLite files themselves are marked `sqlite_only`.

Every test database is made the way `newsletter init` makes one (the Alembic
migrations, `store/migrate.py`), but only once per session: each test gets a
copy of that template (a file copy, or PostgreSQL's CREATE DATABASE … TEMPLATE),
so running the migrations per test costs the suite nothing."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.engine import make_url

from newsletter.capture import free_port
from newsletter.config import Settings, load_settings
from newsletter.store.engine import open_engine, sqlite_path
from newsletter.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
DATABASES = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=DATABASES,
        default=os.environ.get("NEWSLETTER_TEST_DB", "sqlite"),
        help="the database every test runs against (default: sqlite; env NEWSLETTER_TEST_DB)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: the test is about SQLite files themselves")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--db") == "sqlite":
        return
    skip = pytest.mark.skip(reason="about SQLite files; runs without --db=postgresql")
    for item in items:
        if "sqlite_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--db")


@pytest.fixture(scope="session")
def pg_admin_url(db_kind: str):
    """The session's PostgreSQL cluster (only with --db=postgresql)."""
    if db_kind != "postgresql":
        yield None
        return
    from pgserver import postgres_cluster

    with postgres_cluster() as admin_url:
        yield admin_url


_database_names = itertools.count()
TEMPLATE_DATABASE = "template_newsletter"


@pytest.fixture(scope="session")
def template_database_url(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str | None):
    """One database at the head revision, made by `migrate.upgrade` as `newsletter init`
    does, that every test's database copies."""
    if pg_admin_url is None:
        url = f"sqlite:///{tmp_path_factory.mktemp('template') / 'template.db'}"
    else:
        from pgserver import create_database

        url = create_database(pg_admin_url, TEMPLATE_DATABASE)
    upgrade(url)
    return url


@pytest.fixture
def new_database_url(tmp_path: Path, pg_admin_url: str | None, template_database_url: str):
    """A factory: `new_database_url("cli")` is the URL of a fresh database that
    `newsletter init` made (at the head revision, no rows); with `empty=True`, of one
    that does not exist yet (SQLite: no file) or has no tables (PostgreSQL).

    A SQLite file in the test's tmp_path, or a new database on the session's
    PostgreSQL cluster, dropped (with its connections) when the test ends.
    """
    created: list[str] = []

    def make(name: str = "newsletter", *, empty: bool = False) -> str:
        if pg_admin_url is None:
            path = tmp_path / f"{name}.db"
            if not empty:
                shutil.copyfile(sqlite_path(make_url(template_database_url)), path)
            return f"sqlite:///{path}"
        from pgserver import create_database

        database = f"t{next(_database_names)}_{name}"
        created.append(database)
        template = None if empty else TEMPLATE_DATABASE
        return create_database(pg_admin_url, database, template=template)

    yield make
    if created:
        from pgserver import drop_database

        for database in created:
            drop_database(pg_admin_url, database)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: tuple = ()  # the client's (host, port): one per SMTP connection

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """Accepts everything and keeps it, so tests can read what a real server got."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pipelining: bool = True  # most relays offer it; aiosmtpd reads pipelined commands fine

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, ANN201, N802
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    tuple(session.peer),
                )
            )
        return "250 2.0.0 Ok: queued"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def recipients(self) -> list[str]:
        return [rcpt for item in self.received for rcpt in item.rcpt_tos]


@pytest.fixture
def smtp_server():
    handler = RecordingHandler()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True, ready_timeout=10
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


@pytest.fixture
def articles_dir(tmp_path) -> Path:
    """A copy of the project's sample articles, free for a test to change."""
    target = tmp_path / "articles"
    shutil.copytree(ROOT / "articles", target)
    return target


@pytest.fixture
def settings(tmp_path, smtp_server, articles_dir, monkeypatch, new_database_url) -> Settings:
    monkeypatch.chdir(tmp_path)  # no developer .env leaks into a test
    return load_settings(
        database_url=new_database_url("newsletter"),
        articles_source=str(articles_dir),
        templates_dir=ROOT / "templates",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
        from_address="news@daily.example.org",
        from_name="The Daily Brief",
        name="The Daily Brief",
        base_url="https://news.example.org",
        secret_key="test-secret-key-0123456789-abcdefghijklmnop",
        timezone="Europe/Paris",
        concurrency=3,
        retry_delay=0.05,
    )


@pytest.fixture
def engine(settings):
    return open_engine(settings.database_url)


class Cli(dict):
    """The environment of a `newsletter` subprocess, and ways to run it."""

    command = [sys.executable, "-c", "from newsletter.cli import main; main()"]

    def run(self, *args: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:  # noqa: ANN001
        result = subprocess.run(
            [*self.command, *args],
            env=dict(self),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def start(self, *args: str, log: Path) -> subprocess.Popen:
        """Start a long-running command (run, capture) with its output going to `log`."""
        handle = log.open("w")
        return subprocess.Popen(
            [*self.command, *args], env=dict(self), stdout=handle, stderr=handle
        )


@pytest.fixture
def cli_env(tmp_path, smtp_server, articles_dir, new_database_url) -> Cli:
    env = Cli({k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")})
    env.update(
        NEWSLETTER_DATABASE_URL=new_database_url("cli"),
        NEWSLETTER_ARTICLES_SOURCE=str(articles_dir),
        NEWSLETTER_TEMPLATES_DIR=str(ROOT / "templates"),
        NEWSLETTER_SMTP_HOST=smtp_server.host,
        NEWSLETTER_SMTP_PORT=str(smtp_server.port),
        NEWSLETTER_FROM_ADDRESS="news@daily.example.org",
        NEWSLETTER_BASE_URL="https://news.example.org",
        NEWSLETTER_SECRET_KEY="cli-test-secret-0123456789-abcdefghijklmnop",
        COLUMNS="200",
    )
    return env


def spam_score(data: bytes, home: Path) -> tuple[float, list[tuple[str, str]]]:
    """SpamAssassin's score of a message with its local rules only (no network tests)."""
    spamassassin = shutil.which("spamassassin")
    if spamassassin is None:
        pytest.skip("spamassassin is not installed (Debian: apt-get install spamassassin)")
    result = subprocess.run(
        [spamassassin, "-L", "-t"],
        input=data,
        capture_output=True,
        timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},  # no auto-learn in the real home
        check=False,
    )
    output = result.stdout.decode("utf-8", "replace")
    status = " ".join(str(message_from_bytes(result.stdout).get("X-Spam-Status", "")).split())
    found = re.search(r"score=(-?\d+(?:\.\d+)?)", status)
    assert found, f"no score in SpamAssassin output:\n{output[-3000:]}\n{result.stderr!r}"
    report = output.split("Content analysis details:", 1)[-1]
    hits = re.findall(r"^\s*(-?\d+\.\d+)\s+([A-Z][A-Z0-9_]+)\s", report, re.MULTILINE)
    return float(found.group(1)), hits
