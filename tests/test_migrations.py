"""Databases are precious: only `init` makes or changes one, through Alembic migrations.

Old databases are made from frozen SQL (tests/data/schema/, see tests/olddb.py)
with rows in every table, then upgraded; after every upgrade Alembic's own
autogenerate comparison must find nothing between the database and the model,
so a model change without its migration fails here. Runs on SQLite and, with
--db=postgresql, on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Cli
from olddb import MAIN, OLDEST, fill, make_old_database, plain_engine, read, shape
from sqlalchemy import text

from newsletter.errors import StoreError
from newsletter.store import migrate
from newsletter.store import subscribers as subscriber_store
from newsletter.store.engine import current_revision, open_engine
from newsletter.store.migrate import BASELINE, head_revision, schema_differences, upgrade
from newsletter.store.schema import REVISION


def differences(url: str) -> list:
    engine = open_engine(url)
    try:
        return schema_differences(engine)
    finally:
        engine.dispose()


def test_the_code_needs_the_head_revision_of_the_scripts():
    assert head_revision() == REVISION


def test_a_new_database_is_made_by_the_migrations_and_matches_the_model(new_database_url):
    url = new_database_url("fresh", empty=True)
    done = upgrade(url)
    assert (done.before, done.after) == (None, REVISION)
    assert done.describe() == f"created at schema {REVISION}"
    assert differences(url) == []


def test_revision_0001_is_the_schema_main_made(new_database_url):
    frozen, migrated = new_database_url("frozen", empty=True), new_database_url("m", empty=True)
    make_old_database(frozen, MAIN)
    assert upgrade(migrated, to=BASELINE).after == BASELINE
    assert shape(migrated) == shape(frozen)


def test_a_database_made_by_main_upgrades_with_every_row_intact(new_database_url):
    url = new_database_url("main", empty=True)
    make_old_database(url, MAIN)
    written = fill(url)

    done = upgrade(url)

    assert (done.before, done.after, done.unversioned) == (BASELINE, REVISION, True)
    assert "made before schema versions" in done.describe()
    assert read(url, written) == written
    assert differences(url) == []
    engine = open_engine(url)  # the store reads them as before
    assert subscriber_store.get_subscriber(engine, "ann@example.com").name == "Ann Ö'Brien"
    engine.dispose()


def test_the_oldest_database_gets_what_it_lacks_from_a_migration(new_database_url):
    url = new_database_url("oldest", empty=True)
    make_old_database(url, OLDEST)
    written = fill(url)
    assert "locks" not in shape(url)

    upgrade(url)

    assert read(url, written) == written
    assert differences(url) == []  # the consent and edition columns, locks, the claim index
    tables = shape(url)
    indexes = {index[0] for index in tables["deliveries"][4]}
    assert "ix_deliveries_claim" in indexes
    assert "ix_deliveries_edition_status" not in indexes  # the index it replaced
    engine = plain_engine(url)
    with engine.connect() as conn:
        consent = conn.execute(text("SELECT consent_at, consent_ip FROM subscribers")).all()
        stamps = conn.execute(text("SELECT warnings, source_stamp FROM editions")).all()
    engine.dispose()
    assert consent == [(None, None), (None, None)] and stamps == [(None, None)]


def test_a_database_one_revision_behind_is_upgraded_by_init_only(new_database_url):
    url = new_database_url("behind", empty=True)
    upgrade(url, to=BASELINE)
    with pytest.raises(StoreError) as caught:
        open_engine(url)
    message = str(caught.value)
    assert f"database schema is at {BASELINE}, this version needs {REVISION}" in message
    assert "`newsletter init`" in message and "\n" not in message
    engine = plain_engine(url)
    assert current_revision(engine) == BASELINE  # opening did not upgrade it
    engine.dispose()

    done = upgrade(url)
    assert done.describe() == f"upgraded from {BASELINE} to {REVISION}"
    open_engine(url).dispose()


def test_a_database_made_before_schema_versions_is_behind_until_init(new_database_url):
    url = new_database_url("legacy", empty=True)
    make_old_database(url, MAIN)
    with pytest.raises(StoreError, match="schema is at none .made before schema versions."):
        open_engine(url)


def test_init_again_changes_nothing(new_database_url):
    url = new_database_url()  # made as init makes one
    done = upgrade(url)
    assert (done.before, done.after) == (REVISION, REVISION)
    assert done.describe() == f"schema {REVISION}, up to date"


def test_a_failed_upgrade_leaves_the_database_as_it_was(new_database_url):
    url = new_database_url("conflict", empty=True)
    make_old_database(url, OLDEST)
    written = fill(url)
    engine = plain_engine(url)
    with engine.begin() as conn:  # takes the name revision 0002 gives the claim index
        conn.execute(text("CREATE TABLE ix_deliveries_claim (x INTEGER)"))
    engine.dispose()
    before = shape(url)

    with pytest.raises(StoreError):
        upgrade(url)

    assert shape(url) == before  # no column added, no version stamped, old index kept
    engine = plain_engine(url)
    assert current_revision(engine) is None
    engine.dispose()
    assert read(url, written) == written


def test_two_inits_at_once_make_one_database(new_database_url, monkeypatch):
    """Each init holds the database's write lock (SQLite) or an advisory lock (PostgreSQL)
    from its first look: the second waits, then finds it up to date. Without the lock both
    would see an empty database, meet at the barrier, and both create the tables."""
    url = new_database_url("race", empty=True)
    barrier = threading.Barrier(2, timeout=1)  # broken (and so passed) when one waits alone
    looked = migrate.has_newsletter_tables

    def look_then_meet(conn):  # noqa: ANN001, ANN202
        found = looked(conn)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return found

    monkeypatch.setattr(migrate, "has_newsletter_tables", look_then_meet)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: upgrade(url), range(2)))
    assert sorted((r.before or "", r.after) for r in results) == [
        ("", REVISION),
        (REVISION, REVISION),
    ]
    assert differences(url) == []


def test_a_database_from_a_newer_version_is_refused(new_database_url):
    url = new_database_url()
    engine = plain_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(StoreError, match="schema is at 0099, this version needs"):
        open_engine(url)
    with pytest.raises(StoreError, match="at 0099, which this version does not know"):
        upgrade(url)


def test_a_database_holding_other_tables_is_not_mixed_into(new_database_url):
    url = new_database_url("foreign", empty=True)
    engine = plain_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"holds other tables \(invoices\)"):
        upgrade(url)
    assert list(shape(url)) == ["invoices"]


def test_a_database_without_tables_is_one_line_naming_init(new_database_url, db_kind):
    url = new_database_url("empty", empty=True)
    if db_kind == "sqlite":  # an existing, empty file
        plain_engine(url).connect().close()
    with pytest.raises(StoreError) as caught:
        open_engine(url)
    assert "has no tables yet" in str(caught.value) and "`newsletter init`" in str(caught.value)


@pytest.mark.sqlite_only
def test_a_missing_file_or_folder_is_one_line_and_nothing_is_created(tmp_path):
    for path in (tmp_path / "news.db", tmp_path / "typo" / "deeper" / "news.db"):
        with pytest.raises(StoreError) as caught:
            open_engine(f"sqlite:///{path}")
        error = caught.value
        assert error.where == str(path) and "does not exist" in error.message
        assert "`newsletter init`" in error.hint
    assert "nor does its folder" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///:memory:",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:news?mode=memory&cache=shared&uri=true",
        "sqlite:///file:news.db?vfs=memdb&uri=true",
        "sqlite:///file:?uri=true",  # a temporary file SQLite deletes on close
    ],
)
def test_an_in_memory_database_is_refused_everywhere(url):
    for opening in (open_engine, upgrade):
        with pytest.raises(StoreError, match="in-memory SQLite database keeps nothing"):
            opening(url)


# ── through the command line ──────────────────────────────────────────────────


def test_init_reports_the_schema_version(cli_env: Cli, tmp_path, new_database_url):
    url = new_database_url("made-by-init", empty=True)
    env = Cli(cli_env, NEWSLETTER_DATABASE_URL=url)
    first = env.run("init", cwd=tmp_path)
    assert f"(created at schema {REVISION})" in first.stdout
    again = env.run("init", cwd=tmp_path)
    assert f"(schema {REVISION}, up to date)" in again.stdout
    assert "database ready:" in again.stdout


def test_init_upgrades_what_main_made_and_other_commands_refuse_it_first(
    cli_env: Cli, tmp_path, new_database_url
):
    url = new_database_url("from-main", empty=True)
    make_old_database(url, MAIN)
    fill(url)
    env = Cli(cli_env, NEWSLETTER_DATABASE_URL=url)
    env["COLUMNS"] = "1000"  # so rich does not wrap the line
    refused = env.run("subscribers", "list", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "schema is at none" in refused.stderr and "newsletter init" in refused.stderr

    done = env.run("init", cwd=tmp_path)
    assert f"recognised as {BASELINE}; now {REVISION}" in done.stdout
    listed = env.run("subscribers", "list")
    assert "ann@example.com" in listed.stdout.lower()


@pytest.mark.sqlite_only
def test_a_mistyped_path_is_one_line_and_creates_nothing(cli_env: Cli, tmp_path):
    env = Cli(cli_env, NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path}/typo/news.db")
    env["COLUMNS"] = "1000"
    for command in (["subscribers", "add", "ann@example.com"], ["send", "--date", "2026-11-25"]):
        result = env.run(*command, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert f"{tmp_path}/typo/news.db" in line and "newsletter init" in line
    assert not (tmp_path / "typo").exists()


def test_init_refuses_a_memory_database_in_one_line(cli_env: Cli, tmp_path):
    env = Cli(cli_env, NEWSLETTER_DATABASE_URL="sqlite://")
    env["COLUMNS"] = "1000"
    result = env.run("init", cwd=tmp_path, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "in-memory SQLite database keeps nothing" in result.stderr
